"""Port fixtures, parametrised over every adapter of the port.

Each fixture yields a started adapter on its own fresh storage, so tests run in any order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest

from graphql_chat.adapters.elastic_search import ElasticSearch
from graphql_chat.adapters.fts5_search import Fts5Search
from graphql_chat.adapters.memory_numbers import MemoryNumbers
from graphql_chat.adapters.memory_pipeline import MemoryPipeline
from graphql_chat.adapters.rabbitmq.consumer import Consumer
from graphql_chat.adapters.rabbitmq.publisher import RabbitPipeline
from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.ports import Index, Numbers, Pipeline, Search
from graphql_chat.writer import Writer
from tests.engines import delete_queues, engine_url, mysql_database, unique_name
from tests.numbering import redis_numbering


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
    elastic = ElasticSearch(engine_url("ELASTICSEARCH_URL"), unique_name("test"))
    await elastic.start()
    yield elastic
    await elastic.drop()
    await elastic.close()


def indexer_of(search: Search) -> Index | None:
    """What the writer indexes with: Elasticsearch; none beside SQLite (its triggers index)."""
    return search if isinstance(search, ElasticSearch) else None


@pytest.fixture
def writer(store: SqlStore, search: Search) -> Writer:
    return Writer(store, indexer_of(search))


@pytest.fixture
async def numbers(store: SqlStore) -> AsyncIterator[Numbers]:
    """In-process beside SQLite (embedded), Redis beside MySQL (distributed)."""
    if store.is_sqlite:
        yield MemoryNumbers(store)
        return
    redis = redis_numbering(engine_url("REDIS_URL"), store, _always_drained, unique_name("test"))
    await redis.recover()
    yield redis
    await redis.drop()
    await redis.close()


async def _always_drained() -> bool:
    return True


@dataclass
class Harness:
    """A pipeline with what carries its writes to the store (in process, or a worker)."""

    pipeline: Pipeline
    batches: Callable[[], int]


@pytest.fixture
async def harness(store: SqlStore, writer: Writer) -> AsyncIterator[Harness]:
    """In-process beside SQLite (embedded), RabbitMQ and a worker beside MySQL (distributed)."""
    if store.is_sqlite:
        memory = MemoryPipeline(writer, max_batch=1000)
        await memory.start()
        yield Harness(memory, lambda: memory.batches)
        await memory.close()
        return
    queue = unique_name("test")
    rabbit = RabbitPipeline(engine_url("RABBITMQ_URL"), queue)
    await rabbit.start()
    worker = Consumer(engine_url("RABBITMQ_URL"), writer, queue, batch_size=200, batch_ms=5)
    running = asyncio.create_task(worker.run())
    yield Harness(rabbit, lambda: worker.batches)
    worker.stop()
    await asyncio.wait_for(running, 30)
    await delete_queues(rabbit.queue)
    await rabbit.close()


@pytest.fixture
def pipeline(harness: Harness) -> Pipeline:
    return harness.pipeline
