"""Port fixtures, parametrised over every adapter of the port.

Each fixture yields a started adapter on its own fresh storage, so tests run in any order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from graphql_chat.adapters.fts5_search import Fts5Search
from graphql_chat.adapters.memory_numbers import MemoryNumbers
from graphql_chat.adapters.memory_pipeline import MemoryPipeline
from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.ports import Numbers, Pipeline, Search
from graphql_chat.writer import Writer


@pytest.fixture(params=["sqlite"])
async def store(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[SqlStore]:
    started = SqlStore(database_url, "NORMAL")
    await started.start()
    yield started
    await started.close()


@pytest.fixture(params=["fts5"])
async def search(request: pytest.FixtureRequest, store: SqlStore) -> AsyncIterator[Search]:
    adapter = Fts5Search(store)
    await adapter.start()
    yield adapter
    await adapter.close()


@pytest.fixture
def writer(store: SqlStore, search: Search) -> Writer:
    return Writer(store, search)


@pytest.fixture(params=["memory"])
async def numbers(request: pytest.FixtureRequest, store: SqlStore) -> Numbers:
    return MemoryNumbers(store)


@pytest.fixture(params=["memory"])
async def pipeline(request: pytest.FixtureRequest, writer: Writer) -> AsyncIterator[Pipeline]:
    adapter = MemoryPipeline(writer, max_batch=1000)
    await adapter.start()
    yield adapter
    await adapter.close()
