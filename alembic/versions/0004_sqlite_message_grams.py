"""SQLite: search by n-gram tokens with each chat's postings side by side.

Replaces the trigram table `messages_fts` (rowid = message id, so a chat's postings were spread
among every other chat's) by the contentless `message_grams`, whose rowid puts a chat's
messages in one range in number order, and whose tokens come from `chat_grams(body)` (registered
on every connection: graphql_chat/adapters/sqlite_functions.py). `message_grams_version`
records which encoding and Unicode version made the tokens. MySQL has nothing to do.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

from graphql_chat.adapters import sqlite_functions

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ROWID = "{0}.chat_id * 4294967296 + {0}.number"

_OLD_TRIGGERS = ("messages_ai", "messages_ad", "messages_au")


def upgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    for name in _OLD_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute("DROP TABLE IF EXISTS messages_fts")
    tokenize = sqlite_functions.TOKENIZE.replace('"', '""')
    op.execute(
        "CREATE VIRTUAL TABLE message_grams USING fts5("
        f'grams, content=\'\', columnsize=0, tokenize="{tokenize}")'
    )
    new, old = _ROWID.format("new"), _ROWID.format("old")
    insert = f"INSERT INTO message_grams(rowid, grams) VALUES ({new}, chat_grams(new.body));"
    delete = (
        "INSERT INTO message_grams(message_grams, rowid, grams) "
        f"VALUES ('delete', {old}, chat_grams(old.body));"
    )
    op.execute(f"CREATE TRIGGER message_grams_ai AFTER INSERT ON messages BEGIN {insert} END")
    op.execute(f"CREATE TRIGGER message_grams_ad AFTER DELETE ON messages BEGIN {delete} END")
    op.execute(
        "CREATE TRIGGER message_grams_au AFTER UPDATE OF body, chat_id, number ON messages "
        f"BEGIN {delete} {insert} END"
    )
    op.execute(
        "INSERT INTO message_grams(rowid, grams) "
        f"SELECT {_ROWID.format('messages')}, chat_grams(body) FROM messages"
    )
    op.execute("CREATE TABLE message_grams_version (grams INTEGER NOT NULL, unicode TEXT NOT NULL)")
    op.execute(
        "INSERT INTO message_grams_version(grams, unicode) VALUES "
        f"({sqlite_functions.GRAMS_VERSION}, '{sqlite_functions.UNICODE_VERSION}')"
    )


def downgrade() -> None:
    if op.get_context().dialect.name != "sqlite":
        return
    for name in ("message_grams_ai", "message_grams_ad", "message_grams_au"):
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute("DROP TABLE IF EXISTS message_grams_version")
    op.execute("DROP TABLE IF EXISTS message_grams")
    op.execute(
        "CREATE VIRTUAL TABLE messages_fts USING fts5("
        "body, content='messages', content_rowid='id', tokenize='trigram case_sensitive 0')"
    )
    op.execute(
        "CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN "
        "INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body); END"
    )
    op.execute(
        "CREATE TRIGGER messages_ad AFTER DELETE ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body); "
        "END"
    )
    op.execute(
        "CREATE TRIGGER messages_au AFTER UPDATE OF body ON messages BEGIN "
        "INSERT INTO messages_fts(messages_fts, rowid, body) VALUES ('delete', old.id, old.body); "
        "INSERT INTO messages_fts(rowid, body) VALUES (new.id, new.body); END"
    )
    op.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
