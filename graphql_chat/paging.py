"""Pages of a list as the use cases answer them: their items, the keys their cursors carry,
and whether more lie either way."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from graphql_chat.domain import CursorKind, Message, encode_cursor

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """Items in the list's order (ascending; newest first for a search), whichever way the
    page was asked for, with the key each one's cursor carries (cursors are made only when
    asked for: most pages need two)."""

    items: list[T]
    keys: list[int]
    has_next: bool
    has_previous: bool = False
    kind: CursorKind = "message"
    # What an interface made of the page, by what made it (a REST body): a page kept by the
    # page cache is made into each once.
    renderings: dict[object, bytes] = field(default_factory=dict, compare=False, repr=False)

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


def page_bytes(page: Page[Message]) -> int:
    """About what a page of messages kept in memory holds: its messages and a rendering."""
    return 200 + sum(400 + 2 * sys.getsizeof(message.body) for message in page.items)
