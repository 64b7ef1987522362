"""The pipeline port in process: a queue feeding the batching writer, with group commit.

`submit` enqueues the event and waits for the transaction that holds it to commit, so a
success is durable. Events that queue up while a batch commits form the next batch: under load
many requests share one commit; alone, a request pays one.
"""

from __future__ import annotations

import asyncio
import logging
import time

from graphql_chat.domain import Event
from graphql_chat.errors import ChatError, Conflict, Unavailable
from graphql_chat.writer import Writer

log = logging.getLogger(__name__)

_Item = tuple[Event, asyncio.Future[None]]


class MemoryPipeline:
    def __init__(self, writer: Writer, max_batch: int = 1000) -> None:
        self._writer = writer
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()  # None: stop
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self._in_flight = 0

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

    async def submit(self, event: Event) -> None:
        if self._task is None or self._task.done():
            raise Unavailable("the write pipeline is not running")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((event, done))
        await done

    async def drained(self) -> bool:
        return self._queue.empty() and self._in_flight == 0

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
        started = time.perf_counter()
        self._in_flight = len(batch)
        try:
            refused = {
                id(event): reason
                for event, reason in await self._writer.apply([event for event, _ in batch])
            }
        except Exception as error:
            log.exception("batch of %d events failed to commit", len(batch))
            failure = (
                error
                if isinstance(error, ChatError)
                else Unavailable("the write could not be committed; retry")
            )
            self._in_flight = 0
            for _, done in batch:
                if not done.done():
                    done.set_exception(failure)
        else:
            self.batches += 1
            self._in_flight = 0
            log.debug(
                "committed %d events in %.1f ms", len(batch), 1e3 * (time.perf_counter() - started)
            )
            for event, done in batch:
                if done.done():
                    continue
                if id(event) in refused:
                    done.set_exception(Conflict(f"the write was refused: {refused[id(event)]}"))
                else:
                    done.set_result(None)
