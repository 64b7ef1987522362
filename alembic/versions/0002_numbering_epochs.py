"""Numbering epochs: the `numbering` row and each message's creating draw.

`numbering.epoch` is the numbering epoch workers accept (0: no number was ever handed out);
`numbering.recovering` is set while a recovery waits for the write queue to drain, and
`numbering.recovery_token` fences recoveries (only the latest may open the next epoch);
`numbering.set_aside` counts writes the workers refused (a late draw of a retired epoch, or a
create colliding with a different draw). `messages.created_revision` is the revision of the
draw that created the message (NULL until its create arrives).

A database that already holds applications starts at epoch 1, so the first recovery after
the upgrade drains the queue instead of treating the system as new.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MYSQL_TABLE: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin", "mysql_engine": "InnoDB"}


def upgrade() -> None:
    op.create_table(
        "numbering",
        sa.Column("id", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("epoch", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("recovering", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("recovery_token", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("set_aside", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name="pk_numbering"),
        **MYSQL_TABLE,
    )
    op.execute(
        "INSERT INTO numbering (id, epoch, recovering, set_aside) SELECT 1, "
        "CASE WHEN EXISTS (SELECT 1 FROM applications) THEN 1 ELSE 0 END, 0, 0"
    )
    op.add_column("messages", sa.Column("created_revision", sa.BigInteger, nullable=True))


def downgrade() -> None:
    # Native on MySQL and on SQLite 3.35+ (a batch rebuild would drop the FTS5 triggers).
    op.execute("ALTER TABLE messages DROP COLUMN created_revision")
    op.drop_table("numbering")
