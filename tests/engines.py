"""The real engines the tests run against, started by `make services` (scripts/services.sh).

`make test` passes their URLs as TEST_DATABASE_URL, TEST_REDIS_URL, TEST_RABBITMQ_URL and
TEST_ELASTICSEARCH_URL. A test that needs an engine fails, never skips, when its URL is unset.
Every test gets its own database, key prefix, queue or index, so tests run in any order.
Stopping and restarting the engines (the fault tests) is `tests.engine_control`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aio_pika
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from graphql_chat import migrations
from graphql_chat.adapters.rabbitmq import queues


def engine_url(name: str) -> str:
    url = os.environ.get(f"TEST_{name}")
    if not url:
        pytest.fail(
            f"TEST_{name} is not set: run the suite with `make test`, which starts the services "
            "(or `make services` and export the variables it prints, prefixed with TEST_)"
        )
    return url


def unique_name(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(6)}"


@asynccontextmanager
async def mysql_database(revision: str = "head") -> AsyncIterator[str]:
    """A fresh MySQL database migrated to `revision`; dropped afterwards."""
    server = make_url(engine_url("DATABASE_URL"))
    name = unique_name("test")
    admin = create_async_engine(server, pool_pre_ping=True)
    async with admin.begin() as conn:
        await conn.execute(
            text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        )
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        await asyncio.to_thread(migrations.upgrade, url, revision)
        yield url
    finally:
        async with admin.begin() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        await admin.dispose()


async def delete_queues(queue_name: str) -> None:
    """Remove the queues and exchanges a pipeline named `queue_name` declared."""
    connection = await aio_pika.connect(engine_url("RABBITMQ_URL"))
    async with connection:
        channel = await connection.channel()
        for name in queues.every(queue_name):
            await channel.queue_delete(name)
        for name in queues.exchanges(queue_name):
            await channel.exchange_delete(name)
