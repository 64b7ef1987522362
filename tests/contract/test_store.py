"""The store contract: one transaction per batch, idempotent, order-insensitive, exact counts."""

from __future__ import annotations

import random

import pytest

from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.domain import ChatCreated, Event, MessageWritten, new_token
from graphql_chat.ports import TokenClash


async def _app(store: SqlStore) -> int:
    return (await store.insert_application(new_token(), "app")).id


async def test_token_is_unique(store: SqlStore) -> None:
    token = new_token()
    await store.insert_application(token, "first")
    with pytest.raises(TokenClash):
        await store.insert_application(token, "second")
    assert [a.name for a in await store.list_applications(None, 10)] == ["first"]


async def test_apply_creates_rows_and_counts(store: SqlStore) -> None:
    app = await _app(store)
    changed = await store.apply(
        [
            ChatCreated(app, 1),
            ChatCreated(app, 2),
            MessageWritten(app, 1, 1, "one", 10),
            MessageWritten(app, 1, 2, "two", 11),
        ]
    )
    assert [(m.number, m.body) for m in changed] == [(1, "one"), (2, "two")]
    assert (await store.applications_by_id([app]))[app].chats_count == 2
    chats = await store.chats_by_number([(app, 1), (app, 2)])
    assert chats[(app, 1)].messages_count == 2
    assert chats[(app, 2)].messages_count == 0


async def test_apply_is_idempotent(store: SqlStore) -> None:
    app = await _app(store)
    batch: list[Event] = [ChatCreated(app, 1), MessageWritten(app, 1, 1, "hello", 5)]
    first = await store.apply(batch)
    # A replay changes nothing and reports the messages as they stand (for the index).
    assert await store.apply(batch) == first
    assert await store.apply(list(reversed(batch))) == first
    stale = await store.apply([MessageWritten(app, 1, 1, "older", 4)])
    assert [(m.body, m.revision) for m in stale] == [("hello", 5)]
    chat = (await store.chats_by_number([(app, 1)]))[(app, 1)]
    assert chat.messages_count == 1
    assert (await store.applications_by_id([app]))[app].chats_count == 1


async def test_events_in_any_order_converge(store: SqlStore) -> None:
    app = await _app(store)
    events: list[Event] = [ChatCreated(app, 1)]
    for number in range(1, 21):
        events += [MessageWritten(app, 1, number, f"v{rev}", rev) for rev in range(1, 4)]
    random.Random(7).shuffle(events)
    # Split into batches arriving in a scrambled order, as from several workers.
    for start in range(0, len(events), 7):
        await store.apply(events[start : start + 7])
    chat = (await store.chats_by_number([(app, 1)]))[(app, 1)]
    assert chat.messages_count == 20
    stored = (await store.list_messages([chat.id], None, 100))[chat.id]
    assert [m.number for m in stored] == list(range(1, 21))
    assert {m.body for m in stored} == {"v3"}


async def test_message_before_its_chat(store: SqlStore) -> None:
    app = await _app(store)
    await store.apply([MessageWritten(app, 3, 1, "early", 1)])
    await store.apply([ChatCreated(app, 3)])
    chat = (await store.chats_by_number([(app, 3)]))[(app, 3)]
    assert chat.messages_count == 1
    assert (await store.applications_by_id([app]))[app].chats_count == 1


async def test_pages_of_many_parents_in_one_call(store: SqlStore) -> None:
    apps = [await _app(store) for _ in range(3)]
    await store.apply([ChatCreated(a, n) for a in apps for n in range(1, 6)])
    pages = await store.list_chats(apps, after=2, limit=2)
    assert {a: [c.number for c in pages[a]] for a in apps} == {a: [3, 4] for a in apps}
    assert await store.max_chat_number(apps[0]) == 5
    assert await store.max_chat_number(10_000) == 0


async def test_rename_application(store: SqlStore) -> None:
    token = new_token()
    await store.insert_application(token, "old")
    renamed = await store.rename_application(token, "new")
    assert renamed is not None and renamed.name == "new"
    assert await store.rename_application(new_token(), "x") is None
