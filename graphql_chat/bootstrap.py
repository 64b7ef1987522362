"""The composition root: the only module that picks adapters. Every entry point calls it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

from graphql_chat.adapters.elastic_search import ElasticSearch
from graphql_chat.adapters.fts5_search import Fts5Search
from graphql_chat.adapters.memory_feed import MemoryFeed
from graphql_chat.adapters.memory_numbers import MemoryNumbers
from graphql_chat.adapters.memory_pipeline import MemoryPipeline
from graphql_chat.adapters.rabbitmq import queues as rabbitmq_queues
from graphql_chat.adapters.rabbitmq.consumer import Consumer
from graphql_chat.adapters.rabbitmq.publisher import RabbitPipeline
from graphql_chat.adapters.rate_storage import rate_storage
from graphql_chat.adapters.redis_feed import RedisFeed
from graphql_chat.adapters.redis_numbers import RedisNumbers
from graphql_chat.adapters.redis_registry import RedisRegistry
from graphql_chat.adapters.redis_scripts import RedisScripts
from graphql_chat.adapters.sql_ledger import SqlLedger
from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.config import Settings
from graphql_chat.domain import Message
from graphql_chat.health import Readiness, Report
from graphql_chat.live import Hub
from graphql_chat.numbering.ports import Ledger, Reopening, WriteQueues
from graphql_chat.numbering.recovery import (
    EpochPerApplication,
    GlobalEpoch,
    RecoveringNumbers,
    Recovery,
    Topology,
)
from graphql_chat.pages import CachedPages, PageCache
from graphql_chat.paging import MessagePages, Page, StoredPages, page_bytes
from graphql_chat.ports import Feed, Index, Numbers, Pipeline, Search, Store
from graphql_chat.usecases import ChatService, chat_service
from graphql_chat.writer import Writer


@dataclass
class Container:
    settings: Settings
    store: Store
    numbers: Numbers
    pipeline: Pipeline
    search: Search
    feed: Feed
    writer: Writer
    service: ChatService
    hub: Hub
    ledger: Ledger
    page_cache: PageCache[Page[Message]] | None = None  # the embedded mode's
    readiness: Readiness = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.readiness = Readiness(
            {
                "store": self.store,
                "numbers": self.numbers,
                "pipeline": self.pipeline,
                "search": self.search,
                "feed": self.feed,
            }
        )

    async def start(self, search: bool = True) -> None:
        """Start every port; `search=False` leaves the search index as it is (reindexing
        replaces it, so an index of an older mapping is no reason to refuse)."""
        await self.store.start()
        if search:
            await self.search.start()
        await self.feed.start()
        await self.pipeline.start()
        await self.numbers.start()

    async def listen(self) -> None:
        """Receive committed changes for this process's subscribers (API processes)."""
        await self.feed.listen(self.hub)

    async def health(self) -> dict[str, str]:
        """Each dependency: "ok", or what is wrong with it (`readiness` has the rounds)."""
        return {name: state.text for name, state in (await self.ready()).items()}

    async def ready(self) -> Report:
        """Each dependency's state as a value (numbers: also whether numbering recovers)."""
        return await self.readiness.report()

    async def close(self) -> None:
        await self.service.throttle.close()
        await self.pipeline.close()
        await self.feed.close()
        await self.numbers.close()
        await self.search.close()
        await self.store.close()


def bootstrap(settings: Settings | None = None) -> Container:
    """Pick each port's adapter from the settings: an unset URL means the embedded one."""
    settings = settings or Settings()
    settings.check()
    store = SqlStore(settings.database_url, settings.sqlite_synchronous)
    search: Search
    indexer: Index | None = None  # SQLite's triggers index in the commit
    if settings.elasticsearch_url:
        search = indexer = ElasticSearch(
            settings.elasticsearch_url,
            settings.elasticsearch_index,
            settings.elasticsearch_shards,
            settings.elasticsearch_replicas,
        )
    else:
        search = Fts5Search(store)
    feed: Feed = (
        RedisFeed(settings.redis_url, settings.redis_key_prefix + ":live")
        if (settings.redis_url)
        else MemoryFeed()
    )
    # The page cache needs every write to the store to be this process's: the embedded mode.
    page_cache = (
        PageCache(settings.page_cache_bytes, page_bytes)
        if settings.is_sqlite and not settings.redis_url and settings.page_cache_bytes
        else None
    )
    writer = Writer(store.batches, indexer, feed)
    pages: MessagePages = StoredPages(store)
    if page_cache is not None:
        pages = CachedPages(pages, page_cache)
        writer.observers.append(page_cache)
    ledger = SqlLedger(store)
    pipeline: Pipeline
    queues: WriteQueues
    if settings.rabbitmq_url:
        pipeline = queues = RabbitPipeline(settings.rabbitmq_url, settings.queue_name)
    else:
        pipeline = queues = MemoryPipeline(writer, settings.batch_max_events)
    numbers: Numbers
    reopening: Reopening | None = None
    if settings.redis_url:
        scripts = RedisScripts(
            settings.redis_url,
            settings.redis_key_prefix,
            settings.redis_wait_replicas,
            settings.redis_wait_timeout_ms,
        )
        numbers = reopening = recovering_numbers(scripts, store, ledger, queues)
    else:
        numbers = MemoryNumbers(store)
    hub = Hub(store, settings.live_gap_wait_ms / 1000, settings.live_queue_size)
    service = chat_service(
        settings,
        store,
        numbers,
        pipeline,
        search,
        hub,
        store.users,
        store.reading,
        pages,
        reopening,
        partial(rate_storage, settings),
    )
    return Container(
        settings, store, numbers, pipeline, search, feed, writer, service, hub, ledger, page_cache
    )


def recovering_numbers(
    scripts: RedisScripts, store: Store, ledger: Ledger, queues: WriteQueues
) -> RecoveringNumbers:
    """Numbers drawn in Redis, recovered after a data loss: one global epoch, or on Redis
    Cluster an epoch per application."""
    topology: Topology = (
        EpochPerApplication() if scripts.keys.epoch_per_application else GlobalEpoch()
    )
    recovery = Recovery(topology, ledger, queues, RedisRegistry(scripts))
    return RecoveringNumbers(RedisNumbers(scripts, store), recovery)


def write_consumers(container: Container) -> list[Consumer]:
    """A worker's consumers, one per write queue: the one taking new writes is consumed
    always, the other while it holds anything (see `graphql_chat.adapters.rabbitmq.queues`)."""
    settings = container.settings
    assert settings.rabbitmq_url, "the embedded mode has no queue to consume"
    return [
        Consumer(
            settings.rabbitmq_url,
            container.writer,
            settings.queue_name,
            batch_size=settings.batch_max_events,
            batch_ms=settings.worker_batch_ms,
            lane=lane,
            ledger=container.ledger,
        )
        for lane in range(rabbitmq_queues.LANES)
    ]


@asynccontextmanager
async def running(
    settings: Settings | None = None, search: bool = True
) -> AsyncIterator[Container]:
    container = bootstrap(settings)
    await container.start(search)
    try:
        yield container
    finally:
        await container.close()
