"""Numbering per application, for Redis Cluster: an application's own epoch, and which of
the two write queues takes new writes.

On Redis Cluster each application's numbering lives in one slot, so a shard that loses its
data loses the numbering of its applications only, and they recover alone: the recovery
steers new writes to the other write queue (`numbering.generation`), waits until the queue
it left is drained, and retires the epochs of those applications (`applications.epoch`).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "applications", sa.Column("epoch", sa.BigInteger, nullable=False, server_default="0")
    )
    op.add_column(
        "numbering", sa.Column("generation", sa.BigInteger, nullable=False, server_default="0")
    )


def downgrade() -> None:
    # Native on MySQL and on SQLite 3.35+ (a batch rebuild would drop the FTS5 triggers).
    op.execute("ALTER TABLE numbering DROP COLUMN generation")
    op.execute("ALTER TABLE applications DROP COLUMN epoch")
