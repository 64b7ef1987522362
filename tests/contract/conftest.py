"""Port fixtures, parametrised over every adapter of the port.

Each fixture yields a started adapter on its own fresh storage, so tests run in any order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import pytest

from graphql_chat.adapters.elastic_search import ElasticSearch
from graphql_chat.adapters.fts5_search import Fts5Search
from graphql_chat.adapters.memory_numbers import MemoryNumbers
from graphql_chat.adapters.memory_pipeline import MemoryPipeline
from graphql_chat.adapters.redis_numbers import RedisNumbers
from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.ports import Numbers, Pipeline, Search
from graphql_chat.writer import Writer
from tests.engines import engine_url, mysql_database, unique_name


@pytest.fixture(params=["sqlite", "mysql"])
async def store(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[SqlStore]:
    async with AsyncExitStack() as stack:
        url = database_url
        if request.param == "mysql":
            url = await stack.enter_async_context(mysql_database())
        started = SqlStore(url, "NORMAL")
        await started.start()
        stack.push_async_callback(started.close)
        yield started


@pytest.fixture
async def search(store: SqlStore) -> AsyncIterator[Search]:
    """FTS5 beside SQLite (embedded), Elasticsearch beside MySQL (distributed)."""
    if store.is_sqlite:
        adapter: Search = Fts5Search(store)
        await adapter.start()
        yield adapter
        await adapter.close()
        return
    elastic = ElasticSearch(engine_url("ELASTICSEARCH_URL"), unique_name("test"), store)
    await elastic.start()
    yield elastic
    await elastic.drop()
    await elastic.close()


@pytest.fixture
def writer(store: SqlStore, search: Search) -> Writer:
    return Writer(store, search)


@pytest.fixture
async def numbers(store: SqlStore) -> AsyncIterator[Numbers]:
    """In-process beside SQLite (embedded), Redis beside MySQL (distributed)."""
    if store.is_sqlite:
        yield MemoryNumbers(store)
        return
    redis = RedisNumbers(engine_url("REDIS_URL"), store, _always_drained, unique_name("test"))
    await redis.recover()
    yield redis
    await redis.drop()
    await redis.close()


async def _always_drained() -> bool:
    return True


@pytest.fixture(params=["memory"])
async def pipeline(request: pytest.FixtureRequest, writer: Writer) -> AsyncIterator[Pipeline]:
    adapter = MemoryPipeline(writer, max_batch=1000)
    await adapter.start()
    yield adapter
    await adapter.close()
