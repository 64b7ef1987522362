"""The pipeline contract: a submitted write is durable, reaches the store once, in batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

import aio_pika
import orjson
import pytest

from graphql_chat.adapters.memory_pipeline import MemoryPipeline
from graphql_chat.adapters.rabbitmq import queues
from graphql_chat.adapters.rabbitmq.consumer import Consumer
from graphql_chat.adapters.rabbitmq.publisher import RabbitPipeline
from graphql_chat.adapters.rabbitmq.wire import event_to_dict
from graphql_chat.adapters.sql_ledger import SqlLedger
from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.domain import ChatCreated, Event, MessageWritten, new_token
from graphql_chat.errors import Unavailable
from graphql_chat.ports import Applied, Committed, Pipeline
from graphql_chat.writer import Writer
from tests.contract.conftest import Harness
from tests.engines import delete_queues, engine_url, unique_name


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 20) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "the pipeline did not deliver in time"
        await asyncio.sleep(0.05)


async def _count(store: SqlStore, app: int, chat: int = 1) -> int:
    found = (await store.chats_by_number([(app, chat)])).get((app, chat))
    return found.messages_count if found else -1


async def test_submitted_writes_reach_the_store(store: SqlStore, pipeline: Pipeline) -> None:
    app = (await store.insert_application(new_token(), "a")).id
    await pipeline.submit(ChatCreated(app, 1))
    await pipeline.submit(MessageWritten(app, 1, 1, "durable", 1))
    await pipeline.submit(MessageWritten(app, 1, 1, "edited", 2))

    async def stored() -> bool:
        chat = (await store.chats_by_number([(app, 1)])).get((app, 1))
        if chat is None:
            return False
        found = (await store.messages_by_number([(chat.id, 1)])).get((chat.id, 1))
        return found is not None and found.body == "edited"

    await eventually(stored)
    assert await _count(store, app) == 1


async def test_concurrent_submits_share_commits(store: SqlStore, harness: Harness) -> None:
    app = (await store.insert_application(new_token(), "a")).id
    await harness.pipeline.submit(ChatCreated(app, 1))
    await asyncio.gather(
        *[harness.pipeline.submit(MessageWritten(app, 1, n, "x", n)) for n in range(1, 501)]
    )

    async def all_stored() -> bool:
        return await _count(store, app) == 500

    await eventually(all_stored)
    assert harness.batches() < 100


class _BrokenWriter(Writer):
    async def commit(
        self, events: Sequence[Event], until: asyncio.Event | None = None
    ) -> Committed:
        raise RuntimeError("disk full")


async def test_failed_commit_is_reported_not_acknowledged(store: SqlStore, writer: Writer) -> None:
    pipeline = MemoryPipeline(_BrokenWriter(writer.store, writer.indexer))
    await pipeline.start()
    try:
        with pytest.raises(Unavailable):
            await pipeline.submit(ChatCreated(1, 1))
    finally:
        await pipeline.close()


class _FlakyStore:
    """The real store, failing its first `failures` batches as if the database were down."""

    def __init__(self, store: SqlStore, failures: int) -> None:
        self._store = store
        self.failures = failures

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def apply(self, events: Sequence[Event]) -> Applied:
        if self.failures > 0:
            self.failures -= 1
            raise Unavailable("database down")
        return await self._store.apply(events)


async def _ready(queue: str) -> int:
    """Messages waiting in `queue` (none is being consumed)."""
    connection = await aio_pika.connect(engine_url("RABBITMQ_URL"))
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count
        assert count is not None
        return count


@pytest.fixture
async def rabbit_queue() -> tuple[str, RabbitPipeline]:
    queue = unique_name("test")
    pipeline = RabbitPipeline(engine_url("RABBITMQ_URL"), queue)
    await pipeline.start()
    return queue, pipeline


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_worker_retries_while_the_store_is_down(
    store: SqlStore, writer: Writer, rabbit_queue: tuple[str, RabbitPipeline]
) -> None:
    queue, pipeline = rabbit_queue
    app = (await store.insert_application(new_token(), "a")).id
    try:
        await pipeline.submit(ChatCreated(app, 1))
        for n in range(1, 51):
            await pipeline.submit(MessageWritten(app, 1, n, f"m{n}", n))
        flaky = _FlakyStore(store, failures=3)
        worker = Consumer(engine_url("RABBITMQ_URL"), Writer(flaky, writer.indexer), queue)
        await asyncio.wait_for(worker.run(burst=True), 60)
        assert flaky.failures == 0
        assert await _count(store, app) == 50
        await eventually(pipeline.drained)
    finally:
        await delete_queues(pipeline.queue)
        await pipeline.close()


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_poison_messages_are_dead_lettered(
    store: SqlStore,
    writer: Writer,
    rabbit_queue: tuple[str, RabbitPipeline],
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue, pipeline = rabbit_queue
    app = (await store.insert_application(new_token(), "a")).id
    try:
        await pipeline.publish(queue, {"kind": "nonsense"})
        await pipeline.submit(ChatCreated(app, 1))
        poison = MessageWritten(10**12, 1, 1, "unknown application", 1)
        # Submitted together, so they share one broker message.
        await asyncio.gather(
            pipeline.submit(MessageWritten(app, 1, 1, "fine", 1)),
            pipeline.submit(poison),
            pipeline.submit(MessageWritten(app, 1, 2, "also fine", 2)),
        )
        worker = Consumer(engine_url("RABBITMQ_URL"), writer, queue)
        await asyncio.wait_for(worker.run(burst=True), 60)
        assert await _count(store, app) == 2
        connection = await aio_pika.connect(engine_url("RABBITMQ_URL"))
        async with connection:
            channel = await connection.channel()
            dead = await channel.declare_queue(queues.dead(queue), passive=True)
            assert dead.declaration_result.message_count == 2
            bodies = []
            for _ in range(2):
                message = await dead.get(timeout=5)
                assert message is not None
                bodies.append(orjson.loads(message.body))
                await message.ack()
        # The undecodable message as it was; the poison event alone, not its neighbours.
        assert bodies == [{"kind": "nonsense"}, event_to_dict(poison)]
        assert "dead-lettering" in caplog.text
        assert worker.rejected == 2
    finally:
        await delete_queues(pipeline.queue)
        await pipeline.close()


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_concurrent_submits_share_broker_messages_and_single_events_still_apply(
    store: SqlStore, writer: Writer, rabbit_queue: tuple[str, RabbitPipeline]
) -> None:
    """Writes submitted together travel in few messages; a message holding one bare event
    (as published before coalescing) is applied too."""
    queue, pipeline = rabbit_queue
    app = (await store.insert_application(new_token(), "a")).id
    try:
        await pipeline.publish(queue, event_to_dict(ChatCreated(app, 1)))
        await asyncio.gather(
            *[pipeline.submit(MessageWritten(app, 1, n, f"m{n}", n)) for n in range(1, 1001)]
        )
        assert pipeline.published == 1000
        assert 1 < await _ready(queue) <= 11
        worker = Consumer(engine_url("RABBITMQ_URL"), writer, queue)
        await asyncio.wait_for(worker.run(burst=True), 60)
        assert await _count(store, app) == 1000
        assert worker.applied == 1001
    finally:
        await delete_queues(pipeline.queue)
        await pipeline.close()


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_a_stop_while_the_store_is_down_hands_the_batch_back(
    store: SqlStore, writer: Writer, rabbit_queue: tuple[str, RabbitPipeline]
) -> None:
    """A worker told to stop does not wait for the store: the batch it was retrying stays
    queued for the next worker, nothing is dead-lettered."""
    queue, pipeline = rabbit_queue
    app = (await store.insert_application(new_token(), "a")).id
    try:
        await pipeline.submit(ChatCreated(app, 1))
        await asyncio.gather(
            *[pipeline.submit(MessageWritten(app, 1, n, f"m{n}", n)) for n in range(1, 21)]
        )
        down = _FlakyStore(store, failures=10**6)
        worker = Consumer(engine_url("RABBITMQ_URL"), Writer(down, writer.indexer), queue)
        running = asyncio.create_task(worker.run())

        async def tried() -> bool:
            return down.failures < 10**6

        await eventually(tried)
        worker.stop()
        await asyncio.wait_for(running, 5)
        assert (worker.applied, worker.rejected) == (0, 0)
        await asyncio.wait_for(
            Consumer(engine_url("RABBITMQ_URL"), writer, queue).run(burst=True), 60
        )
        assert await _count(store, app) == 20
    finally:
        await delete_queues(pipeline.queue)
        await pipeline.close()


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_large_writes_travel_in_bounded_messages(
    store: SqlStore, writer: Writer, rabbit_queue: tuple[str, RabbitPipeline]
) -> None:
    """Writes submitted together but too large for one message are split, all applied."""
    queue, pipeline = rabbit_queue
    app = (await store.insert_application(new_token(), "a")).id
    body = "é" * 60_000  # 120 kB in UTF-8: two fit in a message, not three
    try:
        await pipeline.submit(ChatCreated(app, 1))
        await asyncio.gather(
            *[pipeline.submit(MessageWritten(app, 1, n, body, n)) for n in range(1, 11)]
        )
        assert await _ready(queue) == 1 + 5
        worker = Consumer(engine_url("RABBITMQ_URL"), writer, queue)
        await asyncio.wait_for(worker.run(burst=True), 60)
        assert await _count(store, app) == 10
        chat = (await store.chats_by_number([(app, 1)]))[(app, 1)]
        stored = await store.messages_by_number([(chat.id, n) for n in range(1, 11)])
        assert {m.body for m in stored.values()} == {body}
    finally:
        await delete_queues(pipeline.queue)
        await pipeline.close()


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_a_conflicting_create_is_set_aside_loudly(
    store: SqlStore,
    writer: Writer,
    rabbit_queue: tuple[str, RabbitPipeline],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A number handed out twice (forced here): the second create does not overwrite the
    first; it goes to the dead-letter queue with its reason, logged, and counted."""
    queue, pipeline = rabbit_queue
    app = (await store.insert_application(new_token(), "a")).id
    epoch = (await SqlLedger(store).numbering()).epoch
    first = MessageWritten(app, 1, 1, "acknowledged first", 10, epoch, created=True)
    second = MessageWritten(app, 1, 1, "same number, other draw", 20, epoch, created=True)
    try:
        await pipeline.submit(ChatCreated(app, 1, epoch))
        await pipeline.submit(first)
        await pipeline.submit(second)
        worker = Consumer(engine_url("RABBITMQ_URL"), writer, queue)
        await asyncio.wait_for(worker.run(burst=True), 60)
        chat = (await store.chats_by_number([(app, 1)]))[(app, 1)]
        stored = await store.messages_by_number([(chat.id, 1)])
        assert stored[(chat.id, 1)].body == "acknowledged first"
        assert chat.messages_count == 1
        assert worker.set_aside == 1 and (await SqlLedger(store).numbering()).set_aside == 1
        assert "NUMBERING CONFLICT" in caplog.text
        connection = await aio_pika.connect(engine_url("RABBITMQ_URL"))
        async with connection:
            channel = await connection.channel()
            dead = await channel.declare_queue(queues.dead(queue), passive=True)
            message = await dead.get(timeout=5)
            assert message is not None
            body = orjson.loads(message.body)
            assert body["b"] == second.body and "another draw" in body["set_aside"]
            await message.ack()
    finally:
        await delete_queues(pipeline.queue)
        await pipeline.close()


