"""When each message row last changed (MySQL), for rebuilding the search index online.

`graphql-chat reindex` copies every message into a new Elasticsearch index while writes go on,
then copies again what changed since it began: `changed_at` is set by the server on insert and
on update, so that second pass is exact. SQLite needs none (FTS5 rebuilds in its transaction).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        return
    op.execute(
        "ALTER TABLE messages ADD COLUMN changed_at DATETIME(6) NOT NULL "
        "DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)"
    )
    op.execute("CREATE INDEX ix_messages_changed_at ON messages (changed_at)")


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        return
    op.execute("DROP INDEX ix_messages_changed_at ON messages")
    op.execute("ALTER TABLE messages DROP COLUMN changed_at")
