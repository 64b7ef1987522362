"""The numbers port in process: counters seeded lazily from the store's highest numbers.

Correct only while this process is the store's single writer, which is what the embedded
mode is: every number it hands out is either committed by the pipeline or lost with a failed
request, so the store's maximum is the right seed after a restart.
"""

from __future__ import annotations

import asyncio
import time

from graphql_chat.errors import NotFound
from graphql_chat.ports import Drawn, Store

_EPOCH = 0  # one process, one writer: numbering never needs another epoch


class MemoryNumbers:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._chats: dict[int, int] = {}
        self._messages: dict[tuple[int, int], int] = {}
        self._seeding: dict[object, asyncio.Lock] = {}
        self._revision = 0

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

    async def next_chat(self, application_id: int) -> Drawn:
        number = await self._chat_counter(application_id) + 1
        self._chats[application_id] = number
        self._messages[(application_id, number)] = 0
        return Drawn(number, 0, _EPOCH, self._next_revision() // 1000)

    async def draw_message(self, application_id: int, chat_number: int) -> Drawn:
        if chat_number > await self._chat_counter(application_id):
            raise NotFound(f"chat {chat_number} not found")
        key = (application_id, chat_number)
        number = await self._message_counter(*key) + 1
        self._messages[key] = number
        revision = self._next_revision()
        return Drawn(number, revision, _EPOCH, revision // 1000)

    async def revise_message(self, application_id: int, chat_number: int, number: int) -> Drawn:
        if chat_number > await self._chat_counter(application_id) or number > (
            await self._message_counter(application_id, chat_number)
        ):
            raise NotFound(f"message {number} not found in chat {chat_number}")
        revision = self._next_revision()
        return Drawn(number, revision, _EPOCH, revision // 1000)

    async def still_open(self, epoch: int) -> bool:
        return True

    async def reopened(self, within: float) -> bool:
        return True

    async def register_application(self, application_id: int, token: str) -> None:
        self._chats[application_id] = 0

    async def application_id(self, token: str) -> int | None:
        return None  # the service's own cache and the store are all there is in process

    async def remember_token(self, token: str, application_id: int) -> None:
        pass

    def _next_revision(self) -> int:
        # Nanoseconds since the epoch, strictly increasing: ordered across restarts too, and
        # the draws' times (in microseconds) with it.
        self._revision = max(self._revision + 1, time.time_ns())
        return self._revision
