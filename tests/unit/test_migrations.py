"""One Alembic history for SQLite and MySQL."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect

from graphql_chat import migrations


def test_sqlite_upgrade_and_downgrade(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    migrations.upgrade(url)
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    tables = set(inspect(engine).get_table_names())
    assert {"applications", "chats", "messages", "messages_fts"} <= tables
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
