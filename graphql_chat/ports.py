"""The four ports. Each has an embedded adapter and (later) a distributed one in `adapters/`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from graphql_chat.domain import Application, Chat, Event, Message


@dataclass(frozen=True, slots=True)
class IndexedMessage:
    """A message as the search index holds it, after the store committed it."""

    chat_id: int
    number: int
    body: str
    revision: int


class TokenClash(Exception):
    """The generated token is already taken; draw another."""


class Store(Protocol):
    """Applications, chats, messages and their counts."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...

    async def insert_application(self, token: str, name: str) -> Application:
        """Raises `TokenClash` when the token is taken."""

    async def rename_application(self, token: str, name: str) -> Application | None: ...
    async def applications_by_token(self, tokens: Sequence[str]) -> dict[str, Application]: ...
    async def applications_by_id(self, ids: Sequence[int]) -> dict[int, Application]: ...
    async def list_applications(self, after_id: int | None, limit: int) -> list[Application]: ...

    async def chats_by_number(
        self, keys: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], Chat]: ...
    async def list_chats(
        self, application_ids: Sequence[int], after: int | None, limit: int
    ) -> dict[int, list[Chat]]: ...
    async def messages_by_number(
        self, keys: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], Message]: ...
    async def list_messages(
        self, chat_ids: Sequence[int], after: int | None, limit: int
    ) -> dict[int, list[Message]]: ...

    async def max_chat_number(self, application_id: int) -> int: ...
    async def max_message_number(self, application_id: int, chat_number: int) -> int: ...

    async def apply(self, events: Sequence[Event]) -> list[IndexedMessage]:
        """Apply a batch in one transaction: idempotent, order-insensitive, counts bumped.

        Returns every message the batch names, as stored after it, for the search index:
        replays included, so search catches up on a batch committed but never indexed.
        """


class Numbers(Protocol):
    """Hands out chat and message numbers, gapless unless a request fails after drawing one."""

    async def next_chat(self, application_id: int) -> int: ...

    async def next_message(self, application_id: int, chat_number: int) -> int:
        """Raises `NotFound` when the chat number was never handed out."""

    async def message_issued(self, application_id: int, chat_number: int, number: int) -> bool: ...

    async def draw_message(self, application_id: int, chat_number: int) -> tuple[int, int]:
        """`next_message` and `next_revision` together (one round trip where it matters)."""

    async def revise_message(self, application_id: int, chat_number: int, number: int) -> int:
        """A revision for updating an issued message; `NotFound` when it was never issued."""

    async def next_revision(self, application_id: int) -> int:
        """A number ordering the writes of one message: later calls return larger numbers."""


class Pipeline(Protocol):
    """Carries accepted writes to the store. `submit` returns once the write is durable."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def submit(self, event: Event) -> None: ...

    async def drained(self) -> bool:
        """True when every accepted write has reached the store (nothing queued or in flight)."""


class Search(Protocol):
    """Partial-text search within one chat: every term a case-insensitive substring."""

    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def index(self, messages: Sequence[IndexedMessage]) -> None: ...
    async def search(
        self, chat_ids: Sequence[int], terms: Sequence[str], before: int | None, limit: int
    ) -> dict[int, list[Message]]:
        """Per chat asked for (every one a key), up to `limit` matches newest first, numbered
        below `before` when given: one round trip for all the chats."""

    async def refresh(self) -> None:
        """Make everything indexed so far searchable now (tests, reindex)."""

    async def rebuild(self, progress: Callable[[int], None]) -> int: ...
