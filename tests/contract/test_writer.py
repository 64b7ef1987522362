"""The write side's rules, once, on the embedded adapters: both pipelines only drive them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.domain import ChatCreated, Event, MessageWritten, new_token
from graphql_chat.errors import InvalidInput, Stopped, Unavailable
from graphql_chat.ports import Applied, Changes, IndexedMessage, Search
from graphql_chat.writer import Writer
from tests.contract.conftest import indexer_of

pytestmark = pytest.mark.parametrize("store", ["sqlite"], indirect=True)


class _DownStore:
    """The real store, unavailable for its first `failures` batches."""

    def __init__(self, store: SqlStore, failures: int) -> None:
        self._store = store
        self.failures = failures
        self.tries = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def apply(self, events: Sequence[Event]) -> Applied:
        self.tries += 1
        if self.failures > 0:
            self.failures -= 1
            raise Unavailable("database down")
        return await self._store.apply(events)


class _DownSearch:
    def __init__(self, search: Search) -> None:
        self._search = search

    def __getattr__(self, name: str) -> object:
        return getattr(self._search, name)

    async def index(self, messages: Sequence[IndexedMessage]) -> None:
        raise Unavailable("search down")


async def test_a_write_the_store_cannot_keep_fails_alone(store: SqlStore, writer: Writer) -> None:
    app = (await store.insert_application(new_token(), "a")).id
    poison = MessageWritten(app, 1, 2, "lone \ud800 surrogate", 2)
    events: list[Event] = [
        ChatCreated(app, 1),
        MessageWritten(app, 1, 1, "fine", 1),
        poison,
        MessageWritten(app, 1, 3, "fine too", 3),
    ]
    committed = await writer.commit(events)
    assert [(m.number, m.body) for m in committed.stored] == [(1, "fine"), (3, "fine too")]
    assert [event for event, _ in committed.failed] == [poison]
    # What the commit changed survives the one-by-one path: subscribers hear of it.
    assert [m.number for m in committed.created] == [1, 3]
    assert [c.number for c in committed.chats] == [1]
    outcomes = committed.outcomes(events)
    assert outcomes[0] is None and outcomes[1] is None and outcomes[3] is None
    assert isinstance(outcomes[2], InvalidInput)
    chat = (await store.chats_by_number([(app, 1)]))[(app, 1)].id
    stored = await store.messages_by_number([(chat, 1), (chat, 2), (chat, 3)])
    assert sorted(stored) == [(chat, 1), (chat, 3)]


async def test_an_unavailable_store_fails_at_once_or_is_waited_for(
    store: SqlStore, search: Search
) -> None:
    app = (await store.insert_application(new_token(), "a")).id
    down = _DownStore(store, failures=2)
    writer = Writer(down, indexer_of(search))
    with pytest.raises(Unavailable):  # a client is waiting: no retry
        await writer.commit([ChatCreated(app, 1)])
    assert down.tries == 1
    committed = await writer.commit([ChatCreated(app, 1)], until=asyncio.Event())
    assert down.tries == 3 and committed.failed == []
    assert await store.max_chat_number(app) == 1

    stopping = asyncio.Event()
    down.failures = 1_000
    waiting = asyncio.create_task(writer.commit([ChatCreated(app, 2)], until=stopping))
    await asyncio.sleep(0.3)
    assert not waiting.done()  # retrying with backoff
    stopping.set()
    with pytest.raises(Stopped):
        await asyncio.wait_for(waiting, 5)
    assert await store.max_chat_number(app) == 1


async def test_search_down_parks_the_stored_messages(store: SqlStore, search: Search) -> None:
    app = (await store.insert_application(new_token(), "a")).id
    writer = Writer(store, _DownSearch(search))
    committed = await writer.commit([ChatCreated(app, 1), MessageWritten(app, 1, 1, "hi", 1)])
    parked: list[IndexedMessage] = []

    async def park(messages: Sequence[IndexedMessage]) -> None:
        parked.extend(messages)

    await writer.index(committed.stored, park=park)
    assert [(m.number, m.body) for m in parked] == [(1, "hi")]
    with pytest.raises(Unavailable):  # nowhere to park: the caller learns it
        await writer.index(committed.stored)
    await writer.index([], park=None)  # nothing to index: search is not asked


class _ReadingFeed:
    """A feed that, when told, reads the store: what it was told must be there already."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store
        self.told: list[Changes] = []
        self.readable: list[bool] = []

    async def publish(self, changes: Changes) -> None:
        self.told.append(changes)
        for message in changes.created:
            found = await self.store.list_messages([message.chat_id], message.number - 1, 1)
            self.readable.append([m.number for m in found[message.chat_id]] == [message.number])


async def test_what_a_commit_changed_is_told_after_the_commit_and_a_replay_as_such(
    store: SqlStore, search: Search
) -> None:
    feed = _ReadingFeed(store)
    writer = Writer(store, indexer_of(search), feed)  # type: ignore[arg-type]
    app = (await store.insert_application(new_token(), "a")).id
    batch: list[Event] = [
        ChatCreated(app, 1),
        MessageWritten(app, 1, 1, "one", 1, created=True),
        MessageWritten(app, 1, 2, "two", 2, created=True),
    ]
    await writer.commit(batch)
    await writer.commit([MessageWritten(app, 1, 1, "one, edited", 3)])
    await writer.commit(batch)  # a redelivered batch: nothing changes
    first, edit, again = feed.told
    assert [(c.application_id, c.number) for c in first.chats] == [(app, 1)]
    assert [(m.number, m.body) for m in first.created] == [(1, "one"), (2, "two")]
    assert feed.readable == [True, True]
    assert [(m.number, m.body, m.revision) for m in edit.updated] == [(1, "one, edited", 3)]
    assert not edit.created and not edit.replayed
    assert not again.created and not again.updated and not again.chats
    assert [(m.number, m.body) for m in again.replayed] == [(1, "one, edited"), (2, "two")]
