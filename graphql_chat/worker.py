"""The RabbitMQ worker: consume accepted writes in batches and apply them with the Writer.

- prefetch bounds what is in flight; a batch closes at `batch_size` events or `batch_ms`
  after its first one;
- one store transaction per batch, acknowledged (`multiple=True`) only after it commits, so a
  worker killed mid-batch loses nothing: the broker redelivers and the writer's upserts make
  the replay a no-op;
- a store failure keeps the batch unacknowledged and retries it with backoff;
- an event that cannot be applied even alone is rejected to the dead-letter queue with a log
  line naming it;
- when search is down the store still commits; the stored messages go to the search queue,
  which a second consumer indexes once search answers again;
- SIGTERM/SIGINT: stop consuming, finish the batch in hand, close.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

import aio_pika
import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from graphql_chat.adapters.rabbitmq_pipeline import declare_queues, encode
from graphql_chat.domain import Event, event_from_dict
from graphql_chat.errors import Unavailable
from graphql_chat.ports import IndexedMessage
from graphql_chat.writer import Writer

log = logging.getLogger(__name__)


class Worker:
    def __init__(
        self,
        url: str,
        writer: Writer,
        queue: str = "graphql-chat.writes",
        batch_size: int = 500,
        batch_ms: float = 20,
    ) -> None:
        self._url = url
        self._writer = writer
        self._queue_name = queue
        self._batch_size = batch_size
        self._batch_delay = batch_ms / 1000
        self._pending: list[AbstractIncomingMessage] = []
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self.batches = 0
        self.applied = 0
        self.rejected = 0
        self._publish_channel: Any = None

    async def run(self, burst: bool = False) -> None:
        """Consume until stopped; with `burst`, return once the queue is empty (tests, drains)."""
        connection: AbstractRobustConnection = await aio_pika.connect_robust(self._url)
        try:
            channel = await connection.channel(publisher_confirms=True)
            await channel.set_qos(prefetch_count=self._batch_size * 2)
            queue = await declare_queues(channel, self._queue_name)
            # Search catch-up on its own channel: acks with multiple=True on the writes
            # channel must never cover its deliveries.
            search_channel = await connection.channel()
            await search_channel.set_qos(prefetch_count=1)
            search_queue = await search_channel.get_queue(f"{self._queue_name}.search")
            self._publish_channel = channel
            tag = await queue.consume(self._receive)
            search_tag = await search_queue.consume(self._reindex)
            try:
                await self._batches(burst, queue)
                log.debug("consuming stopped")
            finally:
                with suppress(Exception):
                    await queue.cancel(tag)
                    await search_queue.cancel(search_tag)
                if self._pending:  # consumer cancelled: finish what we hold
                    await self._flush()
        finally:
            await connection.close()

    def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()

    async def _receive(self, message: AbstractIncomingMessage) -> None:
        self._pending.append(message)
        self._wakeup.set()

    async def _batches(self, burst: bool, queue: Any) -> None:
        while not self._stopping.is_set():
            if not self._pending:
                self._wakeup.clear()
                if burst:
                    # Straight to the AMQP channel: a robust channel answers a repeated
                    # declare from its cache, with the count of the first declaration.
                    raw = await queue.channel.get_underlay_channel()
                    declared = await raw.queue_declare(self._queue_name, passive=True)
                    ready = declared.message_count
                    log.debug("burst check: %s ready, %d pending", ready, len(self._pending))
                    if ready == 0 and not self._pending:
                        return
                with suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=0.5)
                continue
            if len(self._pending) < self._batch_size:
                await asyncio.sleep(self._batch_delay)
            await self._flush()

    async def _flush(self) -> None:
        batch, self._pending = self._pending[: self._batch_size], self._pending[self._batch_size :]
        events: list[Event] = []
        usable: list[AbstractIncomingMessage] = []
        for message in batch:
            try:
                events.append(event_from_dict(orjson.loads(message.body)))
                usable.append(message)
            except (ValueError, KeyError, TypeError) as error:
                log.error("dead-lettering undecodable message %r: %s", message.body[:200], error)
                await message.reject(requeue=False)
                self.rejected += 1
        if usable:
            await self._apply(events, usable)

    async def _apply(self, events: list[Event], messages: list[AbstractIncomingMessage]) -> None:
        delay = 0.1
        while True:
            try:
                changed = await self._writer.store.apply(events)
                break
            except Unavailable as error:
                log.warning(
                    "store unavailable, retrying batch of %d in %.1fs: %s",
                    len(events),
                    delay,
                    error,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception:
                if len(events) == 1:
                    log.exception("dead-lettering event that cannot be applied: %r", events[0])
                    await messages[0].reject(requeue=False)
                    self.rejected += 1
                    return
                log.exception("batch of %d failed; applying its events one by one", len(events))
                for event, message in zip(events, messages, strict=True):
                    await self._apply([event], [message])
                return
        await self._index(changed)
        # Deliveries are settled in order, so this acknowledges exactly this batch.
        await messages[-1].ack(multiple=True)
        self.batches += 1
        self.applied += len(events)

    async def _index(self, changed: Sequence[IndexedMessage]) -> None:
        """Search after the commit; while search is down, park the work in the search queue."""
        if not changed:
            return
        try:
            await self._writer.search.index(changed)
        except Unavailable:
            payload = [[m.chat_id, m.number, m.body, m.revision] for m in changed]
            await self._publish_channel.default_exchange.publish(
                encode({"messages": payload}), routing_key=f"{self._queue_name}.search"
            )
            log.warning("search unavailable: %d messages parked for indexing", len(changed))

    async def _reindex(self, message: AbstractIncomingMessage) -> None:
        try:
            rows = orjson.loads(message.body)["messages"]
            changed = [IndexedMessage(int(c), int(n), str(b), int(r)) for c, n, b, r in rows]
        except (ValueError, KeyError, TypeError):
            log.error("dead-lettering undecodable search message %r", message.body[:200])
            await message.reject(requeue=False)
            return
        delay = 0.5
        while not self._stopping.is_set():
            try:
                await self._writer.search.index(changed)
                await message.ack()
                return
            except Unavailable:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        await message.nack(requeue=True)


async def run_worker(worker: Worker, burst: bool = False) -> None:
    """Run until SIGTERM or SIGINT: stop consuming, finish the batch in hand, close."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    await worker.run(burst=burst)
