"""The acceptance protocol: a write is acknowledged once it is durable and its numbering
epoch is still open; and what was acknowledged, waited for until the store holds it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from graphql_chat import retry
from graphql_chat.domain import Event, MessageWritten
from graphql_chat.errors import NotFound, OutcomeUnknown, Unavailable
from graphql_chat.numbering.ports import Reopening
from graphql_chat.ports import ChatRecords, Drawn, Numbers, Pipeline

T = TypeVar("T")

_SETTLE_WITHIN = 5.0  # seconds a write overtaken by a numbering reset waits to learn its fate
_STORED_WAIT = 5.0  # seconds a read waits for what was just acknowledged to be stored
_FIRST_WAIT = 0.05  # seconds before it looks again, then twice as long each time (up to 1)
_WAITERS = 256  # reads of one process waiting so at once
_UNKNOWN = "numbering was reset while the write was queued"


class Acceptance:
    def __init__(
        self,
        store: ChatRecords,
        numbers: Numbers,
        pipeline: Pipeline,
        reopening: Reopening | None = None,
        distributed: bool = False,
    ) -> None:
        """`reopening`: where a write overtaken by a numbering reset learns when numbering
        is open again (None: numbering is never reset, as in the embedded mode).
        `distributed`: a write is acknowledged once queued, before it is stored."""
        self.store = store
        self.numbers = numbers
        self.pipeline = pipeline
        self._reopening = reopening
        self._distributed = distributed
        self._waits = 0  # reads waiting for what was acknowledged to be stored

    async def accept(self, event: Event, drawn: Drawn) -> None:
        """Make the write durable, then acknowledge it only if its numbering epoch is still
        open: a write confirmed after a Redis data loss is not acknowledged (it may be set
        aside once the epoch is retired), so every acknowledged write was queued before the
        recovery's drain began."""
        await self.pipeline.submit(event)
        try:
            if await self.numbers.still_open(event.application_id, drawn.epoch):
                return
        except Unavailable as error:
            raise OutcomeUnknown("numbering could not confirm the write's epoch") from error
        if isinstance(event, MessageWritten):
            await self._settle(event)
            return
        raise OutcomeUnknown(_UNKNOWN)

    async def _settle(self, event: MessageWritten) -> None:
        """A message write that a numbering reset overtook: once the next epoch is open, every
        write of the old one is stored or never will be, so the store knows the outcome."""
        if self._reopening is None:
            raise OutcomeUnknown(_UNKNOWN)
        try:
            reopened = await self._reopening.reopened(event.application_id, _SETTLE_WITHIN)
            stored = (
                await self.store.message_revisions(
                    event.application_id, event.chat_number, event.number
                )
                if reopened
                else None
            )
        except Unavailable as error:
            raise OutcomeUnknown(_UNKNOWN) from error
        if not reopened:
            raise OutcomeUnknown(_UNKNOWN)
        if stored is not None and (
            stored[1] == event.revision if event.created else stored[0] >= event.revision
        ):
            return  # stored (an update may have been overtaken by a later one: as good)
        raise Unavailable("numbering was reset before the write was stored: not accepted; retry")

    async def stored(self, read: Callable[[], Awaitable[T]]) -> T:
        """What `read` finds once the store holds it. In the distributed mode a write is
        acknowledged once queued, so what was just written is waited for a little; only so
        many reads wait at once (unknown objects asked for in bulk cost a few reads each, not
        more)."""
        try:
            return await read()
        except NotFound:
            if not self._distributed or self._waits >= _WAITERS:
                raise
        self._waits += 1
        try:
            await asyncio.sleep(_FIRST_WAIT)
            async for attempt in retry.retrying(
                NotFound, 2 * _FIRST_WAIT, 1.0, within=_STORED_WAIT - _FIRST_WAIT
            ):
                with attempt:
                    return await read()
            raise AssertionError("unreachable: tenacity returns or raises")
        finally:
            self._waits -= 1
