"""Alembic environment: one history for SQLite and MySQL, run through the async drivers."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, event
from sqlalchemy.ext.asyncio import create_async_engine

from graphql_chat.adapters import sqlite_functions
from graphql_chat.config import Settings
from graphql_chat.tables import metadata

config = context.config


def _url() -> str:
    return config.attributes.get("database_url") or Settings().database_url


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = create_async_engine(_url())
    if engine.dialect.name == "sqlite":
        # The search index's triggers call the product's functions (sqlite_functions.py).
        event.listen(
            engine.sync_engine, "connect", lambda dbapi, _record: sqlite_functions.register(dbapi)
        )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_migrate)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
