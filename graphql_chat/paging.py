"""Pages of a list as the use cases answer them: their items, the keys their cursors carry,
and whether more lie either way; and `MessagePages`, the page reads of messages (the store's,
`StoredPages`, or the embedded mode's page cache over them, `pages.CachedPages`)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from graphql_chat.domain import ChatRef, CursorKind, Message, encode_cursor
from graphql_chat.ports import ChatRecords

T = TypeVar("T")


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Page(Generic[T]):
    """Items in the list's order (ascending; newest first for a search), whichever way the
    page was asked for, with the key each one's cursor carries (cursors are made only when
    asked for: most pages need two)."""

    items: list[T]
    keys: list[int]
    has_next: bool
    has_previous: bool = False
    kind: CursorKind = "message"

    @property
    def cursors(self) -> list[str]:
        return [encode_cursor(self.kind, key) for key in self.keys]

    @property
    def start_cursor(self) -> str | None:
        return encode_cursor(self.kind, self.keys[0]) if self.keys else None

    @property
    def end_cursor(self) -> str | None:
        return encode_cursor(self.kind, self.keys[-1]) if self.keys else None


@dataclass(frozen=True, slots=True)
class PageRequest:
    """A validated page: its size, and the key its cursor carried (the page starts past it).
    `backward`: the page ends before the key instead (the newest page when there is none)."""

    size: int
    key: int | None
    backward: bool = False


def make_page(
    kind: CursorKind, rows: list[T], request: PageRequest, key: Callable[[T], int]
) -> Page[T]:
    """A page from the rows a store gave for `request` (one more than asked, to know whether
    more follow; in the reverse of the list's order when backward). Cursors are made from
    rows, which are never deleted, so a page that starts past a cursor has rows on the
    cursor's side."""
    more = len(rows) > request.size
    items = rows[: request.size]
    if request.backward:
        items.reverse()
        has_next, has_previous = request.key is not None, more
    else:
        has_next, has_previous = more, request.key is not None
    return Page(items, [key(item) for item in items], has_next, has_previous, kind)


def number(message: Message) -> int:
    return message.number


class MessagePages(Protocol):
    """The same page of messages in each of several chats, one read for all; by chat id."""

    async def __call__(
        self, chats: Sequence[ChatRef], request: PageRequest
    ) -> dict[int, Page[Message]]: ...


class StoredPages:
    """Pages of messages as the store holds them."""

    def __init__(self, store: ChatRecords) -> None:
        self._store = store

    async def __call__(
        self, chats: Sequence[ChatRef], request: PageRequest
    ) -> dict[int, Page[Message]]:
        found = await self._store.list_messages(
            list(dict.fromkeys(chat.id for chat in chats)),
            request.key,
            request.size + 1,
            request.backward,
        )
        return {
            chat_id: make_page("message", rows, request, number) for chat_id, rows in found.items()
        }


def page_bytes(page: Page[Message]) -> int:
    """About what a page of messages kept in memory holds: its messages and a rendering."""
    return 200 + sum(400 + 2 * sys.getsizeof(message.body) for message in page.items)
