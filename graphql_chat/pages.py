"""Pages of messages kept in memory until their chat is written to (the embedded mode).

`CachedPages` is the page cache as a decorator over the page reads (`paging.MessagePages`):
the use cases read pages through it as they would through the store's, and cannot tell them
apart but by what a page costs. It holds a `PageCache`, which the writer tells of its
commits as one of its observers.

Every write to the embedded database is committed by this process's writer (the premise the
in-process numbers already rest on), and the writer brackets each commit with `writing` and
`written`, naming the chats it touches. A page is kept only if it was read while no write to its
chat was in flight and none began or ended before it was kept; the next write to its chat drops
it as it begins. So a page answered from here is the page the store would answer at that
moment: reading it from memory changes what it costs, never what it says.

Pages are found by chat id; writes name a chat by application and number. A read names both
(`ChatRef`), and the cache learns from it which chat an id is (`learn`); a chat not known when
its page is read is read from the store and not kept. Memory is bounded by `max_bytes`
(pages' estimated sizes, the least recently used dropped first) and the known chats by
`max_chats`.
"""

from __future__ import annotations

import itertools
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from graphql_chat import metrics
from graphql_chat.domain import ChatRef, Message
from graphql_chat.paging import MessagePages, Page, PageRequest

V = TypeVar("V")
ChatKey = tuple[int, int]  # (application id, chat number)

_HITS, _MISSES = metrics.PAGE_CACHE.labels("hit"), metrics.PAGE_CACHE.labels("miss")
_BYTES = metrics.PAGE_CACHE_BYTES


@dataclass(slots=True, eq=False)
class _Chat:
    id: int
    key: ChatKey
    stamp: int  # changed by every write to the chat that begins or ends
    pages: dict[Hashable, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reading:
    """What `reading` saw of a chat before its page was read from the store."""

    chat: _Chat
    stamp: int


class PageCache(Generic[V]):
    def __init__(self, max_bytes: int, size: Callable[[V], int], max_chats: int = 100_000) -> None:
        self.max_bytes = max_bytes
        self.max_chats = max_chats
        self._size = size
        self._chats: dict[int, _Chat] = {}
        self._by_key: dict[ChatKey, _Chat] = {}
        self._writing: Counter[ChatKey] = Counter()  # writes in flight, by chat
        self._kept: OrderedDict[tuple[int, Hashable], int] = OrderedDict()  # size, oldest first
        self._clock = itertools.count(1)
        self._bytes = 0

    @property
    def bytes(self) -> int:
        """About what the pages kept hold (as `size` tells)."""
        return self._bytes

    def _held(self, change: int) -> None:
        self._bytes += change
        _BYTES.set(self._bytes)

    def learn(self, chat_id: int, key: ChatKey) -> None:
        """Chat `chat_id` is `key` (ids never change)."""
        if chat_id in self._chats:
            return
        if len(self._chats) >= self.max_chats:
            self._forget_idle()
        chat = _Chat(chat_id, key, next(self._clock))
        self._chats[chat_id] = chat
        self._by_key[key] = chat

    def get(self, chat_id: int, page: Hashable) -> V | None:
        chat = self._chats.get(chat_id)
        kept = chat.pages.get(page) if chat is not None else None
        if kept is None:
            _MISSES.inc()
            return None
        _HITS.inc()
        self._kept.move_to_end((chat_id, page))
        return kept  # type: ignore[return-value]

    def reading(self, chat_id: int) -> Reading | None:
        """Call before reading the chat's page from the store; `None`: it will not be kept."""
        chat = self._chats.get(chat_id)
        if chat is None or chat.key in self._writing:
            return None
        return Reading(chat, chat.stamp)

    def keep(self, reading: Reading | None, page: Hashable, value: V) -> None:
        """Keep `value`, read from the store since `reading`, if no write to its chat began
        or ended since then (and the chat is still known)."""
        if reading is None:
            return
        chat = reading.chat
        if chat.stamp != reading.stamp or self._chats.get(chat.id) is not chat:
            return
        size = self._size(value)
        if size > self.max_bytes:
            return
        slot = (chat.id, page)
        self._held(size - self._kept.pop(slot, 0))
        self._kept[slot] = size
        chat.pages[page] = value
        while self._bytes > self.max_bytes:
            (chat_id, oldest), dropped = self._kept.popitem(last=False)
            self._held(-dropped)
            self._chats[chat_id].pages.pop(oldest, None)

    def writing(self, keys: Iterable[ChatKey]) -> None:
        """Writes to these chats begin: their pages are dropped, and none is kept until the
        writes have ended (`written`)."""
        for key in keys:
            self._writing[key] += 1
            self._touch(key)

    def written(self, keys: Iterable[ChatKey]) -> None:
        """The writes `writing` announced have ended, committed or not."""
        for key in keys:
            self._writing[key] -= 1
            if self._writing[key] <= 0:
                del self._writing[key]
            self._touch(key)

    def _touch(self, key: ChatKey) -> None:
        chat = self._by_key.get(key)
        if chat is None:
            return
        chat.stamp = next(self._clock)
        self._drop(chat)

    def _drop(self, chat: _Chat) -> None:
        if chat.pages:
            self._held(-sum(self._kept.pop((chat.id, page)) for page in chat.pages))
            chat.pages.clear()

    def _forget_idle(self) -> None:
        """Make room among the known chats: those holding no page go (a reading of one of
        them is then not kept); if every one holds pages, all go."""
        idle = [chat for chat in self._chats.values() if not chat.pages]
        if len(idle) < len(self._chats) // 2:
            idle = list(self._chats.values())
        for chat in idle:
            self._drop(chat)
            del self._chats[chat.id]
            del self._by_key[chat.key]


class CachedPages:
    """Page reads answered from `cache` when it holds the page, read through `read` (and
    kept, when no write to the chat overtook the read) when it does not."""

    def __init__(self, read: MessagePages, cache: PageCache[Page[Message]]) -> None:
        self._read = read
        self.cache = cache

    async def __call__(
        self, chats: Sequence[ChatRef], request: PageRequest
    ) -> dict[int, Page[Message]]:
        cache = self.cache
        which = (request.size, request.key, request.backward)
        pages: dict[int, Page[Message]] = {}
        readings: dict[int, Reading | None] = {}
        unread: list[ChatRef] = []
        for chat in chats:
            if chat.id in pages or chat.id in readings:
                continue
            cache.learn(chat.id, (chat.application_id, chat.number))
            kept = cache.get(chat.id, which)
            if kept is not None:
                pages[chat.id] = kept
            else:
                readings[chat.id] = cache.reading(chat.id)
                unread.append(chat)
        if unread:
            for chat_id, page in (await self._read(unread, request)).items():
                pages[chat_id] = page
                cache.keep(readings[chat_id], which, page)
        return pages