class _StalledStore(_FlakyStore):
    """The real store, whose commits wait until released (a database holding locks)."""

    def __init__(self, store: SqlStore) -> None:
        super().__init__(store, 0)
        self.release = asyncio.Event()

    async def apply(self, events: Sequence[Event]) -> Applied:
        await self.release.wait()
        return await self._store.apply(events)


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_drained_means_nothing_queued_and_nothing_held(
    store: SqlStore, writer: Writer, rabbit_queue: tuple[str, RabbitPipeline]
) -> None:
    """The queue's ready count alone would say drained while a worker holds deliveries it
    cannot commit; `drained` waits until they are settled. While numbering recovers, an idle
    worker stops consuming so that the queue can be seen drained at all."""
    queue, pipeline = rabbit_queue
    app = (await store.insert_application(new_token(), "a")).id
    stalled = _StalledStore(store)
    worker = Consumer(
        engine_url("RABBITMQ_URL"),
        Writer(stalled, writer.indexer),
        queue,
        ledger=SqlLedger(store),
    )
    running = asyncio.create_task(worker.run())
    try:
        await pipeline.submit(ChatCreated(app, 1))
        await pipeline.submit(MessageWritten(app, 1, 1, "held", 1))

        async def taken() -> bool:
            return await _ready(queue) == 0

        await eventually(taken)
        await asyncio.sleep(0.5)
        assert not await pipeline.drained()  # nothing ready, but held by the worker
        stalled.release.set()

        async def stored() -> bool:
            return await _count(store, app) == 1

        await eventually(stored)
        await asyncio.sleep(0.5)
        assert not await pipeline.drained()  # an idle consumer could take more at any time
        await SqlLedger(store).fencing_token()  # numbering recovers: idle workers stop consuming
        await eventually(pipeline.drained, within=5)
        await pipeline.submit(MessageWritten(app, 1, 2, "meanwhile", 2))  # work arrives

        async def consumed() -> bool:
            return await _count(store, app) == 2

        await eventually(consumed)
        assert await SqlLedger(store).open_epoch(
            (await SqlLedger(store).numbering()).epoch, await SqlLedger(store).fencing_token()
        )
        await pipeline.submit(MessageWritten(app, 1, 3, "after", 3))

        async def resumed() -> bool:
            return await _count(store, app) == 3

        await eventually(resumed)
    finally:
        stalled.release.set()
        worker.stop()
        await asyncio.wait_for(running, 30)
        await delete_queues(pipeline.queue)
        await pipeline.close()


