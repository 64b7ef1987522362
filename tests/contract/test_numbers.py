"""The numbers contract: unique, gapless, seeded from the store, chats checked; on Redis, a
data loss never hands a number out twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from graphql_chat.adapters.memory_numbers import MemoryNumbers
from graphql_chat.adapters.sql_ledger import SqlLedger
from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.domain import ChatCreated, MessageWritten, claim, new_token, now_micros
from graphql_chat.errors import KeyReused, NotFound, Unavailable
from graphql_chat.ports import Numbers
from tests.engines import engine_url, unique_name
from tests.numbering import TestNumbers, redis_numbering


async def test_concurrent_allocations_are_unique_and_gapless(
    store: SqlStore, numbers: Numbers
) -> None:
    app = (await store.insert_application(new_token(), "a")).id
    chats = await asyncio.gather(*[numbers.next_chat(app) for _ in range(200)])
    assert sorted(c.number for c in chats) == list(range(1, 201))
    drawn = await asyncio.gather(*[numbers.draw_message(app, 1 + i % 3) for i in range(300)])
    per_chat = {c: sorted(drawn[i].number for i in range(300) if 1 + i % 3 == c) for c in (1, 2, 3)}
    assert per_chat == {c: list(range(1, 101)) for c in (1, 2, 3)}
    assert len({d.revision for d in drawn}) == 300


async def test_unknown_chat_and_message_are_refused(store: SqlStore, numbers: Numbers) -> None:
    app = (await store.insert_application(new_token(), "a")).id
    with pytest.raises(NotFound):
        await numbers.draw_message(app, 1)
    await numbers.next_chat(app)
    first, second = await numbers.draw_message(app, 1), await numbers.draw_message(app, 1)
    assert (first.number, second.number) == (1, 2) and second.revision > first.revision
    revised = await numbers.revise_message(app, 1, 2)
    assert revised.number == 2 and revised.revision > second.revision
    with pytest.raises(NotFound):
        await numbers.revise_message(app, 1, 3)
    with pytest.raises(NotFound):
        await numbers.revise_message(app, 2, 1)


async def test_seeded_from_the_store(store: SqlStore, numbers: Numbers) -> None:
    app = (await store.insert_application(new_token(), "a")).id
    await store.apply(
        [ChatCreated(app, 1), ChatCreated(app, 2)]
        + [MessageWritten(app, 2, n, "x", n) for n in range(1, 6)]
    )
    assert (await numbers.next_chat(app)).number == 3
    assert (await numbers.draw_message(app, 2)).number == 6
    assert (await numbers.draw_message(app, 1)).number == 1
    assert (await numbers.draw_message(app, 3)).number == 1


class _StoreDown:
    """The real store, except that reading numbers fails as if the database were down."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def max_chat_number(self, application_id: int) -> int:
        raise Unavailable("the database is unavailable")

    async def max_message_number(self, application_id: int, chat_number: int) -> int:
        raise Unavailable("the database is unavailable")


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_new_applications_and_chats_number_without_the_store(store: SqlStore) -> None:
    """A new application's chats and a new chat's messages start at 1 without asking the
    store, so creates go on while MySQL is down; and another API process finds the token."""
    prefix = unique_name("test")
    down = redis_numbering(engine_url("REDIS_URL"), _StoreDown(store), _drained, prefix)  # type: ignore[arg-type]
    other = redis_numbering(engine_url("REDIS_URL"), _StoreDown(store), _drained, prefix)  # type: ignore[arg-type]
    try:
        await down.recover()
        application = await store.insert_application(new_token(), "a")
        await down.register_application(application.id, application.token)
        assert await other.application_id(application.token) == application.id
        assert (await other.next_chat(application.id)).number == 1
        assert (await down.draw_message(application.id, 1)).number == 1
        assert (await other.draw_message(application.id, 1)).number == 2
        with pytest.raises(Unavailable):  # an application from before: its seed is needed
            await down.next_chat((await store.insert_application(new_token(), "b")).id)
    finally:
        await down.drop()
        await down.close()
        await other.close()


async def _drained() -> bool:
    return True


