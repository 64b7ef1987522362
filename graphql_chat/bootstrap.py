"""The composition root: the only module that picks adapters. Every entry point calls it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from graphql_chat.adapters.fts5_search import Fts5Search
from graphql_chat.adapters.memory_numbers import MemoryNumbers
from graphql_chat.adapters.memory_pipeline import MemoryPipeline
from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.config import Settings
from graphql_chat.ports import Numbers, Pipeline, Search
from graphql_chat.services import ChatService
from graphql_chat.writer import Writer


@dataclass
class Container:
    settings: Settings
    store: SqlStore
    numbers: Numbers
    pipeline: Pipeline
    search: Search
    writer: Writer
    service: ChatService

    async def start(self) -> None:
        await self.store.start()
        await self.search.start()
        await self.pipeline.start()

    async def close(self) -> None:
        await self.pipeline.close()
        await self.search.close()
        await self.store.close()


def bootstrap(settings: Settings | None = None) -> Container:
    settings = settings or Settings()
    settings.check()
    store = SqlStore(settings.database_url, settings.sqlite_synchronous)
    search = Fts5Search(store)
    writer = Writer(store, search)
    numbers = MemoryNumbers(store)
    pipeline = MemoryPipeline(writer, settings.batch_max_events)
    service = ChatService(settings, store, numbers, pipeline, search)
    return Container(settings, store, numbers, pipeline, search, writer, service)


@asynccontextmanager
async def running(settings: Settings | None = None) -> AsyncIterator[Container]:
    container = bootstrap(settings)
    await container.start()
    try:
        yield container
    finally:
        await container.close()
