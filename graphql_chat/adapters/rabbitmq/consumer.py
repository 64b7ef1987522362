"""The RabbitMQ consumer: accepted writes in batches, committed and indexed by the write side.

Two stages, so the store and search work at the same time:

- **commit**: a batch closes at `batch_size` events or `batch_ms` after its first delivery;
  its events are applied in one store transaction. A store failure keeps the batch and
  retries it with backoff (a stop meanwhile hands the batch back to the broker). An event
  that cannot be applied even alone goes to the dead-letter queue with a log line naming
  it; the rest of its delivery is applied.
- **index**: everything committed while the previous bulk request ran goes to search in one
  bulk request; when search is down the stored messages are parked in the search queue
  instead, which a second consumer indexes once search answers again. Only then are the
  deliveries acknowledged (`multiple=True`, in delivery order).

So a worker killed at any point loses nothing: the broker redelivers what was not
acknowledged, and the writer's upserts and the index's external versions make the replay a
no-op. Prefetch bounds what is in flight. SIGTERM/SIGINT: stop consuming, finish the batch
being committed and index what was committed, acknowledge it, and close; deliveries not yet
in a batch go back to the queue for the next worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractRobustConnection
from opentelemetry.context import Context

from graphql_chat import metrics, retry, tracing
from graphql_chat.adapters.rabbitmq import queues
from graphql_chat.adapters.rabbitmq.wire import (
    UNDECODABLE,
    decode_events,
    encode,
    event_to_dict,
    traces_of,
)
from graphql_chat.domain import UNKNOWN_TIME, Event, instant, lag_ms, micros
from graphql_chat.errors import Stopped, Unavailable
from graphql_chat.logs import log_event
from graphql_chat.numbering.ports import Ledger
from graphql_chat.ports import IndexedMessage, WriteSide

log = logging.getLogger(__name__)

PREFETCH = 256  # broker messages in hand (committing, indexing, waiting): about 64 MB at most
_IDLE_POLL = 0.2  # seconds between checks of the queue and of numbering while idle
_DEPTH_EVERY = 5.0  # seconds between two readings of the queue's depth for the metrics


@dataclass
class _Delivery:
    message: AbstractIncomingMessage
    events: list[Event]
    arrived: float  # event loop time
    parents: list[str] = field(default_factory=list)  # each event's trace context, if traced


def _parents(deliveries: Sequence[_Delivery]) -> list[Context | None]:
    """The trace context of each traced event of the deliveries."""
    return [tracing.parent_of(p) for d in deliveries for p in d.parents if p]


@dataclass
class _Stored:
    """Deliveries whose events are in the store, waiting for search before their ack."""

    deliveries: list[_Delivery]
    changed: list[IndexedMessage] = field(default_factory=list)


class Consumer:
    def __init__(
        self,
        url: str,
        writes: WriteSide,
        queue: str = "graphql-chat.writes",
        batch_size: int = 500,
        batch_ms: float = 50,
        lane: int = 0,
        ledger: Ledger | None = None,
    ) -> None:
        """`ledger`: where numbering's state is read, to pause while a recovery drains the
        write queues or while this one takes no new writes (None: no recovery can run, as
        in tools and tests: consume always)."""
        self._url = url
        self._writes = writes
        self._ledger = ledger
        self._queue_name = queue
        # The write queue consumed (`queues`): lane 0 also catches up on search, and reports
        # the depth of both.
        self._lane = lane
        self._consumed = queues.lane(queue, lane)
        self._batch_size = batch_size
        self._batch_delay = batch_ms / 1000
        self._pending: list[_Delivery] = []
        self._pending_events = 0
        self._committed: list[_Stored] = []
        self._wakeup = asyncio.Event()
        self._indexable = asyncio.Event()
        self._stopping = asyncio.Event()
        self._closing = False  # nothing more will be committed: the index stage may end
        self._channel: AbstractChannel | None = None  # for publishing
        self._consuming: tuple[AbstractChannel, Any, str] | None = None
        self._in_hand = 0  # deliveries taken into batches, not yet acknowledged
        self.batches = 0
        self.applied = 0
        self.rejected = 0
        self.set_aside = 0

    async def run(self, burst: bool = False) -> None:
        """Consume until stopped; with `burst`, return once the queue is empty (tests, drains)."""
        connection: AbstractRobustConnection = await aio_pika.connect_robust(self._url)
        try:
            # Dead letters and parked search work: confirmed, on a channel of their own.
            self._channel = await connection.channel(publisher_confirms=True)
            await queues.declare(self._channel, self._queue_name)
            # Search catch-up (lane 0's consumer's) on its own channel: acks with
            # multiple=True on the writes channel must never cover its deliveries.
            search_queue = None
            if self._lane == 0:
                search_channel = await connection.channel()
                await search_channel.set_qos(prefetch_count=1)
                search_queue = await search_channel.get_queue(queues.search(self._queue_name))
            indexer = asyncio.create_task(self._index_stage(), name="worker-index")
            depth = asyncio.create_task(self._watch_depth(), name="worker-queue-depth")
            if burst or self._lane == 0:  # the other lane is consumed when it should be
                await self._consume(connection)
            search_tag = None if search_queue is None else await search_queue.consume(self._reindex)
            try:
                await self._commit_stage(burst, connection)
                log.debug("consuming stopped")
            finally:
                with suppress(Exception):
                    if search_queue is not None and search_tag is not None:
                        await search_queue.cancel(search_tag)
                    if self._consuming is not None:
                        _, queue, tag = self._consuming
                        await queue.cancel(tag)
                if self._pending:  # not taken into a batch: the broker gives them to others
                    log.info("handing back %d deliveries", len(self._pending))
                self._closing = True
                self._indexable.set()
                depth.cancel()
                await indexer  # raises what stopped it, if anything did
        finally:
            await connection.close()

    async def _consume(self, connection: AbstractRobustConnection) -> None:
        channel = await connection.channel()
        # Messages, not events: at most PREFETCH times MAX_MESSAGE_BYTES held at once.
        await channel.set_qos(prefetch_count=PREFETCH)
        _, lanes = await queues.declare(channel, self._queue_name)
        queue = lanes[self._lane]
        tag = await queue.consume(self._receive)
        self._consuming = (channel, queue, tag)

    async def _pause_or_resume(self, connection: AbstractRobustConnection) -> None:
        """While numbering recovers, or while new writes go to the other write queue, an idle
        worker stops consuming, so that the queue shows no consumer once nothing is queued or
        held (a recovery's exact drain condition); it consumes again when the queue takes new
        writes once more or something arrives meanwhile."""
        try:
            if self._ledger is None:
                retiring = False
            else:
                state = await self._ledger.numbering()
                retiring = state.recovering or state.generation % queues.LANES != self._lane
            if self._consuming is None:
                if not retiring or await self._ready():
                    log.info("consuming %s", self._consumed)
                    await self._consume(connection)
                return
            if not retiring or self._pending or self._in_hand or await self._ready():
                return
        except (Unavailable, *queues.CHANNEL_GONE) as error:
            log.debug("recovery check skipped: %s", error)
            return
        channel, _, _ = self._consuming
        self._consuming = None
        await channel.close()  # anything delivered meanwhile goes back to the queue
        self._pending.clear()
        self._pending_events = 0
        log.info("%s is empty and takes no new writes: consuming paused", self._consumed)

    async def _ready(self, name: str | None = None) -> int:
        """Messages ready in the write queue consumed (or `name`), exact (AMQP passive
        declare)."""
        assert self._channel is not None
        # Straight to the AMQP channel: a robust channel answers a repeated declare from
        # its cache, with the count of the first declaration.
        raw = await self._channel.get_underlay_channel()
        declared = await raw.queue_declare(name or self._consumed, passive=True)
        return int(declared.message_count or 0)

    async def _watch_depth(self) -> None:
        """The write queues' depth for the metrics, every `_DEPTH_EVERY` seconds (lane 0)."""
        while self._lane == 0:
            with suppress(*queues.CHANNEL_GONE):
                depth = 0
                for lane in range(queues.LANES):
                    depth += await self._ready(queues.lane(self._queue_name, lane))
                metrics.QUEUE_DEPTH.set(depth)
            await asyncio.sleep(_DEPTH_EVERY)

    def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()
        self._indexable.set()

    async def _receive(self, message: AbstractIncomingMessage) -> None:
        try:
            events = decode_events(message.body)
        except UNDECODABLE as error:
            log.error("dead-lettering undecodable message %r: %s", message.body[:200], error)
            await message.reject(requeue=False)
            self.rejected += 1
            return
        parents = traces_of(message.headers, len(events)) if tracing.on else []
        self._pending.append(_Delivery(message, events, asyncio.get_running_loop().time(), parents))
        self._pending_events += len(events)
        self._wakeup.set()

    # -- commit stage --------------------------------------------------------------------------

    async def _commit_stage(self, burst: bool, connection: AbstractRobustConnection) -> None:
        while not self._stopping.is_set():
            if not self._pending:
                self._wakeup.clear()
                if burst:
                    if await self._queue_empty():
                        return
                else:
                    await self._pause_or_resume(connection)
                with suppress(TimeoutError):
                    async with asyncio.timeout(_IDLE_POLL):
                        await self._wakeup.wait()
                continue
            if self._pending_events < self._batch_size:
                # The window opened when the oldest delivery arrived, often during the
                # previous commit: wait only for what is left of it.
                waited = asyncio.get_running_loop().time() - self._pending[0].arrived
                if waited < self._batch_delay:
                    await asyncio.sleep(self._batch_delay - waited)
            await self._commit_batch()

    async def _queue_empty(self) -> bool:
        if self._committed or self._pending:
            return False
        ready = await self._ready()
        log.debug("burst check: %s ready, %d pending", ready, len(self._pending))
        return ready == 0 and not self._pending and not self._committed

    async def _commit_batch(self) -> None:
        taken, events_taken = 1, len(self._pending[0].events)  # a delivery is never split
        while (
            taken < len(self._pending)
            and events_taken + len(self._pending[taken].events) <= self._batch_size
        ):
            events_taken += len(self._pending[taken].events)
            taken += 1
        batch, self._pending = self._pending[:taken], self._pending[taken:]
        self._pending_events -= sum(len(d.events) for d in batch)
        self._in_hand += len(batch)
        events = [event for delivery in batch for event in delivery.events]
        started = asyncio.get_running_loop().time()
        started_ns = time.time_ns()
        try:
            outcome = await self._writes.commit(events, until=self._stopping)
        except Stopped:
            # Unacknowledged, so the broker redelivers all of it; what was applied alone
            # meanwhile changes nothing when applied again.
            log.warning("stopping with the store unavailable: handing back %d events", len(events))
            self._in_hand -= len(batch)
            return
        for event, error in outcome.failed:
            log.error("dead-lettering event that cannot be applied: %r (%s)", event, error)
            await self._publish(queues.dead(self._queue_name), event_to_dict(event))
            self.rejected += 1
        for event, reason in outcome.set_aside:
            await self._publish(
                queues.dead(self._queue_name), {**event_to_dict(event), "set_aside": reason}
            )
            self.set_aside += 1
        self.batches += 1
        now = asyncio.get_running_loop().time()
        if tracing.on:
            tracing.spans_of(
                "graphql-chat commit",
                _parents(batch),
                started_ns,
                time.time_ns(),
                **{"graphql_chat.batch.events": len(events)},
            )
        log_event(
            log,
            "batch",
            events=len(events),
            deliveries=len(batch),
            commit_ms=round((now - started) * 1000, 3),
            waited_ms=round((started - batch[0].arrived) * 1000, 3),
            lag_ms=lag_ms(events),
            failed=len(outcome.failed),
            set_aside=len(outcome.set_aside),
        )
        self._committed.append(_Stored(batch, outcome.stored))
        self._indexable.set()

    # -- index stage ---------------------------------------------------------------------------

    async def _index_stage(self) -> None:
        try:
            while True:
                if not self._committed:
                    if self._closing:
                        return
                    await self._indexable.wait()
                    self._indexable.clear()
                    continue
                ready, self._committed = self._committed, []
                started = asyncio.get_running_loop().time()
                started_ns = time.time_ns()
                changed = [message for c in ready for message in c.changed]
                await self._writes.index(changed, park=self._park)
                if tracing.on:
                    tracing.spans_of(
                        "graphql-chat index",
                        _parents([d for c in ready for d in c.deliveries]),
                        started_ns,
                        time.time_ns(),
                        **{"graphql_chat.batch.messages": len(changed)},
                    )
                log.debug(
                    "indexed %d batches in %.1f ms",
                    len(ready),
                    (asyncio.get_running_loop().time() - started) * 1000,
                )
                deliveries = [delivery for c in ready for delivery in c.deliveries]
                await self._acknowledge(deliveries)
                self._in_hand -= len(deliveries)
        except Exception:
            log.exception("the index stage failed; stopping (unacknowledged work is redelivered)")
            self.stop()
            raise

    async def _acknowledge(self, deliveries: list[_Delivery]) -> None:
        try:
            # Deliveries are settled in order, so this acknowledges exactly these.
            await deliveries[-1].message.ack(multiple=True)
        except queues.CHANNEL_GONE as error:
            # The channel they came on is gone; the broker delivers them again, and applying
            # them again changes nothing.
            log.warning("could not acknowledge %d deliveries (%s)", len(deliveries), error)
            return
        self.applied += sum(len(d.events) for d in deliveries)

    async def _park(self, changed: Sequence[IndexedMessage]) -> None:
        """Search is unavailable: the stored messages wait in the search queue, which the
        second consumer indexes once search answers again."""
        payload = [
            [
                m.chat_id,
                m.number,
                m.body,
                m.revision,
                micros(m.created_at),
                micros(m.updated_at),
                m.author,
            ]
            for m in changed
        ]
        await self._publish(queues.search(self._queue_name), {"messages": payload})

    async def _publish(self, routing_key: str, payload: dict[str, Any]) -> None:
        assert self._channel is not None
        await self._channel.default_exchange.publish(encode(payload), routing_key=routing_key)

    async def _reindex(self, message: AbstractIncomingMessage) -> None:
        try:
            rows = orjson.loads(message.body)["messages"]
            # Rows without times (a publisher before `t`): the store has them for searches;
            # without an author (before authors): the backend's.
            changed = [
                IndexedMessage(int(c), int(n), str(b), int(r), *_times(rest[:2]), _author(rest[2:]))
                for c, n, b, r, *rest in rows
            ]
        except UNDECODABLE:
            log.error("dead-lettering undecodable search message %r", message.body[:200])
            await message.reject(requeue=False)
            return
        try:
            async for attempt in retry.retrying(Unavailable, 0.5, 10.0, until=self._stopping):
                with attempt:
                    await self._writes.index(changed)
        except Unavailable:  # stopping while search is down: the broker keeps it
            await message.nack(requeue=True)
            return
        await message.ack()


def _author(rest: list[object]) -> str | None:
    return None if not rest or rest[0] is None else str(rest[0])


def _times(times: list[object]) -> tuple[datetime, datetime]:
    if len(times) != 2:
        return UNKNOWN_TIME, UNKNOWN_TIME
    return instant(int(str(times[0]))), instant(int(str(times[1])))