async def test_a_write_that_cannot_be_stored_fails_alone(
    store: SqlStore, pipeline: Pipeline
) -> None:
    """Past the edge checks (here, submitted straight to the pipeline), a body no encoder
    accepts fails its own write with a non-retryable error; the writes submitted with it
    (one group commit, one broker message) succeed."""
    app = (await store.insert_application(new_token(), "a")).id
    await pipeline.submit(ChatCreated(app, 1))
    results = await asyncio.gather(
        *[pipeline.submit(MessageWritten(app, 1, n, f"fine {n}", n)) for n in range(1, 6)],
        pipeline.submit(MessageWritten(app, 1, 6, "lone \ud800 surrogate", 6)),
        *[pipeline.submit(MessageWritten(app, 1, n, f"fine {n}", n)) for n in range(7, 12)],
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results] == ["NoneType"] * 5 + ["InvalidInput"] + [
        "NoneType"
    ] * 5

    async def stored() -> bool:
        return await _count(store, app) == 10

    await eventually(stored)


@pytest.mark.parametrize("store", ["mysql"], indirect=True)
async def test_a_queue_writes_were_steered_from_is_seen_drained_under_load(
    store: SqlStore, writer: Writer, rabbit_queue: tuple[str, RabbitPipeline]
) -> None:
    """Under steady load the write queue is never seen drained (a consumer always holds it).
    Steered to the other queue (`route`), new writes no longer reach it: it is seen drained
    once the write a stalled worker holds there is stored, while the load goes on being
    stored through the other queue; steered back, the first queue takes writes again."""
    queue, pipeline = rabbit_queue
    app = (await store.insert_application(new_token(), "a")).id
    await store.apply([ChatCreated(app, 1)])
    stalled = _StalledStore(store)
    stalled.release.set()
    url = engine_url("RABBITMQ_URL")
    workers = [
        Consumer(url, Writer(stalled, writer.indexer), queue, lane=0, ledger=SqlLedger(store)),
        Consumer(url, writer, queue, lane=1, ledger=SqlLedger(store)),
    ]
    running = [asyncio.create_task(w.run()) for w in workers]
    submitted = 0
    stop = asyncio.Event()

    async def load() -> None:
        nonlocal submitted
        while not stop.is_set():
            submitted += 1
            await pipeline.submit(MessageWritten(app, 1, submitted, "load", submitted))
            await asyncio.sleep(0.005)

    async def seen_drained(generation: int, within: float) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if await pipeline.drained(generation):
                return True
            await asyncio.sleep(0.02)
        return False

    loading = asyncio.create_task(load())
    try:

        async def flowing() -> bool:
            return await _count(store, app) > 10

        await eventually(flowing)
        assert not await seen_drained(0, within=1.5)  # consumed all along: never drained
        stalled.release.clear()
        await asyncio.sleep(0.3)  # a batch of the load is now held, unsettled
        token = await SqlLedger(store).fencing_token(pause=False)
        assert await SqlLedger(store).advance_generation(0, token)
        await pipeline.route(1)
        steered = await _count(store, app)
        await asyncio.sleep(1.0)
        assert await _count(store, app) > steered  # the load is stored through queue 1
        assert not await pipeline.drained(0)  # the held batch is not settled
        stalled.release.set()
        assert await seen_drained(0, within=5)  # under the same load
        assert (await SqlLedger(store).numbering()).generation == 1
        assert await SqlLedger(store).advance_generation(1, token)
        await pipeline.route(2)
        back = submitted

        async def stored_through_queue_0() -> bool:
            return await _count(store, app) > back and not await pipeline.drained(0)

        await eventually(stored_through_queue_0)
        stop.set()
        await loading

        async def everything() -> bool:
            return await _count(store, app) == submitted

        await eventually(everything)
    finally:
        stop.set()
        stalled.release.set()
        for worker in workers:
            worker.stop()
        await asyncio.wait_for(asyncio.gather(loading, *running), 30)
        await delete_queues(pipeline.queue)
        await pipeline.close()