@pytest.fixture
async def redis_numbers(store: SqlStore) -> AsyncIterator[tuple[TestNumbers, list[bool]]]:
    """Redis numbers whose queue is drained when the list's last item says so."""
    drained = [True]

    async def queue_drained() -> bool:
        return drained[-1]

    numbers = redis_numbering(engine_url("REDIS_URL"), store, queue_drained, unique_name("test"))
    try:
        yield numbers, drained
    finally:
        await numbers.drop()
        await numbers.close()


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_a_new_deployment_opens_numbering_at_once(
    store: SqlStore, redis_numbers: tuple[TestNumbers, list[bool]]
) -> None:
    """Epoch 0 in the store: no number was ever handed out, so there is nothing to wait for,
    even with a queue that never looks drained."""
    numbers, drained = redis_numbers
    drained.append(False)
    await asyncio.wait_for(numbers.recover(), 2)
    assert (await SqlLedger(store).numbering()).epoch == 1
    app = (await store.insert_application(new_token(), "a")).id
    assert (await numbers.next_chat(app)).epoch == 1


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_redis_data_loss_never_reuses_a_number(
    store: SqlStore, redis_numbers: tuple[TestNumbers, list[bool]]
) -> None:
    """Redis loses its data while writes are still queued: numbering pauses until the queue
    is drained, retires the old epoch in the store, and numbers on from the store."""
    numbers, drained = redis_numbers
    await numbers.recover()
    app = (await store.insert_application(new_token(), "a")).id
    chat = await numbers.next_chat(app)
    await store.apply([ChatCreated(app, 1, chat.epoch)])
    queued = []
    for _ in range(5):
        drawn = await numbers.draw_message(app, 1)
        queued.append(
            MessageWritten(
                app, 1, drawn.number, f"m{drawn.number}", drawn.revision, drawn.epoch, created=True
            )
        )
    await store.apply(queued[:3])  # 4 and 5 are accepted but still in the queue
    old = queued[0].epoch
    assert await numbers.still_open(app, old)

    drained.append(False)
    await numbers.drop()  # Redis comes back empty
    with pytest.raises(Unavailable):
        await numbers.draw_message(app, 1)
    with pytest.raises(Unavailable):
        await numbers.next_chat(app)
    assert not await numbers.still_open(app, old)
    await asyncio.sleep(0.5)
    with pytest.raises(Unavailable):  # still paused: the queue has not drained
        await numbers.draw_message(app, 1)
    assert (await SqlLedger(store).numbering()).recovering

    await store.apply(queued[3:])  # the workers catch up
    drained.append(True)
    await asyncio.wait_for(numbers.recover(), 10)
    state = await SqlLedger(store).numbering()
    assert (state.epoch, state.recovering) == (old + 1, False)
    drawn = await numbers.draw_message(app, 1)
    assert (drawn.number, drawn.epoch) == (6, old + 1)
    assert drawn.revision > queued[-1].revision
    assert (await numbers.next_chat(app)).number == 2
    # A draw of the retired epoch that reaches the store now is set aside, not applied.
    late = MessageWritten(app, 1, 6, "late", queued[-1].revision + 1, old, created=True)
    applied = await store.apply([late])
    assert [event for event, _ in applied.set_aside] == [late]
    assert (await SqlLedger(store).numbering()).set_aside == 1


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_an_epoch_key_from_before_numbering_epochs_is_recovered_from(
    store: SqlStore, redis_numbers: tuple[TestNumbers, list[bool]]
) -> None:
    """An epoch key from before numbering epochs (a random value) is not an open
    epoch: numbering recovers, waiting for the queue, instead of trusting old counters."""
    numbers, _ = redis_numbers
    async with Redis.from_url(engine_url("REDIS_URL")) as redis:
        await redis.set(f"{numbers.key_prefix}:epoch", "5f0c2a9e1b7d4e33")
    app = (await store.insert_application(new_token(), "a")).id
    await store.apply([ChatCreated(app, 1), ChatCreated(app, 2)])
    await SqlLedger(store).open_epoch(
        0, await SqlLedger(store).fencing_token()
    )  # the migration of a used database
    with pytest.raises(Unavailable):
        await numbers.next_chat(app)
    await asyncio.wait_for(numbers.recover(), 5)
    assert (await numbers.next_chat(app)).number == 3


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_a_stale_recovery_cannot_open_an_epoch(store: SqlStore) -> None:
    """Recoveries are fenced: only the latest claim may retire the epoch."""
    first = await SqlLedger(store).fencing_token()
    second = await SqlLedger(store).fencing_token()
    epoch = (await SqlLedger(store).numbering()).epoch
    assert not await SqlLedger(store).open_epoch(epoch, first)
    assert await SqlLedger(store).open_epoch(epoch, second)
    assert not await SqlLedger(store).open_epoch(epoch, second)  # already advanced
    assert (await SqlLedger(store).numbering()).epoch == epoch + 1


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_draws_survive_redis_forgetting_its_scripts(
    store: SqlStore, numbers: Numbers
) -> None:
    """A restarted Redis has no scripts cached: the pipeline of draws loads it again."""
    app = (await store.insert_application(new_token(), "a")).id
    await numbers.next_chat(app)
    assert (await numbers.draw_message(app, 1)).number == 1
    async with Redis.from_url(engine_url("REDIS_URL")) as redis:
        await redis.script_flush()
    drawn = await asyncio.gather(*[numbers.draw_message(app, 1) for _ in range(10)])
    assert sorted(d.number for d in drawn) == list(range(2, 12))
    assert (await numbers.next_chat(app)).number == 2


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
        c: sorted(
            r.number
            for i, r in enumerate(results)
            if 1 + i % 4 == c and not isinstance(r, BaseException)
        )
        for c in (1, 2, 3)
    }
    assert drawn == {1: list(range(1, 101)), 2: list(range(6, 106)), 3: list(range(1, 101))}


