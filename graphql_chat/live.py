"""Live updates: what commits tell the feed, put in order and handed to each subscriber.

One `Hub` per API process listens to the feed once. For every chat (and every application's
chat list) that has subscribers here it keeps a `_Sequence`, which turns the feed's changes
into one ordered stream:

- CREATED in number order. Commits of different workers arrive in any order, so a number
  above the next one expected waits; when the gap stays open for `gap_wait`, the store is
  read for what is missing (a publication lost with the process that committed it). A number
  still missing then is skipped: its request failed after drawing it, or its write is
  delayed. Should it arrive after all, it is sent then, late and out of order, rather than
  never.
- UPDATED in revision order: a revision at or below the last one sent is dropped.
- The first event of a message is always its CREATED, carrying the body as it stands then.

A subscriber that gives `after` is first sent what the store holds above it, up to where the
sequence stood when it joined; the sequence's own stream goes on from there, so a page load
followed by a subscription has no hole and no duplicate. Each subscriber has a bounded queue:
one that does not keep up is told `SlowConsumer` and can resume with `after`.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, Protocol, TypeVar

from graphql_chat.domain import Chat
from graphql_chat.errors import ChatError, SlowConsumer
from graphql_chat.ports import Changes, ChatRecords, IndexedMessage, Seeds, StoredChat

log = logging.getLogger(__name__)

_PAGE = 100  # rows per store read, for replays and catch-ups
_WINDOW = 64  # numbers below the top checked for holes when a sequence starts
_SKIPPED = 256  # skipped numbers remembered per sequence (late arrivals still sent)
_REVISIONS = 256  # revisions of recent messages remembered per chat (older duplicates dropped)


class EventKind(Enum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"


class _Item(Protocol):
    @property
    def number(self) -> int: ...


T = TypeVar("T", bound=_Item)


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)
class LiveEvent(Generic[T]):
    """What a subscriber is sent. One object goes to every subscriber of a sequence
    (`shared`), so an interface can render it once for all of them (by its identity)."""

    kind: EventKind
    item: T
    shared: bool


class _Subscriber(Generic[T]):
    """One subscription's queue of events the sequence emitted for it."""

    def __init__(self, size: int, overflow: Callable[[], None]) -> None:
        self._queue: deque[LiveEvent[T]] = deque()
        self._size = size
        self._ready = asyncio.Event()
        self._overflow = overflow
        self.slow = False

    def put(self, event: LiveEvent[T]) -> None:
        if self.slow:
            return
        if len(self._queue) >= self._size:
            self.slow = True
            self._queue.clear()
            self._ready.set()
            self._overflow()
            return
        self._queue.append(event)
        self._ready.set()

    def forget(self, upto: int) -> None:
        """Drop what was queued for numbers up to `upto`: the replay reads them as they are."""
        self._queue = deque(event for event in self._queue if event.item.number > upto)

    async def get(self) -> LiveEvent[T]:
        while not self._queue:
            if self.slow:
                raise SlowConsumer(
                    f"more than {self._size} events were waiting to be sent: resubscribe with "
                    "afterNumber set to the last number received"
                )
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()


@dataclass(frozen=True, slots=True)
class _Source(Generic[T]):
    """Where a sequence reads what the feed did not bring: the highest number stored, and
    up to `limit` items numbered above `after`, in number order."""

    top: Callable[[], Awaitable[int]]
    read: Callable[[int, int], Awaitable[list[T]]]
    revision: Callable[[T], int]


