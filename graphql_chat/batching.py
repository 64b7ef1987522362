"""Coalescing: concurrent calls share one round trip.

A call joins the pending batch and waits for its own result. A batch leaves at once when fewer
than `in_flight` batches are in flight (alone, a call pays one round trip and no added wait);
calls that arrive meanwhile wait together and leave as the next batch when one is done. Under
load, one Redis pipeline or one broker message then carries the work of many requests.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from graphql_chat import metrics
from graphql_chat.errors import Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

# Runs one batch: one result per item, in order. An exception in place of a result fails
# that call alone; an exception raised fails the whole batch.
BatchFunction = Callable[[list[T]], Awaitable[Sequence[R | BaseException]]]


class Coalescer(Generic[T, R]):
    def __init__(
        self, run: BatchFunction[T, R], kind: str, max_batch: int = 500, in_flight: int = 1
    ) -> None:
        """`kind`: what its batches are called in the metrics (`coalesced_batch_size`)."""
        self._run = run
        self._sizes = metrics.COALESCED.labels(kind)
        self._max_batch = max_batch
        self._in_flight = in_flight
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._busy = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0

    async def __call__(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if not self._scheduled and self._busy < self._in_flight:
            # The end of this loop iteration: calls made in the same iteration go together.
            self._scheduled = True
            loop.call_soon(self._launch)
        return await future

    def _launch(self) -> None:
        self._scheduled = False
        while self._pending and self._busy < self._in_flight:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            self._busy += 1
            task = asyncio.create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self._sizes.observe(len(batch))
        try:
            results = await self._run([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"{len(results)} results for a batch of {len(batch)}")
        except BaseException as error:
            failure = error if isinstance(error, Exception) else Unavailable("shutting down")
            for _, future in batch:
                if not future.done():
                    future.set_exception(failure)
            if not isinstance(error, Exception):
                raise
        else:
            self.batches += 1
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():  # the caller gave up (cancelled); the work was still done
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        finally:
            self._busy -= 1
            if self._pending and not self._scheduled:
                self._launch()