async def test_draw_times_agree_with_numbers_and_the_clock(
    store: SqlStore, numbers: Numbers
) -> None:
    """Each draw says when it was made: within the clock's reach, and in an application never
    earlier than a draw before it, so that ordering a chat's messages by time or by number
    gives one order (concurrent draws included)."""
    app = (await store.insert_application(new_token(), "a")).id
    before = now_micros() - 1_000_000  # Redis's clock and this one, a second apart at most
    chats = await asyncio.gather(*[numbers.next_chat(app) for _ in range(20)])
    messages = await asyncio.gather(*[numbers.draw_message(app, 1 + i % 4) for i in range(200)])
    after = now_micros() + 1_000_000
    for drawn in (*chats, *messages):
        assert before <= drawn.at <= after
    by_number = sorted(chats, key=lambda d: d.number)
    assert [d.at for d in by_number] == sorted(d.at for d in chats)
    for chat in range(1, 5):
        mine = sorted(
            (d for i, d in enumerate(messages) if 1 + i % 4 == chat), key=lambda d: d.number
        )
        assert [d.at for d in mine] == sorted(d.at for d in mine)
        assert min(d.at for d in mine) >= by_number[chat - 1].at  # the chat came first
    revised = await numbers.revise_message(app, 1, 1)
    assert revised.at >= max(d.at for d in messages)


async def test_a_claimed_key_answers_its_first_draw_and_draws_nothing_more(
    store: SqlStore, numbers: Numbers
) -> None:
    """Under one idempotency key: the first draw claims it, every retry (concurrent ones
    included) gets that draw back and nothing more is drawn; another create under the key is
    refused."""
    app = (await store.insert_application(new_token(), "a")).id
    chat_key = claim("chat-key", 60, "chat")
    chats = await asyncio.gather(*[numbers.next_chat(app, chat_key) for _ in range(10)])
    assert {c.number for c in chats} == {1}
    assert sum(not c.replayed for c in chats) == 1
    assert len({(c.number, c.revision, c.epoch, c.at) for c in chats}) == 1
    assert (await numbers.next_chat(app)).number == 2

    key = claim("message-key", 60, "message", 1, "hello")
    drawn = await asyncio.gather(*[numbers.draw_message(app, 1, key) for _ in range(20)])
    assert {(d.number, d.revision, d.at) for d in drawn} == {(1, drawn[0].revision, drawn[0].at)}
    assert sum(not d.replayed for d in drawn) == 1
    assert not any(d.durable for d in drawn)  # nothing stored yet: a retry submits again
    assert (await numbers.draw_message(app, 1)).number == 2
    with pytest.raises(KeyReused):
        await numbers.draw_message(app, 1, claim("message-key", 60, "message", 1, "other"))
    with pytest.raises(KeyReused):
        await numbers.next_chat(app, claim("message-key", 60, "chat"))
    other_app = (await store.insert_application(new_token(), "b")).id
    await numbers.next_chat(other_app)
    mine = await numbers.draw_message(other_app, 1, key)  # keys are per application
    assert (mine.number, mine.replayed) == (1, False)


