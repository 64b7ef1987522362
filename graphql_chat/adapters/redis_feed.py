"""The feed port across processes: Redis pub/sub on one channel.

Every process that commits (a worker, or an API process with the in-process pipeline)
publishes; every API process subscribes once and fans out to its own clients. Pub/sub keeps
nothing: a listener whose connection breaks is told `lost()` once it is subscribed again, and
catches up from the store. Large commits go out in several messages, each under `_CHUNK`
bytes of bodies, well below what Redis lets a subscriber fall behind by.

A message is a JSON object: `c` (created), `u` (updated) and `r` (replayed) hold messages as
[chat id, number, revision, body, created at, updated at], `h` chats as [application id,
number, chat id, created at]; times in microseconds since 1970-01-01 UTC. Entries without
times (from a process whose wire has none) are told with the time they arrive.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import orjson
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from graphql_chat import retry
from graphql_chat.adapters import redis_client
from graphql_chat.domain import instant, micros, now_micros
from graphql_chat.errors import Unavailable
from graphql_chat.ports import Changes, IndexedMessage, Listener, StoredChat

log = logging.getLogger(__name__)

_CHUNK = 256 * 1024
_REDIS_DOWN = (RedisError, OSError)  # what a call raises when Redis is not there
_FIRST_RETRY = 0.1
_LAST_RETRY = 2.0


def encode(changes: Changes) -> Iterator[bytes]:
    """The changes as one or more messages, each holding whole entries."""
    part: dict[str, list[Any]] = {}
    size = 0
    entries: list[tuple[str, list[Any], int]] = [
        ("h", [c.application_id, c.number, c.chat_id, micros(c.created_at)], 0)
        for c in changes.chats
    ]
    for key, messages in (("c", changes.created), ("u", changes.updated), ("r", changes.replayed)):
        entries += [
            (
                key,
                [
                    m.chat_id,
                    m.number,
                    m.revision,
                    m.body,
                    micros(m.created_at),
                    micros(m.updated_at),
                    m.author,
                ],
                len(m.body),
            )
            for m in messages
        ]
    for key, entry, weight in entries:
        if part and size + weight > _CHUNK:
            yield orjson.dumps(part)
            part, size = {}, 0
        part.setdefault(key, []).append(entry)
        size += weight + 32
    if part:
        yield orjson.dumps(part)


def decode(data: bytes) -> Changes:
    part = orjson.loads(data)

    now = now_micros()

    def messages(key: str) -> list[IndexedMessage]:
        # Entries of an older publisher lack the author, or the times too.
        return [
            IndexedMessage(
                c, n, b, r, instant(rest[0]), instant(rest[1]), rest[2] if len(rest) > 2 else None
            )
            for c, n, r, b, *rest in part.get(key, ())
            for rest in (rest or [now, now],)
        ]

    return Changes(
        created=messages("c"),
        updated=messages("u"),
        replayed=messages("r"),
        chats=[
            StoredChat(a, n, c, instant(at[0] if at else now)) for a, n, c, *at in part.get("h", ())
        ],
    )


class RedisFeed:
    def __init__(self, url: str, channel: str) -> None:
        self._redis = redis_client.connect(
            url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=10
        )
        self._channel = channel
        self._tasks: list[asyncio.Task[None]] = []  # one per listener
        self._closed = False

    async def start(self) -> None:
        try:
            await redis_client.ready(self._redis)
        except _REDIS_DOWN as error:  # the first publish or listen finds out again
            log.warning("the live feed (Redis) is unavailable at start: %s", error)

    async def close(self) -> None:
        self._closed = True  # a listener whose connection this closes does not listen again
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await redis_client.close(self._redis)

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except _REDIS_DOWN as error:
            raise Unavailable(f"the live feed (Redis) is unavailable: {error}") from error
        if any(task.done() for task in self._tasks):
            raise Unavailable("the live feed stopped listening")

    async def publish(self, changes: Changes) -> None:
        for data in encode(changes):
            try:
                await self._redis.publish(self._channel, data)
            except _REDIS_DOWN as error:
                # Subscribers find the hole when the next change arrives, or when a replay of
                # this batch is published, and read what they missed from the store.
                log.warning("could not publish committed changes: %s", error)
                return

    async def listen(self, listener: Listener) -> None:
        subscribed = asyncio.get_running_loop().create_future()
        self._tasks.append(asyncio.create_task(self._run(listener, subscribed), name="live-feed"))
        await subscribed

    async def _run(self, listener: Listener, subscribed: asyncio.Future[None]) -> None:
        """Subscribe, hand every change to `listener`, and subscribe again whenever the
        connection is lost (backing off while Redis stays down; after the first
        subscription, which fails at once)."""
        waiting = retry.logged(log, "live feed: cannot subscribe")
        while True:
            try:
                if not subscribed.done():
                    pubsub = await self._subscribed()
                else:
                    async for attempt in retry.retrying(
                        _REDIS_DOWN, _FIRST_RETRY, _LAST_RETRY, waiting=waiting
                    ):
                        with attempt:
                            pubsub = await self._subscribed()
            except _REDIS_DOWN as error:  # the first subscription
                subscribed.set_exception(
                    Unavailable(f"the live feed (Redis) is unavailable: {error}")
                )
                return
            if subscribed.done():
                log.warning("live feed subscribed again: subscribers catch up from the store")
                listener.lost()
            else:
                subscribed.set_result(None)
            try:
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None and message["type"] == "message":
                        listener.changes(decode(message["data"]))
            except _REDIS_DOWN as error:
                _stop_if_cancelled(error)
                if self._closed:
                    return
                log.warning("live feed connection lost (%s); subscribing again", error)
            finally:
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _subscribed(self) -> PubSub:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self._channel)
        except _REDIS_DOWN as error:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            _stop_if_cancelled(error)
            raise
        return pubsub


def _stop_if_cancelled(error: BaseException) -> None:
    """The client may turn a cancellation into a connection error: stop, do not retry."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from error
