"""The numbers port in process: counters seeded lazily from the store's highest numbers.

Correct only while this process is the store's single writer, which is what the embedded
mode is: every number it hands out is either committed by the pipeline or lost with a failed
request, so the store's maximum is the right seed after a restart.

Idempotency keys are claimed here, in the event loop (a check and a claim with no await
between them: concurrent retries wait for the first), and remembered until their window
ends; the store keeps each claim with its write, so a retry after a restart finds it there.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from graphql_chat.domain import Claim, now_micros
from graphql_chat.errors import KeyReused, NotFound
from graphql_chat.ports import Drawn, Seeds

_UNIX_START = 0  # one process, one writer: numbering never needs another epoch
# Claims remembered in memory (the oldest go first: long stored, the store has them).
_CLAIMS_KEPT = 100_000


@dataclass(frozen=True, slots=True)
class _Record:
    fingerprint: str
    drawn: Drawn  # as a retry gets it back
    expires: int


class MemoryNumbers:
    def __init__(self, store: Seeds) -> None:
        self._store = store
        self._chats: dict[int, int] = {}
        self._messages: dict[tuple[int, int], int] = {}
        self._seeding: dict[object, asyncio.Lock] = {}
        self._revision = 0
        self._claims: OrderedDict[tuple[int, str], asyncio.Future[_Record | None]] = OrderedDict()

    async def _chat_counter(self, application_id: int) -> int:
        if application_id not in self._chats:
            async with self._lock(("chat", application_id)):
                if application_id not in self._chats:
                    self._chats[application_id] = await self._store.max_chat_number(application_id)
                    self._seeding.pop(("chat", application_id), None)
        return self._chats[application_id]

    async def _message_counter(self, application_id: int, chat_number: int) -> int:
        key = (application_id, chat_number)
        if key not in self._messages:
            async with self._lock(("message", *key)):
                if key not in self._messages:
                    self._messages[key] = await self._store.max_message_number(*key)
                    self._seeding.pop(("message", *key), None)
        return self._messages[key]

    def _lock(self, key: object) -> asyncio.Lock:
        return self._seeding.setdefault(key, asyncio.Lock())

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def ping(self) -> None:
        """In process: numbers can always be drawn."""

    async def next_chat(self, application_id: int, claim: Claim | None = None) -> Drawn:
        if claim is not None:
            return await self._claimed(
                application_id, claim, lambda: self.next_chat(application_id)
            )
        number = await self._chat_counter(application_id) + 1
        self._chats[application_id] = number
        self._messages[(application_id, number)] = 0
        return Drawn(number, 0, _UNIX_START, self._next_revision() // 1000)

    async def draw_message(
        self, application_id: int, chat_number: int, claim: Claim | None = None
    ) -> Drawn:
        if claim is not None:
            return await self._claimed(
                application_id, claim, lambda: self.draw_message(application_id, chat_number)
            )
        if chat_number > await self._chat_counter(application_id):
            raise NotFound(f"chat {chat_number} not found")
        key = (application_id, chat_number)
        number = await self._message_counter(*key) + 1
        self._messages[key] = number
        revision = self._next_revision()
        return Drawn(number, revision, _UNIX_START, revision // 1000)

    async def revise_message(self, application_id: int, chat_number: int, number: int) -> Drawn:
        if chat_number > await self._chat_counter(application_id) or number > (
            await self._message_counter(application_id, chat_number)
        ):
            raise NotFound(f"message {number} not found in chat {chat_number}")
        revision = self._next_revision()
        return Drawn(number, revision, _UNIX_START, revision // 1000)

    async def still_open(self, application_id: int, epoch: int) -> bool:
        return True

    async def register_application(self, application_id: int, token: str) -> None:
        self._chats[application_id] = 0

    async def application_id(self, token: str) -> int | None:
        return None  # the service's own cache and the store are all there is in process

    async def remember_token(self, token: str, application_id: int) -> None:
        pass

    async def _claimed(
        self, application_id: int, claim: Claim, draw: Callable[[], Awaitable[Drawn]]
    ) -> Drawn:
        """The draw under `claim`: the one that claimed its key before (in memory, else in
        the store), or a new one that claims it."""
        key = (application_id, claim.key)
        while True:
            found = self._claims.get(key)
            if found is None:
                break
            record = await asyncio.shield(found)
            if record is None:  # the claim's first draw failed: claim it again
                continue
            if record.expires <= now_micros():
                if self._claims.get(key) is found:
                    del self._claims[key]
                continue
            if record.fingerprint != claim.fingerprint:
                raise KeyReused()
            return record.drawn
        pending: asyncio.Future[_Record | None] = asyncio.get_running_loop().create_future()
        self._claims[key] = pending  # claimed before any await: retries wait for this one
        while len(self._claims) > _CLAIMS_KEPT:
            oldest = next(iter(self._claims))
            if not self._claims[oldest].done():
                break
            del self._claims[oldest]
        try:
            stored = await self._store.claimed(application_id, claim.key)
            if stored is not None:
                kept = Drawn(
                    stored.number,
                    stored.revision,
                    stored.epoch,
                    stored.at,
                    replayed=True,
                    durable=True,
                )
                pending.set_result(_Record(stored.fingerprint, kept, stored.expires))
                if stored.fingerprint != claim.fingerprint:
                    raise KeyReused()
                return kept
            drawn = await draw()
        except BaseException:
            if not pending.done():
                pending.set_result(None)
                del self._claims[key]
            raise
        expires = drawn.at + claim.window * 1_000_000
        pending.set_result(_Record(claim.fingerprint, replace(drawn, replayed=True), expires))
        return drawn

    def _next_revision(self) -> int:
        # Nanoseconds since the epoch, strictly increasing: ordered across restarts too, and
        # the draws' times (in microseconds) with it.
        self._revision = max(self._revision + 1, time.time_ns())
        return self._revision
