"""The numbers contract: unique, gapless, seeded from the store, chats checked."""

from __future__ import annotations

import asyncio

import pytest

from graphql_chat.adapters.redis_numbers import RedisNumbers
from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.domain import ChatCreated, MessageWritten, new_token
from graphql_chat.errors import NotFound, Unavailable
from graphql_chat.ports import Numbers
from tests.engines import engine_url, unique_name


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
    revisions = [await numbers.next_revision(1) for _ in range(1000)]
    assert revisions == sorted(set(revisions))


async def test_redis_data_loss_never_reuses_a_number(store: SqlStore) -> None:
    """Flush Redis while writes are still queued: allocation pauses until they are stored."""
    queued: list[MessageWritten] = []

    async def drained() -> bool:
        return not queued

    redis = RedisNumbers(engine_url("REDIS_URL"), store, drained, unique_name("test"))
    try:
        await redis.recover(settle=0)
        app = (await store.insert_application(new_token(), "a")).id
        assert await redis.next_chat(app) == 1
        await store.apply([ChatCreated(app, 1)])
        for _ in range(5):
            n = await redis.next_message(app, 1)
            queued.append(MessageWritten(app, 1, n, f"m{n}", await redis.next_revision(app)))
        await store.apply(queued[:3])  # 4 and 5 are accepted but still in the queue
        del queued[:3]

        last_revision = queued[-1].revision
        await redis.drop()  # Redis comes back empty
        with pytest.raises(Unavailable):
            await redis.next_message(app, 1)
        with pytest.raises(Unavailable):
            await redis.next_chat(app)
        await asyncio.sleep(0.5)
        with pytest.raises(Unavailable):  # still paused: the queue has not drained
            await redis.next_message(app, 1)

        await store.apply(queued)  # the workers catch up
        queued.clear()
        await asyncio.wait_for(redis.recover(settle=0.2), 10)
        assert await redis.next_message(app, 1) == 6
        assert await redis.next_chat(app) == 2
        assert await redis.next_revision(app) > last_revision
    finally:
        await redis.drop()
        await redis.close()


async def test_draw_and_revise_in_one_call(store: SqlStore, numbers: Numbers) -> None:
    app = (await store.insert_application(new_token(), "a")).id
    with pytest.raises(NotFound):
        await numbers.draw_message(app, 1)
    await numbers.next_chat(app)
    first, second = await numbers.draw_message(app, 1), await numbers.draw_message(app, 1)
    assert (first[0], second[0]) == (1, 2) and second[1] > first[1]
    assert await numbers.revise_message(app, 1, 2) > second[1]
    with pytest.raises(NotFound):
        await numbers.revise_message(app, 1, 3)
    with pytest.raises(NotFound):
        await numbers.revise_message(app, 2, 1)


async def test_concurrent_draws_each_get_their_own_answer(
    store: SqlStore, numbers: Numbers
) -> None:
    """Draws made together (one Redis pipeline) are answered one by one: counters seeded from
    the store on the way, an unknown chat refused without failing its neighbours."""
    app = (await store.insert_application(new_token(), "a")).id
    await store.apply(
        [ChatCreated(app, c) for c in (1, 2, 3)]
        + [MessageWritten(app, 2, n, f"m{n}", n) for n in range(1, 6)]
    )
    results = await asyncio.gather(
        *[numbers.draw_message(app, 1 + i % 4) for i in range(400)], return_exceptions=True
    )
    refused = [r for i, r in enumerate(results) if 1 + i % 4 == 4]
    assert all(isinstance(r, NotFound) for r in refused)
    drawn = {
        c: sorted(r[0] for i, r in enumerate(results) if 1 + i % 4 == c and isinstance(r, tuple))
        for c in (1, 2, 3)
    }
    assert drawn == {1: list(range(1, 101)), 2: list(range(6, 106)), 3: list(range(1, 101))}
    revisions = [r[1] for r in results if isinstance(r, tuple)]
    assert len(set(revisions)) == 300


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_draws_survive_redis_forgetting_its_scripts(
    store: SqlStore, numbers: Numbers
) -> None:
    """A restarted Redis has no scripts cached: the pipeline of draws loads it again."""
    app = (await store.insert_application(new_token(), "a")).id
    await numbers.next_chat(app)
    assert (await numbers.draw_message(app, 1))[0] == 1
    assert isinstance(numbers, RedisNumbers)
    await numbers._redis.script_flush()
    drawn = await asyncio.gather(*[numbers.draw_message(app, 1) for _ in range(10)])
    assert sorted(number for number, _ in drawn) == list(range(2, 12))