class _Sequence(Generic[T]):
    def __init__(self, source: _Source[T], gap_wait: float) -> None:
        self.source = source
        self._gap_wait = gap_wait
        self.upto = 0  # every number up to here was emitted or skipped
        self._anchored = False
        self._early: list[tuple[str, T]] = []  # what arrived while anchoring
        self._pending: dict[int, T] = {}
        self.skipped: OrderedDict[int, None] = OrderedDict()
        self._revisions: OrderedDict[int, int] = OrderedDict()
        self._filling: asyncio.Task[None] | None = None
        self._gap_at = -1  # the `upto` whose next number is waited for, since `_gap_since`
        self._gap_since = 0.0
        self.subscribers: set[_Subscriber[T]] = set()
        self.ready: asyncio.Task[None] | None = None

    async def anchor(self) -> None:
        """Start from what the store holds: everything up to its top is the replay's, and
        holes just below the top are numbers whose writes may still arrive."""
        top = await self.source.top()
        low = max(top - _WINDOW, 0)
        present = {item.number for item in await self.source.read(low, _WINDOW)}
        for number in range(low + 1, top + 1):
            if number not in present:
                self._skip(number)
        self.upto = top
        self._anchored = True
        early, self._early = self._early, []
        for what, item in early:
            self.take(what, item)

    def take(self, what: str, item: T) -> None:
        """`what`: "created", "updated" or "replayed" (a commit told again)."""
        if not self._anchored:
            self._early.append((what, item))
            return
        number = item.number
        if number > self.upto:
            held = self._pending.get(number)
            if held is None or self.source.revision(item) > self.source.revision(held):
                self._pending[number] = item
            self._advance()
        elif number in self.skipped:
            del self.skipped[number]
            self._emit(EventKind.CREATED, item)
        elif what != "created":
            known = self._revisions.get(number)
            if known is None and what == "replayed":
                return  # nothing says it is news
            if known is None or self.source.revision(item) > known:
                self._emit(EventKind.UPDATED, item)

    def _skip(self, number: int) -> None:
        self.skipped[number] = None
        if len(self.skipped) > _SKIPPED:
            self.skipped.popitem(last=False)

    def _emit(self, kind: EventKind, item: T) -> None:
        self._revisions[item.number] = self.source.revision(item)
        self._revisions.move_to_end(item.number)
        if len(self._revisions) > _REVISIONS:
            self._revisions.popitem(last=False)
        event = LiveEvent(kind, item, shared=True)
        for subscriber in list(self.subscribers):
            subscriber.put(event)

    def _advance(self) -> None:
        while (item := self._pending.pop(self.upto + 1, None)) is not None:
            self.upto += 1
            self._emit(EventKind.CREATED, item)
        self._watch_gap()

    def _watch_gap(self) -> None:
        """Something waits above `upto`: note when this gap opened (each gap is held open for
        the whole `gap_wait` from then, however long earlier ones took), and watch it."""
        if not self._pending:
            self._gap_at = -1
            return
        if self._gap_at != self.upto:
            self._gap_at, self._gap_since = self.upto, asyncio.get_running_loop().time()
        if self._filling is None:
            self._filling = asyncio.create_task(self._fill())

    async def _fill(self) -> None:
        """A gap stayed open: read it from the store, then skip what is still missing."""
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                left = self._gap_since + self._gap_wait - loop.time()
                if left > 0:
                    await asyncio.sleep(left)
                    continue
                low, high = self.upto, min(self._pending)
                try:
                    found = await self.source.read(low, high - low - 1)
                except ChatError as error:
                    log.warning("live: could not read a gap from the store: %s", error)
                    self._gap_since = loop.time()  # try again after another wait
                    continue
                if self.upto != low:
                    continue  # the gap closed while the store was read
                for item in found:
                    if item.number > self.upto and item.number not in self._pending:
                        self._pending[item.number] = item
                if not self._pending:
                    break
                top = min(self._pending)
                for number in range(self.upto + 1, top):
                    if number not in self._pending:
                        self._skip(number)
                self.upto = top - 1
                while (next_item := self._pending.pop(self.upto + 1, None)) is not None:
                    self.upto += 1
                    self._emit(EventKind.CREATED, next_item)
                self._watch_gap()
        finally:
            self._filling = None

    async def catch_up(self) -> None:
        """The feed may have dropped changes: read what the store holds above `upto`."""
        if not self._anchored:
            return
        while True:
            try:
                found = await self.source.read(self.upto, _PAGE)
            except ChatError as error:
                log.warning("live: could not catch up from the store: %s", error)
                return
            for item in found:
                self.take("replayed", item)
            if len(found) < _PAGE:
                return

    def stop(self) -> None:
        if self._filling is not None:
            self._filling.cancel()
        if self.ready is not None:
            self.ready.cancel()


K = TypeVar("K")


