"""The write side's rules, whatever carries the writes: the embedded pipeline and the RabbitMQ
consumer both drive this, and neither knows the other.

- `commit(events)`: one store transaction for the batch. If it fails for any reason but the
  store being unavailable, each event is applied alone, so that a write the store cannot take
  fails by itself and never takes its neighbours with it. While the store is unavailable:
  without `until`, the error is raised at once (a client is waiting: it gets a 503); with
  `until`, the batch is tried again with backoff until the store answers or `until` is set
  (then `Stopped`: the driver hands the batch back).
- Its `observers` (the embedded mode's page cache) hear which chats a commit writes to as it
  begins and once it has ended, so that nothing they keep of a chat outlives a write to it.
- After the commit, what it changed is published to subscribers (the `Feed`), before the
  driver acknowledges anything: a subscriber hears of a write only once a read can return it.
- `index(messages)`: search after the commit. While search is unavailable the messages go to
  `park`, the driver's holding place, to be indexed when it answers again.

What a commit did comes back as `Committed`: the messages as stored (what search indexes and
what subscribers will be told), the events the store set aside (numbering conflicts), and the
events that failed alone, each with the error its client gets or the reason it is dead-lettered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Sequence
from typing import Protocol

from graphql_chat import metrics, retry
from graphql_chat.domain import Event, micros, now_micros
from graphql_chat.errors import ChatError, InvalidInput, Stopped, Unavailable, Unstorable
from graphql_chat.ports import (
    Applied,
    Batches,
    Changes,
    Committed,
    Feed,
    Index,
    IndexedMessage,
    Park,
    StoredChat,
)

log = logging.getLogger(__name__)

ChatKey = tuple[int, int]  # (application id, chat number): how a write names its chat


class WriteObserver(Protocol):
    """Told of every commit: the chats it writes to, as it begins and once it has ended,
    committed or not."""

    def writing(self, chats: Collection[ChatKey]) -> None: ...
    def written(self, chats: Collection[ChatKey]) -> None: ...


FIRST_RETRY = 0.1  # seconds before a batch is tried again while the store is unavailable
LAST_RETRY = 5.0  # the longest wait between two tries


def _logged(committed: Committed) -> Committed:
    """Every refusal is loud: a number handed out twice or a draw of a retired epoch."""
    for event, reason in committed.set_aside:
        log.error("NUMBERING CONFLICT: set aside %r: %s", event, reason)
    return committed


def _changes(committed: Committed) -> Changes:
    """What subscribers are told: what the commit itself did, and the rest of what it names
    as `replayed` (a redelivered batch whose first telling may have been lost)."""
    told = {(m.chat_id, m.number) for m in (*committed.created, *committed.updated)}
    return Changes(
        created=committed.created,
        updated=committed.updated,
        replayed=[m for m in committed.stored if (m.chat_id, m.number) not in told],
        chats=committed.chats,
    )


def _observe_commit(events: Sequence[Event], seconds: float) -> None:
    metrics.BATCH_EVENTS.observe(len(events))
    metrics.COMMIT_SECONDS.observe(seconds)
    stored = metrics.LAG_SECONDS.labels("stored")
    now = now_micros()
    for event in events:
        if event.at:  # a wire message without `t` carries no time
            stored.observe(max(now - event.at, 0) / 1e6)


class Writer:
    def __init__(
        self,
        store: Batches,
        indexer: Index | None,
        feed: Feed | None = None,
    ) -> None:
        self.store = store
        self.indexer = indexer  # None: the store's commit makes messages searchable
        self.feed = feed
        self.observers: list[WriteObserver] = []

    async def commit(
        self, events: Sequence[Event], until: asyncio.Event | None = None
    ) -> Committed:
        """Idempotent: committing the same events again, in any order, changes nothing more.
        Once committed, the changes are published to subscribers."""
        started = time.perf_counter()
        observers = self.observers
        if not observers:
            committed = await self._commit(events, until)
        else:
            chats = {(event.application_id, event.chat_number) for event in events}
            for observer in observers:
                observer.writing(chats)
            try:
                committed = await self._commit(events, until)
            finally:
                for observer in observers:
                    observer.written(chats)
        _observe_commit(events, time.perf_counter() - started)
        if self.feed is not None:
            await self.feed.publish(_changes(committed))
        return committed

    async def _commit(self, events: Sequence[Event], until: asyncio.Event | None) -> Committed:
        try:
            applied = await self._apply(events, until)
        except (Unavailable, Stopped):
            raise
        except Exception:
            log.exception("batch of %d events failed; applying them one by one", len(events))
            return await self._one_by_one(events, until)
        return _logged(
            Committed(
                applied.indexed,
                applied.set_aside,
                [],
                created=applied.created,
                updated=applied.updated,
                chats=applied.chats,
            )
        )

    async def _one_by_one(self, events: Sequence[Event], until: asyncio.Event | None) -> Committed:
        stored: list[IndexedMessage] = []
        set_aside: list[tuple[Event, str]] = []
        failed: list[tuple[Event, ChatError]] = []
        created: list[IndexedMessage] = []
        updated: list[IndexedMessage] = []
        chats: list[StoredChat] = []
        for event in events:
            try:
                applied = await self._apply([event], until)
            except Stopped:
                raise
            except (Unstorable, UnicodeError, ValueError):
                # What this write holds cannot be stored (the edge checks should have said so).
                log.exception("the store refused %r", event)
                failed.append((event, InvalidInput(Unstorable().message)))
            except ChatError as error:
                failed.append((event, error))
            except Exception:
                log.exception("the write %r could not be committed", event)
                failed.append((event, Unavailable("the write could not be committed; retry")))
            else:
                stored += applied.indexed
                set_aside += applied.set_aside
                created += applied.created
                updated += applied.updated
                chats += applied.chats
        return _logged(Committed(stored, set_aside, failed, created, updated, chats))

    async def _apply(self, events: Sequence[Event], until: asyncio.Event | None) -> Applied:
        if until is None:
            return await self.store.apply(events)
        waiting = retry.logged(log, f"store unavailable for {len(events)} events")
        try:
            async for attempt in retry.retrying(
                Unavailable, FIRST_RETRY, LAST_RETRY, until=until, waiting=waiting
            ):
                with attempt:
                    return await self.store.apply(events)
        except Unavailable as error:
            raise Stopped from error
        raise AssertionError("unreachable: tenacity returns or raises")

    async def index(self, messages: Sequence[IndexedMessage], park: Park | None = None) -> None:
        if not messages:
            return
        started = time.perf_counter()
        try:
            if self.indexer is not None:
                await self.indexer.index(messages)
        except Unavailable:
            if park is None:
                raise
            await park(messages)
            log.warning("search unavailable: %d messages parked for indexing", len(messages))
            return
        metrics.INDEX_SECONDS.observe(time.perf_counter() - started)
        searchable = metrics.LAG_SECONDS.labels("searchable")
        now = now_micros()
        for message in messages:
            searchable.observe(max(now - micros(message.updated_at), 0) / 1e6)
