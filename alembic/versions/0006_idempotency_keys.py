"""Idempotency keys: the claim of each create sent with one, kept with the write.

A create sent with an idempotency key is stored with its claim (the key and what the create
asked for, both hashed, and the draw it got) in the same transaction, so that a retry under
the key gets that draw back: in the embedded mode across restarts, in the distributed mode
across a Redis data loss (a numbering recovery puts the claims back in Redis). Claims expire
after IDEMPOTENCY_WINDOW_SECONDS.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

MYSQL_TABLE: dict[str, Any] = {
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_bin",
    "mysql_engine": "InnoDB",
}


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("application_id", sa.BigInteger, nullable=False),
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column("fingerprint", sa.String(32), nullable=False),
        sa.Column("chat_number", sa.Integer, nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("revision", sa.BigInteger, nullable=False),
        sa.Column("epoch", sa.BigInteger, nullable=False),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("expires", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("application_id", "key", name="pk_idempotency_keys"),
        **MYSQL_TABLE,
    )
    op.create_index("ix_idempotency_keys_expires", "idempotency_keys", ["expires"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_expires", "idempotency_keys")
    op.drop_table("idempotency_keys")
