"""When chats and messages were accepted: `chats.created_at`, `messages.created_at` and
`messages.updated_at` (UTC, to the microsecond).

New writes carry their acceptance time from the numbering draw. Rows written before are given
the best the database knows: a message's times come from its revisions, which were clock
readings (microseconds from Redis, nanoseconds in the embedded mode); a chat's is its first
message's time, or the time of the upgrade when it has none. On MySQL the columns default to
the time of insertion, so that a worker still running the code before this migration during a
rolling upgrade writes rows with a time close to the truth.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# A revision in microseconds (embedded revisions are nanoseconds: anything past 1e17 is).
_MICROS = "CASE WHEN {0} >= 100000000000000000 THEN {0} DIV 1000 ELSE {0} END"


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        _upgrade_sqlite()
        return
    op.execute(
        "ALTER TABLE chats ADD COLUMN created_at DATETIME(6) NOT NULL "
        "DEFAULT CURRENT_TIMESTAMP(6)"
    )
    op.execute(
        "ALTER TABLE messages ADD COLUMN created_at DATETIME(6) NOT NULL "
        "DEFAULT CURRENT_TIMESTAMP(6), ADD COLUMN updated_at DATETIME(6) NOT NULL "
        "DEFAULT CURRENT_TIMESTAMP(6)"
    )

    def at(column: str) -> str:
        return f"'1970-01-01' + INTERVAL ({_MICROS.format(column)}) MICROSECOND"

    # changed_at keeps its value: these rows did not change.
    op.execute(
        f"UPDATE messages SET created_at = {at('COALESCE(created_revision, revision)')}, "
        f"updated_at = {at('revision')}, changed_at = changed_at"
    )
    op.execute(
        "UPDATE chats JOIN (SELECT chat_id, MIN(created_at) AS first FROM messages "
        "GROUP BY chat_id) AS found ON found.chat_id = chats.id SET chats.created_at = found.first"
    )


def _upgrade_sqlite() -> None:
    op.execute("ALTER TABLE chats ADD COLUMN created_at DATETIME")
    op.execute("ALTER TABLE messages ADD COLUMN created_at DATETIME")
    op.execute("ALTER TABLE messages ADD COLUMN updated_at DATETIME")

    def at(column: str) -> str:
        # The text SQLAlchemy writes for a DATETIME on SQLite: YYYY-MM-DD HH:MM:SS.ffffff
        micros = f"({_MICROS.replace('DIV', '/').format(column)})"
        return (
            f"strftime('%Y-%m-%d %H:%M:%S', {micros} / 1000000, 'unixepoch') "
            f"|| printf('.%06d', {micros} % 1000000)"
        )

    op.execute(
        f"UPDATE messages SET created_at = {at('COALESCE(created_revision, revision)')}, "
        f"updated_at = {at('revision')}"
    )
    op.execute(
        "UPDATE chats SET created_at = COALESCE((SELECT MIN(created_at) FROM messages "
        "WHERE messages.chat_id = chats.id), "
        "strftime('%Y-%m-%d %H:%M:%f000', 'now'))"
    )


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute("ALTER TABLE messages DROP COLUMN updated_at")
        op.execute("ALTER TABLE messages DROP COLUMN created_at")
        op.execute("ALTER TABLE chats DROP COLUMN created_at")
        return
    op.execute("ALTER TABLE messages DROP COLUMN updated_at, DROP COLUMN created_at")
    op.execute("ALTER TABLE chats DROP COLUMN created_at")
