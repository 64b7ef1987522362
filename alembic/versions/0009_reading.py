"""Reading state: each member's read marker, and what orders a user's chats by activity.

`last_read_number` is the member's read marker (messages up to it are read); `read_at` when it
last moved (microseconds since 1970); `unread_at` when it was last moved back on request (a
mark made before that, arriving later through the write queue, leaves it alone).
`active_at` is the chat's latest activity as the member sees it (the newest stored message's
time, or when they joined if later) and `top_number` the chat's highest stored message
number, both kept by the batch that stores messages, so that a user's chats are listed by
activity, and counted unread, from their member rows alone.

Existing members: active since they joined, and everything stored so far read (nothing was
marked before this revision, so nothing is shown unread that no one could have read).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_COLUMNS = ("last_read_number", "read_at", "unread_at", "active_at", "top_number")


def upgrade() -> None:
    for name, kind, default in (
        ("last_read_number", sa.Integer, "0"),
        ("unread_at", sa.BigInteger, "0"),
        ("active_at", sa.BigInteger, "0"),
        ("top_number", sa.Integer, "0"),
    ):
        op.add_column(
            "chat_members", sa.Column(name, kind, nullable=False, server_default=default)
        )
    op.add_column("chat_members", sa.Column("read_at", sa.BigInteger, nullable=True))
    op.execute(
        "UPDATE chat_members SET active_at = joined_at, top_number = COALESCE(("
        "SELECT MAX(m.number) FROM messages m JOIN chats c ON c.id = m.chat_id "
        "WHERE c.application_id = chat_members.application_id "
        "AND c.number = chat_members.chat_number), 0)"
    )
    op.execute("UPDATE chat_members SET last_read_number = top_number")
    op.create_index(
        "ix_chat_members_inbox", "chat_members", ["application_id", "user_id", "active_at", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_chat_members_inbox", "chat_members")
    # Native on MySQL and on SQLite 3.35+.
    for column in _COLUMNS:
        op.execute(f"ALTER TABLE chat_members DROP COLUMN {column}")