async def test_a_key_is_free_again_after_its_window(store: SqlStore, numbers: Numbers) -> None:
    app = (await store.insert_application(new_token(), "a")).id
    await numbers.next_chat(app)
    key = claim("k", 1, "message", 1, "hello")
    first = await numbers.draw_message(app, 1, key)
    assert (await numbers.draw_message(app, 1, key)).number == first.number
    await asyncio.sleep(1.2)
    again = await numbers.draw_message(app, 1, key)
    assert (again.number, again.replayed) == (first.number + 1, False)


async def test_a_key_stored_with_its_write_outlives_the_numbers_memory(store: SqlStore) -> None:
    """A claim is stored with its create: numbering that lost its memory (an embedded
    process restarted; Redis lost its data and recovered) answers the stored draw, marked
    durable, and numbers on past it."""
    app = (await store.insert_application(new_token(), "a")).id
    key = claim("k", 60, "message", 1, "hello")
    first: Numbers
    if store.is_sqlite:
        first = MemoryNumbers(store)
    else:
        first = redis_numbering(engine_url("REDIS_URL"), store, _drained, unique_name("test"))
        await first.recover()
    chat = await first.next_chat(app, claim("c", 60, "chat"))
    drawn = await first.draw_message(app, 1, key)
    await store.apply(
        [
            ChatCreated(app, 1, chat.epoch, chat.at, claim("c", 60, "chat")),
            MessageWritten(
                app, 1, 1, "hello", drawn.revision, drawn.epoch, True, drawn.at, claim=key
            ),
        ]
    )
    if isinstance(first, TestNumbers):
        await first.drop()  # Redis comes back empty
        with pytest.raises(Unavailable):
            await first.draw_message(app, 1, key)
        await asyncio.wait_for(first.recover(), 10)
        after: Numbers = first
    else:
        after = MemoryNumbers(store)  # a new process
    retried = await after.draw_message(app, 1, key)
    assert (retried.number, retried.revision, retried.at) == (1, drawn.revision, drawn.at)
    assert retried.replayed and retried.durable
    assert (await after.next_chat(app, claim("c", 60, "chat"))).number == 1
    with pytest.raises(KeyReused):
        await after.draw_message(app, 1, claim("k", 60, "message", 1, "changed"))
    assert (await after.draw_message(app, 1)).number == 2
    if isinstance(first, TestNumbers):
        await first.drop()
        await first.close()


class _EpochMovesOnce:
    """The store, except that the first seed read lets a recovery finish meanwhile: the next
    epoch opens in Redis between the seed's read and the draw it seeds."""

    def __init__(self, store: SqlStore, epoch_key: str) -> None:
        self._store = store
        self._epoch_key = epoch_key
        self.moved = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def _move(self) -> None:
        if not self.moved:
            self.moved = True
            async with Redis.from_url(engine_url("REDIS_URL")) as redis:
                await redis.incr(self._epoch_key)

    async def max_chat_number(self, application_id: int) -> int:
        await self._move()
        return await self._store.max_chat_number(application_id)

    async def max_message_number(self, application_id: int, chat_number: int) -> int:
        await self._move()
        return await self._store.max_message_number(application_id, chat_number)


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
@pytest.mark.parametrize("draw", ["chat", "message"])
async def test_a_seed_read_in_an_epoch_that_closed_meanwhile_is_read_again(
    store: SqlStore, draw: str
) -> None:
    """A seed read in epoch E must not seed E+1's counter (the script refuses it): the draw
    reads the seed again in E+1 and numbers on from the store."""
    prefix = unique_name("test")
    moving = _EpochMovesOnce(store, f"{prefix}:epoch")
    numbers = redis_numbering(engine_url("REDIS_URL"), moving, _drained, prefix)  # type: ignore[arg-type]
    try:
        await numbers.recover()
        app = (await store.insert_application(new_token(), "a")).id
        await store.apply([ChatCreated(app, 1), ChatCreated(app, 2)])
        await store.apply([MessageWritten(app, 1, n, "m", n, created=True) for n in (1, 2, 3)])
        before = (await SqlLedger(store).numbering()).epoch
        if draw == "chat":
            drawn = await numbers.next_chat(app)
            assert drawn.number == 3
        else:
            drawn = await numbers.draw_message(app, 1)
            assert drawn.number == 4
        assert moving.moved and drawn.epoch == before + 1
    finally:
        await numbers.drop()
        await numbers.close()
