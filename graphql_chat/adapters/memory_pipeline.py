"""The pipeline port in process: a queue feeding the write side in batches, with group commit.

`submit` enqueues the event and waits for the transaction that holds it to commit, so a
success is durable. Events that queue up while a batch commits form the next batch: under load
many requests share one commit; alone, a request pays one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from graphql_chat import metrics
from graphql_chat.domain import Event
from graphql_chat.errors import ChatError, Unavailable
from graphql_chat.ports import IndexedMessage, WriteSide

log = logging.getLogger(__name__)

_Item = tuple[Event, asyncio.Future[None]]


class MemoryPipeline:
    def __init__(self, writes: WriteSide, max_batch: int = 1000) -> None:
        self._writes = writes
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()  # None: stop
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self._in_flight = 0
        self._parked: list[IndexedMessage] = []  # stored while search was unavailable

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="memory-pipeline")

    async def close(self) -> None:
        """Commit everything accepted so far, then stop."""
        if self._task is None:
            return
        task, self._task = self._task, None
        self._queue.put_nowait(None)
        await task

    async def ping(self) -> None:
        if self._task is None or self._task.done():
            raise Unavailable("the write pipeline is not running")

    async def submit(self, event: Event) -> None:
        await self.ping()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((event, done))
        metrics.PIPELINE_DEPTH.inc()
        try:
            await done
        finally:
            metrics.PIPELINE_DEPTH.dec()

    async def _park(self, messages: Sequence[IndexedMessage]) -> None:
        """Search is unavailable: these are indexed with the next batch."""
        self._parked += messages

    # The write queues a numbering recovery waits on (`graphql_chat.numbering.ports.
    # WriteQueues`), when numbers come from Redis and writes are committed in process.

    async def drained(self, generation: int | None = None) -> bool:
        """One queue for every generation: drained when nothing is queued or in flight."""
        return self._queue.empty() and self._in_flight == 0

    async def route(self, generation: int) -> None:
        """One queue, in process: nothing to steer."""

    async def _run(self) -> None:
        while True:
            batch: list[_Item] = []
            item = await self._queue.get()
            while item is not None:
                batch.append(item)
                if len(batch) >= self._max_batch or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            if batch:
                await self._commit(batch)
            if item is None:
                return

    async def _commit(self, batch: list[_Item]) -> None:
        """One commit of the write side for the batch; each write's future gets its outcome.
        The store being down fails every write of the batch (their clients retry)."""
        started = time.perf_counter()
        self._in_flight = len(batch)
        events = [event for event, _ in batch]
        outcomes: list[ChatError | None]
        try:
            committed = await self._writes.commit(events)
            outcomes = committed.outcomes(events)
        except Unavailable as error:
            log.warning("batch of %d events failed: %s", len(batch), error.message)
            outcomes = [error] * len(batch)
        except Exception:
            log.exception("batch of %d events failed", len(batch))
            outcomes = [Unavailable("the write could not be committed; retry")] * len(batch)
        else:
            self.batches += 1
            log.debug(
                "committed %d events in %.1f ms", len(batch), 1e3 * (time.perf_counter() - started)
            )
            # Stored: whatever search does now, the writes succeeded.
            parked, self._parked = self._parked, []
            try:
                await self._writes.index([*parked, *committed.stored], park=self._park)
            except Exception:
                self._parked = [*parked, *committed.stored]
                log.exception(
                    "indexing failed; %d messages wait for the next batch", len(self._parked)
                )
        self._in_flight = 0
        for (_, done), outcome in zip(batch, outcomes, strict=True):
            if done.done():
                continue
            if outcome is None:
                done.set_result(None)
            else:
                done.set_exception(outcome)
