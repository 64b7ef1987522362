"""The pipeline port in process: a queue feeding the batching writer, with group commit.

`submit` enqueues the event and waits for the transaction that holds it to commit, so a
success is durable. Events that queue up while a batch commits form the next batch: under load
many requests share one commit; alone, a request pays one.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy.exc import StatementError

from graphql_chat.domain import Event
from graphql_chat.errors import ChatError, Conflict, InvalidInput, Unavailable
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
        """One transaction for the batch; if it fails, each write alone, so that a write the
        store cannot take fails by itself and never takes its neighbours with it."""
        started = time.perf_counter()
        self._in_flight = len(batch)
        try:
            outcomes = await self._apply([event for event, _ in batch])
        except Unavailable as error:  # the store is down: every write of the batch fails
            log.warning("batch of %d events failed: %s", len(batch), error.message)
            outcomes = [error] * len(batch)
        except Exception:
            log.exception("batch of %d events failed; applying them one by one", len(batch))
            outcomes = [await self._alone(event) for event, _ in batch]
        else:
            self.batches += 1
            log.debug(
                "committed %d events in %.1f ms", len(batch), 1e3 * (time.perf_counter() - started)
            )
        self._in_flight = 0
        for (_, done), outcome in zip(batch, outcomes, strict=True):
            if done.done():
                continue
            if outcome is None:
                done.set_result(None)
            else:
                done.set_exception(outcome)

    async def _apply(self, events: list[Event]) -> list[ChatError | None]:
        refused = {id(event): reason for event, reason in await self._writer.apply(events)}
        return [
            Conflict(f"the write was refused: {refused[id(event)]}")
            if id(event) in refused
            else None
            for event in events
        ]

    async def _alone(self, event: Event) -> ChatError | None:
        try:
            return (await self._apply([event]))[0]
        except ChatError as error:
            return error
        except (UnicodeError, ValueError, StatementError):
            # What this write holds cannot be stored (the edge checks should have said so).
            log.exception("the store refused %r", event)
            return InvalidInput("the write was refused by the store: it holds data it cannot keep")
        except Exception:
            log.exception("the write %r could not be committed", event)
            return Unavailable("the write could not be committed; retry")
