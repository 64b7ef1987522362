"""One Alembic history for SQLite and MySQL."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import create_engine, event, inspect, text

from graphql_chat import migrations


def test_sqlite_upgrade_and_downgrade(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    migrations.upgrade(url)
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    tables = set(inspect(engine).get_table_names())
    assert {"applications", "chats", "messages", "message_grams", "message_grams_version"} <= tables
    uniques = {u["name"] for u in inspect(engine).get_unique_constraints("messages")}
    assert "uq_messages_chat_id_number" in uniques
    command.downgrade(migrations.alembic_config(url), "base")
    assert "messages" not in set(inspect(engine).get_table_names())
    engine.dispose()


def test_mysql_ddl() -> None:
    """The MySQL rendering of the same history (offline: no server needed to read it)."""
    out = io.StringIO()
    with redirect_stdout(out):
        command.upgrade(
            migrations.alembic_config("mysql+asyncmy://u:p@127.0.0.1/chat"), "head", sql=True
        )
    ddl = out.getvalue()
    assert "MEDIUMTEXT" in ddl
    assert "utf8mb4_bin" in ddl
    assert "UNIQUE (chat_id, number)" in ddl.replace("`", "")
    assert "fts5" not in ddl


def test_sqlite_search_index_moves_to_ngrams_with_the_rows_it_holds(tmp_path: Path) -> None:
    """Messages written under the trigram index are found through the n-gram index after the
    upgrade, and through the trigram index again after a downgrade."""
    from graphql_chat.adapters import sqlite_functions

    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    migrations.upgrade(url, "0003")
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")

    @event.listens_for(engine, "connect")
    def _functions(dbapi: Any, _record: Any) -> None:
        sqlite_functions.register(dbapi)

    with engine.begin() as conn:
        conn.execute(text("INSERT INTO applications(id, token, name) VALUES (1, 't', 'a')"))
        conn.execute(text("INSERT INTO chats(id, application_id, number) VALUES (7, 1, 1)"))
        for number, body in ((1, "Une CRÈME brûlée"), (2, "a crème"), (3, "nothing")):
            conn.execute(
                text(
                    "INSERT INTO messages(chat_id, number, body, revision, created_revision) "
                    "VALUES (7, :n, :b, 1, 1)"
                ),
                {"n": number, "b": body},
            )
    engine.dispose()
    migrations.upgrade(url)
    with engine.connect() as conn:
        rowids = conn.execute(
            text("SELECT rowid FROM message_grams WHERE message_grams MATCH :m ORDER BY rowid"),
            {"m": sqlite_functions.match(["crème"])},
        ).scalars()
        assert [r - 7 * 2**32 for r in rowids] == [1, 2]
    engine.dispose()
    command.downgrade(migrations.alembic_config(url), "0003")
    with engine.connect() as conn:
        ids = conn.execute(
            text("SELECT rowid FROM messages_fts WHERE messages_fts MATCH 'brûlée'")
        ).scalars()
        assert list(ids) == [1]
    engine.dispose()