class _Sequences(Generic[K, T]):
    """The sequences of one kind, by key, each alive while it has subscribers."""

    def __init__(self, gap_wait: float, size: int) -> None:
        self._gap_wait = gap_wait
        self._size = size
        self.by_key: dict[K, _Sequence[T]] = {}

    async def stream(
        self,
        key: K,
        source: Callable[[], _Source[T]],
        after: int | None,
        overflow: Callable[[], None],
    ) -> AsyncGenerator[LiveEvent[T], None]:
        sequence = self.by_key.get(key)
        if sequence is None:
            sequence = self.by_key[key] = _Sequence(source(), self._gap_wait)
            sequence.ready = asyncio.ensure_future(sequence.anchor())
        subscriber: _Subscriber[T] = _Subscriber(self._size, overflow)
        sequence.subscribers.add(subscriber)
        try:
            assert sequence.ready is not None
            try:
                await asyncio.shield(sequence.ready)
            except ChatError:
                if self.by_key.get(key) is sequence:
                    del self.by_key[key]
                raise
            joined, skipped = sequence.upto, set(sequence.skipped)
            if after is not None:  # events emitted while the sequence started
                subscriber.forget(joined)
            replayed: set[int] = set()
            cursor = joined if after is None else after
            while cursor < joined:  # the replay: what the store holds up to `joined`
                page = [
                    item
                    for item in await sequence.source.read(cursor, min(_PAGE, joined - cursor))
                    if item.number <= joined
                ]
                for item in page:
                    if item.number in skipped:
                        replayed.add(item.number)
                    yield LiveEvent(EventKind.CREATED, item, shared=False)
                if not page:
                    break
                cursor = page[-1].number
            while True:
                event = await subscriber.get()
                number = event.item.number
                if event.kind is EventKind.CREATED and (
                    (after is not None and number <= after) or number in replayed
                ):
                    continue
                yield event
        finally:
            sequence.subscribers.discard(subscriber)
            if not sequence.subscribers and self.by_key.get(key) is sequence:
                del self.by_key[key]
                sequence.stop()

    def take(self, key: K, what: str, item: T) -> None:
        sequence = self.by_key.get(key)
        if sequence is not None:
            sequence.take(what, item)


def _message_revision(message: IndexedMessage) -> int:
    return message.revision


class _Records(ChatRecords, Seeds, Protocol):
    """What the hub reads from the store: pages of a chat, and how far it goes."""


class Hub:
    """The feed's listener in an API process, and where subscriptions start."""

    def __init__(self, store: _Records, gap_wait: float = 0.5, queue_size: int = 1000) -> None:
        self._store = store
        self.messages: _Sequences[int, IndexedMessage] = _Sequences(gap_wait, queue_size)
        self.chats: _Sequences[int, StoredChat] = _Sequences(gap_wait, queue_size)
        self._catching_up: set[asyncio.Task[None]] = set()

    def _message_source(self, chat: Chat) -> _Source[IndexedMessage]:
        store, chat_id = self._store, chat.id

        async def top() -> int:
            return await store.max_message_number(chat.application_id, chat.number)

        async def read(after: int, limit: int) -> list[IndexedMessage]:
            if limit <= 0:
                return []
            found = (await store.list_messages([chat_id], after, limit))[chat_id]
            # A read has no revision: 0 lets any update told later through.
            return [
                IndexedMessage(chat_id, m.number, m.body, 0, m.created_at, m.updated_at, m.author)
                for m in found
            ]

        return _Source(top, read, _message_revision)

    def _chat_source(self, application_id: int) -> _Source[StoredChat]:
        store = self._store

        async def top() -> int:
            return await store.max_chat_number(application_id)

        async def read(after: int, limit: int) -> list[StoredChat]:
            if limit <= 0:
                return []
            found = (await store.list_chats([application_id], after, limit))[application_id]
            return [StoredChat(c.application_id, c.number, c.id, c.created_at) for c in found]

        return _Source(top, read, lambda _: 0)

    # -- the feed's listener -------------------------------------------------------------------

    def changes(self, changes: Changes) -> None:
        for what, messages in (
            ("created", changes.created),
            ("updated", changes.updated),
            ("replayed", changes.replayed),
        ):
            for message in messages:
                self.messages.take(message.chat_id, what, message)
        for chat in changes.chats:
            self.chats.take(chat.application_id, "created", chat)

    def lost(self) -> None:
        sequences: Iterable[_Sequence[IndexedMessage] | _Sequence[StoredChat]] = [
            *self.messages.by_key.values(),
            *self.chats.by_key.values(),
        ]
        for sequence in sequences:
            task = asyncio.ensure_future(sequence.catch_up())
            self._catching_up.add(task)
            task.add_done_callback(self._catching_up.discard)

    # -- subscriptions -------------------------------------------------------------------------

    def message_events(
        self, chat: Chat, after: int | None, overflow: Callable[[], None]
    ) -> AsyncGenerator[LiveEvent[IndexedMessage], None]:
        """The chat's messages from `after` on (see the module's docstring)."""
        return self.messages.stream(chat.id, lambda: self._message_source(chat), after, overflow)

    def chat_events(
        self, application_id: int, overflow: Callable[[], None]
    ) -> AsyncGenerator[LiveEvent[StoredChat], None]:
        """The application's chats as they are stored."""
        return self.chats.stream(
            application_id, lambda: self._chat_source(application_id), None, overflow
        )

    @property
    def subscribers(self) -> int:
        return sum(len(s.subscribers) for s in self.messages.by_key.values()) + sum(
            len(s.subscribers) for s in self.chats.by_key.values()
        )
