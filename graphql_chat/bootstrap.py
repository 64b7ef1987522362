"""The composition root: the only module that picks adapters. Every entry point calls it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from graphql_chat.adapters.elastic_search import ElasticSearch
from graphql_chat.adapters.fts5_search import Fts5Search
from graphql_chat.adapters.memory_feed import MemoryFeed
from graphql_chat.adapters.memory_numbers import MemoryNumbers
from graphql_chat.adapters.memory_pipeline import MemoryPipeline
from graphql_chat.adapters.rabbitmq.publisher import RabbitPipeline
from graphql_chat.adapters.redis_feed import RedisFeed
from graphql_chat.adapters.redis_numbers import RedisNumbers
from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.config import Settings
from graphql_chat.errors import Unavailable
from graphql_chat.live import Hub
from graphql_chat.pages import PageCache
from graphql_chat.ports import Feed, Numbers, Pipeline, Search, Store
from graphql_chat.services import ChatService, page_bytes
from graphql_chat.writer import Writer

HEALTH_TIMEOUT = 5.0  # seconds a dependency's check may take before it counts as down
HEALTH_SPACING = 0.1  # seconds at least between the beginnings of two rounds of checks


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
    _running: asyncio.Future[dict[str, str]] | None = field(default=None, repr=False)
    _next: asyncio.Future[dict[str, str]] | None = field(default=None, repr=False)
    _began: float = field(default=float("-inf"), repr=False)  # when the last round began

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
        """Each dependency: "ok", or what is wrong with it (numbers: also whether numbering
        is open or recovering after a Redis data loss).

        The checks run at once, each for at most `HEALTH_TIMEOUT` seconds, in rounds: one at
        a time, each beginning at least `HEALTH_SPACING` seconds after the last began. A
        caller gets the next round to begin, shared with everyone who asks before it does, so
        its answer is never older than its question; and however many clients ask (`/health`
        is public), a process checks each dependency at most 1 / `HEALTH_SPACING` times a
        second, and holds at most one check of it at a time however slowly it answers."""
        if self._next is None:
            self._next = asyncio.ensure_future(self._round(self._running))
        # Shielded: a caller that goes away does not cancel the round the others wait for.
        return dict(await asyncio.shield(self._next))

    async def _round(self, previous: asyncio.Future[dict[str, str]] | None) -> dict[str, str]:
        loop = asyncio.get_running_loop()
        if previous is not None:
            await asyncio.wait([previous])
        if (wait := self._began + HEALTH_SPACING - loop.time()) > 0:
            await asyncio.sleep(wait)
        # From here on, whoever asks waits for the round after this one.
        self._running, self._next, self._began = self._next, None, loop.time()
        return await self._check()

    async def _check(self) -> dict[str, str]:
        checks: dict[str, Callable[[], Awaitable[None]]] = {
            "store": self.store.ping,
            "numbers": self.numbers.ping,
            "pipeline": self.pipeline.ping,
            "search": self.search.ping,
            "feed": self.feed.ping,
        }

        async def state(check: Callable[[], Awaitable[None]]) -> str:
            try:
                async with asyncio.timeout(HEALTH_TIMEOUT):
                    await check()
            except Unavailable as error:
                return error.message
            except TimeoutError:
                return "timed out"
            return "ok"

        states = await asyncio.gather(*(state(check) for check in checks.values()))
        return dict(zip(checks, states, strict=True))

    async def close(self) -> None:
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
    if settings.elasticsearch_url:
        search = ElasticSearch(
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
    pages = (
        PageCache(settings.page_cache_bytes, page_bytes)
        if settings.is_sqlite and not settings.redis_url and settings.page_cache_bytes
        else None
    )
    writer = Writer(store, search, feed, pages)
    pipeline: Pipeline
    if settings.rabbitmq_url:
        pipeline = RabbitPipeline(settings.rabbitmq_url, settings.queue_name)
    else:
        pipeline = MemoryPipeline(writer, settings.batch_max_events)
    numbers: Numbers
    if settings.redis_url:
        numbers = RedisNumbers(
            settings.redis_url,
            store,
            pipeline.drained,
            settings.redis_key_prefix,
            settings.redis_wait_replicas,
            settings.redis_wait_timeout_ms,
            pipeline.route,
        )
    else:
        numbers = MemoryNumbers(store)
    hub = Hub(store, settings.live_gap_wait_ms / 1000, settings.live_queue_size)
    service = ChatService(settings, store, numbers, pipeline, search, hub, pages)
    return Container(settings, store, numbers, pipeline, search, feed, writer, service, hub)


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
