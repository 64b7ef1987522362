"""End users: each application's public id and signing secrets, chat membership, message
authors, and revoked user tokens.

An application's backend signs its users' tokens (HS256 JWTs) with the application's signing
secret, which is not its token; during a rotation the previous secret verifies too, until
`previous_secret_until`. `public_id` names the application inside a user token and in the
REST paths a user calls; it reveals nothing. Existing applications get a public id and a
signing secret here; existing messages have no author (they were sent with the application
token, as they still may be).

Membership rows are keyed by the chat's number, not its row: a chat is a member's as soon as
its number is handed out, before a worker stores it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

MYSQL_TABLE: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
}
Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("applications", sa.Column("public_id", sa.String(32), nullable=True))
    op.add_column("applications", sa.Column("signing_secret", sa.String(64), nullable=True))
    op.add_column(
        "applications", sa.Column("previous_signing_secret", sa.String(64), nullable=True)
    )
    op.add_column(
        "applications", sa.Column("previous_secret_until", sa.BigInteger, nullable=True)
    )
    op.add_column(
        "applications",
        sa.Column("users_manage_chats", sa.Boolean, nullable=False, server_default=sa.true()),
    )
    # Random bytes from the database (one statement, in offline SQL too): MySQL 5.6+,
    # MariaDB 10.10+, SQLite.
    if op.get_context().dialect.name == "sqlite":
        public_id = "'app_' || lower(hex(randomblob(12)))"
        secret = "lower(hex(randomblob(32)))"
    else:
        public_id = "CONCAT('app_', LOWER(HEX(RANDOM_BYTES(12))))"
        secret = "LOWER(HEX(RANDOM_BYTES(32)))"
    op.execute(
        f"UPDATE applications SET public_id = {public_id}, signing_secret = {secret} "
        "WHERE public_id IS NULL"
    )
    op.create_index("uq_applications_public_id", "applications", ["public_id"], unique=True)
    op.add_column("messages", sa.Column("author", sa.String(255), nullable=True))
    op.create_table(
        "chat_members",
        sa.Column("id", Id, primary_key=True, autoincrement=True),
        sa.Column(
            "application_id",
            Id,
            sa.ForeignKey(
                "applications.id", ondelete="CASCADE", name="fk_chat_members_application_id"
            ),
            nullable=False,
        ),
        sa.Column("chat_number", sa.Integer, nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("joined_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint(
            "application_id",
            "chat_number",
            "user_id",
            name="uq_chat_members_application_id_chat_number",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_chat_members"),
        **MYSQL_TABLE,
    )
    op.create_index(
        "ix_chat_members_application_id_user_id", "chat_members", ["application_id", "user_id"]
    )
    op.create_table(
        "user_revocations",
        sa.Column("application_id", sa.BigInteger, nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("issued_before", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("application_id", "user_id", name="pk_user_revocations"),
        **MYSQL_TABLE,
    )


def downgrade() -> None:
    op.drop_table("user_revocations")
    op.drop_index("ix_chat_members_application_id_user_id", "chat_members")
    op.drop_table("chat_members")
    # Native on MySQL and on SQLite 3.35+ (a batch rebuild would drop the FTS5 triggers).
    op.execute("ALTER TABLE messages DROP COLUMN author")
    op.drop_index("uq_applications_public_id", "applications")
    for column in (
        "users_manage_chats",
        "previous_secret_until",
        "previous_signing_secret",
        "signing_secret",
        "public_id",
    ):
        op.execute(f"ALTER TABLE applications DROP COLUMN {column}")
