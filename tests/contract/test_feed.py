"""The feed port, on both adapters: what is published reaches every listener, in order, and
whole; on Redis, a broken connection is told (`lost`) once it is listening again, and a
publish that cannot reach Redis fails quietly (subscribers catch up from the store)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from redis.asyncio import Redis

from graphql_chat.adapters.memory_feed import MemoryFeed
from graphql_chat.adapters.redis_feed import RedisFeed
from graphql_chat.ports import Changes, Feed, IndexedMessage, StoredChat
from tests.engines import engine_url, unique_name


class _Listener:
    def __init__(self) -> None:
        self.changes_told: list[Changes] = []
        self.lost_told = 0
        self.heard = asyncio.Event()

    def changes(self, changes: Changes) -> None:
        self.changes_told.append(changes)
        self.heard.set()

    def lost(self) -> None:
        self.lost_told += 1
        self.heard.set()

    def created(self) -> list[int]:
        return [m.number for c in self.changes_told for m in c.created]

    async def until(self, condition: object, within: float = 10) -> None:
        async with asyncio.timeout(within):
            while not condition():  # type: ignore[operator]
                self.heard.clear()
                await self.heard.wait()


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def feed(request: pytest.FixtureRequest) -> AsyncIterator[Feed]:
    adapter: Feed = (
        MemoryFeed()
        if request.param == "memory"
        else RedisFeed(
            engine_url("REDIS_CLUSTER_URL" if request.param == "redis-cluster" else "REDIS_URL"),
            unique_name("feed"),
        )
    )
    await adapter.start()
    yield adapter
    await adapter.close()


AT = datetime(2026, 11, 30, 2, 21, 11, 123456, tzinfo=UTC)


def _message(number: int, body: str = "hello") -> IndexedMessage:
    return IndexedMessage(
        chat_id=3,
        number=number,
        body=body,
        revision=number,
        created_at=AT,
        updated_at=AT + timedelta(microseconds=number),
        author=f"user {number}" if number % 2 else None,  # a user's, or the backend's
    )


async def test_every_listener_hears_every_change_in_order_and_whole(feed: Feed) -> None:
    listeners = [_Listener(), _Listener()]
    for listener in listeners:
        await feed.listen(listener)
    await feed.publish(Changes())  # nothing to tell: nothing is told
    await feed.publish(
        Changes(
            created=[_message(1), _message(2, 'ünïcødé \U0001f600 "quoted"\n')],
            updated=[_message(1, "edited")],
            replayed=[_message(0)],
            chats=[StoredChat(application_id=9, number=4, chat_id=3, created_at=AT)],
        )
    )
    for n in range(3, 50):
        await feed.publish(Changes(created=[_message(n)]))
    for listener in listeners:
        await listener.until(lambda listener=listener: len(listener.created()) == 49)
        assert listener.created() == list(range(1, 50))
        first = listener.changes_told[0]
        assert first.created[1].body == 'ünïcødé \U0001f600 "quoted"\n'
        assert [m.body for m in first.updated] == ["edited"]
        assert [m.number for m in first.replayed] == [0]
        assert first.chats == [StoredChat(application_id=9, number=4, chat_id=3, created_at=AT)]
        assert first.created == [_message(1), _message(2, 'ünïcødé \U0001f600 "quoted"\n')]


async def test_closing_stops_every_listener(feed: Feed) -> None:
    """However many listeners, none is left listening (nor subscribing again, on a
    connection the close cut) once the feed is closed."""
    for _ in range(3):
        await feed.listen(_Listener())
    await feed.publish(Changes(created=[_message(1)]))
    await feed.close()
    await asyncio.sleep(0.3)  # longer than a listener waits before subscribing again
    live = [t for t in asyncio.all_tasks() if t.get_name() == "live-feed" and not t.done()]
    assert live == []


async def test_a_large_commit_arrives_whole(feed: Feed) -> None:
    listener = _Listener()
    await feed.listen(listener)
    big = [_message(n, "x" * 60_000) for n in range(1, 101)]  # 6 MB of bodies
    await feed.publish(Changes(created=big))
    await listener.until(lambda: len(listener.created()) == 100)
    assert listener.created() == list(range(1, 101))
    assert all(len(m.body) == 60_000 for c in listener.changes_told for m in c.created)


async def test_a_cluster_feed_reaches_listeners_on_every_master() -> None:
    """On Redis Cluster a process publishes through whichever master its client picks; a
    listener subscribed through any other hears it (the cluster relays pub/sub)."""
    channel = unique_name("feed")
    url = engine_url("REDIS_CLUSTER_URL")
    feeds = [RedisFeed(url, channel) for _ in range(4)]
    listeners = [_Listener() for _ in feeds]
    try:
        for feed, listener in zip(feeds, listeners, strict=True):
            await feed.start()
            await feed.listen(listener)
        for n, feed in enumerate(feeds, start=1):
            await feed.publish(Changes(created=[_message(n)]))
            for listener in listeners:
                await listener.until(lambda listener=listener, n=n: len(listener.created()) == n)
        for listener in listeners:
            assert listener.created() == [1, 2, 3, 4]
    finally:
        for feed in feeds:
            await feed.close()


async def test_a_cut_connection_is_told_once_listening_again() -> None:
    channel = unique_name("feed")
    feed = RedisFeed(engine_url("REDIS_URL"), channel)
    publisher = RedisFeed(engine_url("REDIS_URL"), channel)
    listener = _Listener()
    admin = Redis.from_url(engine_url("REDIS_URL"))
    try:
        await feed.listen(listener)
        await publisher.publish(Changes(created=[_message(1)]))
        await listener.until(lambda: listener.created() == [1])
        await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
        await listener.until(lambda: listener.lost_told == 1)
        await publisher.publish(Changes(created=[_message(2)]))
        await listener.until(lambda: listener.created() == [1, 2])
        await feed.ping()
    finally:
        await admin.aclose()
        await feed.close()
        await publisher.close()


async def test_a_publish_that_cannot_reach_redis_does_not_fail_the_write() -> None:
    unreachable = RedisFeed("redis://127.0.0.1:1/0", unique_name("feed"))
    try:
        await unreachable.publish(Changes(created=[_message(1)]))  # returns, logs
        with pytest.raises(Exception, match="unavailable"):
            await unreachable.ping()
    finally:
        await unreachable.close()
