"""The numbers contract: unique, gapless, seeded from the store, chats checked."""

from __future__ import annotations

import asyncio

import pytest

from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.domain import ChatCreated, MessageWritten, new_token
from graphql_chat.errors import NotFound
from graphql_chat.ports import Numbers


async def test_concurrent_allocations_are_unique_and_gapless(
    store: SqlStore, numbers: Numbers
) -> None:
    app = (await store.insert_application(new_token(), "a")).id
    chats = await asyncio.gather(*[numbers.next_chat(app) for _ in range(200)])
    assert sorted(chats) == list(range(1, 201))
    drawn = await asyncio.gather(*[numbers.next_message(app, 1 + i % 3) for i in range(300)])
    per_chat = {c: sorted(drawn[i] for i in range(300) if 1 + i % 3 == c) for c in (1, 2, 3)}
    assert per_chat == {c: list(range(1, 101)) for c in (1, 2, 3)}


async def test_unknown_chat_is_refused(store: SqlStore, numbers: Numbers) -> None:
    app = (await store.insert_application(new_token(), "a")).id
    with pytest.raises(NotFound):
        await numbers.next_message(app, 1)
    await numbers.next_chat(app)
    assert await numbers.next_message(app, 1) == 1
    assert await numbers.message_issued(app, 1, 1)
    assert not await numbers.message_issued(app, 1, 2)
    assert not await numbers.message_issued(app, 2, 1)


async def test_seeded_from_the_store(store: SqlStore, numbers: Numbers) -> None:
    app = (await store.insert_application(new_token(), "a")).id
    await store.apply(
        [ChatCreated(app, 1), ChatCreated(app, 2)]
        + [MessageWritten(app, 2, n, "x", n) for n in range(1, 6)]
    )
    assert await numbers.next_chat(app) == 3
    assert await numbers.next_message(app, 2) == 6
    assert await numbers.next_message(app, 1) == 1


async def test_revisions_increase(numbers: Numbers) -> None:
    revisions = [await numbers.next_revision() for _ in range(1000)]
    assert revisions == sorted(set(revisions))
