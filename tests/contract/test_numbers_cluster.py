"""Numbering on a real Redis Cluster (three masters on loopback, started by `make services`):
each application's keys in one slot, and a shard that loses its data recovers its own
applications while the others go on drawing.

The numbers contract itself (unique, gapless, seeded from the store, idempotency keys) runs
here again on the cluster: the tests imported below take this module's `numbers`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from graphql_chat.adapters import redis_client
from graphql_chat.adapters.sql_ledger import SqlLedger
from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.domain import ChatCreated, MessageWritten, claim, new_token
from graphql_chat.errors import Unavailable
from graphql_chat.ports import Drawn
from tests.contract.test_numbers import (  # noqa: F401  (collected here, on the cluster)
    test_a_claimed_key_answers_its_first_draw_and_draws_nothing_more,
    test_a_key_is_free_again_after_its_window,
    test_concurrent_allocations_are_unique_and_gapless,
    test_concurrent_draws_each_get_their_own_answer,
    test_draw_times_agree_with_numbers_and_the_clock,
    test_seeded_from_the_store,
    test_unknown_chat_and_message_are_refused,
)
from tests.engines import engine_url, mysql_database, unique_name
from tests.numbering import TestNumbers, redis_numbering
from tests.redis_group import redis_cluster_group

T = TypeVar("T")


class Steering:
    """The pipeline's side of a recovery, as a test controls it: the queue of a generation
    is drained when `held` does not name it; every route asked for is recorded."""

    def __init__(self) -> None:
        self.held: set[int] = set()  # generations whose queue still holds writes
        self.routes: list[int] = []

    async def drained(self, generation: int | None = None) -> bool:
        return generation is None or generation not in self.held

    async def route(self, generation: int) -> None:
        self.routes.append(generation)


@pytest.fixture
async def store() -> AsyncIterator[SqlStore]:
    """MySQL only: the cluster is the distributed mode's."""
    async with mysql_database() as url:
        started = SqlStore(url, "NORMAL")
        await started.start()
        try:
            yield started
        finally:
            await started.close()


@pytest.fixture
async def steering() -> Steering:
    return Steering()


@pytest.fixture
async def cluster_numbers(store: SqlStore, steering: Steering) -> AsyncIterator[TestNumbers]:
    numbers = redis_numbering(
        engine_url("REDIS_CLUSTER_URL"),
        store,
        steering.drained,
        unique_name("test"),
        route=steering.route,
    )
    await numbers.start()
    try:
        yield numbers
    finally:
        await numbers.drop()
        await numbers.close()


class _FirstSeen:
    """Cluster numbers for applications inserted straight into the store, as the contract's
    tests make them: the cluster has never seen them, so their first draw answers
    `Unavailable` and recovers them (nothing is queued); the draw is then made again."""

    def __init__(self, numbers: TestNumbers) -> None:
        self._numbers = numbers

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._numbers, name)
        if name not in ("next_chat", "draw_message", "revise_message"):
            return found

        async def drawn(*args: Any, **kwargs: Any) -> Drawn:
            try:
                result: Drawn = await found(*args, **kwargs)
                return result
            except Unavailable:
                await asyncio.wait_for(self._numbers.recover(), 10)
                again: Drawn = await found(*args, **kwargs)
                return again

        return drawn


@pytest.fixture
async def numbers(cluster_numbers: TestNumbers) -> _FirstSeen:
    return _FirstSeen(cluster_numbers)


async def _registered(store: SqlStore, numbers: TestNumbers, name: str = "a") -> int:
    application = await store.insert_application(new_token(), name)
    await numbers.register_application(application.id, application.token)
    return application.id


async def _node_of(numbers: TestNumbers, app_id: int, url: str = "") -> tuple[str, int]:
    """The master holding an application's slot."""
    cluster = redis_client.connect(url or engine_url("REDIS_CLUSTER_URL"))
    assert isinstance(cluster, RedisCluster)
    try:
        await cluster.initialize()
        node = cluster.get_node_from_key(f"{numbers.key_prefix}:{{a:{app_id}}}:epoch")
        return node.host, node.port
    finally:
        await redis_client.close(cluster)


async def _apart(
    store: SqlStore, numbers: TestNumbers, url: str = ""
) -> tuple[int, int, tuple[str, int]]:
    """Two registered applications whose slots are on different masters, and the first's."""
    first = await _registered(store, numbers)
    node = await _node_of(numbers, first, url)
    for _ in range(50):
        other = await _registered(store, numbers, "b")
        if await _node_of(numbers, other, url) != node:
            return first, other, node
    raise AssertionError("every application landed on one master")


async def _flush(node: tuple[str, int]) -> None:
    """The shard loses its data (a master restarted without its files)."""
    async with Redis(host=node[0], port=node[1]) as redis:
        await redis.flushall()


async def _eventually(draw: Callable[[], Awaitable[T]], within: float = 10) -> T:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return await draw()
        except Unavailable:
            assert asyncio.get_running_loop().time() < deadline, "numbering never reopened"
            await asyncio.sleep(0.05)


async def test_a_new_application_draws_at_once(
    store: SqlStore, cluster_numbers: TestNumbers
) -> None:
    """A registered application opens in the store's global epoch: its first draws need no
    recovery and no store read."""
    await cluster_numbers.ping()  # every master answers
    app = await _registered(store, cluster_numbers)
    epoch = (await SqlLedger(store).numbering()).epoch
    assert epoch >= 1  # opened at start: no draw is of epoch 0
    chat = await cluster_numbers.next_chat(app)
    drawn = await cluster_numbers.draw_message(app, 1)
    assert (chat.number, chat.epoch, drawn.number, drawn.epoch) == (1, epoch, 1, epoch)
    assert await cluster_numbers.still_open(app, epoch)


async def test_a_lost_shard_recovers_alone_and_reuses_no_number(
    store: SqlStore, cluster_numbers: TestNumbers, steering: Steering
) -> None:
    """One master loses its data while writes of its application are still queued: that
    application's draws are refused until the queue they were in is drained, then number on
    from the store in a new epoch of its own; an application on another master draws all
    along, in the epoch it had; the store sets aside late draws of the retired epoch only."""
    numbers = cluster_numbers
    lost, kept, node = await _apart(store, numbers)
    chat = await numbers.next_chat(lost)
    await numbers.next_chat(kept)
    await store.apply([ChatCreated(lost, 1, chat.epoch), ChatCreated(kept, 1, chat.epoch)])
    queued: list[MessageWritten] = []
    for _ in range(5):
        drawn = await numbers.draw_message(lost, 1, claim(f"k{len(queued)}", 60, "m"))
        queued.append(
            MessageWritten(
                lost,
                1,
                drawn.number,
                f"m{drawn.number}",
                drawn.revision,
                drawn.epoch,
                True,
                drawn.at,
                claim=claim(f"k{len(queued)}", 60, "m"),
            )
        )
    await store.apply(queued[:3])  # 4 and 5 are accepted but still in the queue
    old = queued[0].epoch
    kept_epoch = (await numbers.draw_message(kept, 1)).epoch
    generation = (await SqlLedger(store).numbering()).generation
    steering.held = {generation}  # the queue of this generation holds 4 and 5

    await _flush(node)
    with pytest.raises(Unavailable):
        await numbers.draw_message(lost, 1)
    assert not await numbers.still_open(lost, old)
    await asyncio.sleep(0.5)
    with pytest.raises(Unavailable):  # the queue left still holds writes of the lost epoch
        await numbers.draw_message(lost, 1)
    # The other application draws meanwhile, in its own epoch; new writes go to the other
    # queue (the generation advanced, and the route followed it).
    during = await asyncio.gather(*[numbers.draw_message(kept, 1) for _ in range(20)])
    assert sorted(d.number for d in during) == list(range(2, 22))
    assert {d.epoch for d in during} == {kept_epoch} and await numbers.still_open(kept, kept_epoch)
    assert (await SqlLedger(store).numbering()).generation == generation + 1
    assert steering.routes[-1] == generation + 1

    await store.apply(queued[3:])  # the workers catch up
    steering.held = set()
    drawn = await _eventually(lambda: numbers.draw_message(lost, 1))
    assert drawn.number == 6 and drawn.epoch > old  # numbers on past every queued write
    assert (await numbers.next_chat(lost)).number == 2
    # The stored claims of the lost application are back: a retry gets its draw.
    retried = await numbers.draw_message(lost, 1, claim("k3", 60, "m"))
    assert (retried.number, retried.replayed, retried.durable) == (4, True, True)
    assert (await numbers.draw_message(kept, 1)).epoch == kept_epoch  # never recovered
    # A draw of the retired epoch reaching the store now is set aside; the other
    # application's writes of the same global epoch are not.
    late = MessageWritten(lost, 1, 7, "late", queued[-1].revision + 10**6, old, created=True)
    fine = MessageWritten(kept, 1, 30, "fine", queued[-1].revision + 10**6, kept_epoch, True)
    applied = await store.apply([late, fine])
    assert [event for event, _ in applied.set_aside] == [late]


async def test_every_master_lost_recovers_every_application(
    store: SqlStore, cluster_numbers: TestNumbers
) -> None:
    """The whole cluster comes back empty: each application recovers (one round takes all
    those a process asks for), numbering on from the store."""
    apps = [await _registered(store, cluster_numbers, f"a{i}") for i in range(6)]
    for app in apps:
        await cluster_numbers.next_chat(app)
    await store.apply([ChatCreated(app, 1) for app in apps])
    await cluster_numbers.drop()
    for app in apps:
        with pytest.raises(Unavailable):
            await cluster_numbers.next_chat(app)
    await asyncio.wait_for(cluster_numbers.recover(), 10)
    again = await asyncio.gather(*[cluster_numbers.next_chat(app) for app in apps])
    assert [d.number for d in again] == [2] * len(apps)


async def test_draws_survive_every_master_forgetting_its_scripts(
    store: SqlStore, cluster_numbers: TestNumbers
) -> None:
    """Restarted masters have no scripts cached: a pipeline of draws spread over several
    masters loads the script on all of them and goes on."""
    first, other, _ = await _apart(store, cluster_numbers)
    for app in (first, other):
        await cluster_numbers.next_chat(app)
    cluster = redis_client.connect(engine_url("REDIS_CLUSTER_URL"))
    try:
        await redis_client.ready(cluster)
        await cluster.script_flush()
    finally:
        await redis_client.close(cluster)
    drawn = await asyncio.gather(
        *[cluster_numbers.draw_message(app, 1) for app in (first, other) for _ in range(10)]
    )
    assert sorted(d.number for d in drawn[:10]) == list(range(1, 11))
    assert sorted(d.number for d in drawn[10:]) == list(range(1, 11))


async def test_a_failover_to_a_replica_that_missed_draws_reuses_no_number(
    store: SqlStore, tmp_path: Path
) -> None:
    """Three masters with a replica each, `REDIS_WAIT_REPLICAS=1`: each master's share of a
    draw pipeline ends with its own `WAIT`. The replica of one application's master stops:
    that application's draws are refused (the master made them, no replica holds them: its
    link is cut) while
    another master's application draws on. The master is killed, the stale replica takes
    its slots over, the failed node comes back as its replica: draws go on from what the
    replica held, and no acknowledged number is handed out twice (without the `WAIT`, the
    refused draws would have been acknowledged, then handed out again)."""
    with redis_cluster_group(tmp_path) as group:
        steering = Steering()
        numbers = redis_numbering(
            group.url,
            store,
            steering.drained,
            unique_name("test"),
            replicas=1,
            replicas_timeout_ms=200,
            route=steering.route,
        )
        await numbers.start()
        try:
            app, other, (_, master) = await _apart(store, numbers, group.url)
            await numbers.next_chat(app)
            await numbers.next_chat(other)
            acknowledged = [(await numbers.draw_message(app, 1)).number for _ in range(5)]
            replica = group.replica_of(master)
            group.pause(replica)
            with group.client(master) as cut:  # nothing more reaches the replica
                cut.execute_command("CLIENT", "KILL", "TYPE", "replica")
            for _ in range(5):
                with pytest.raises(Unavailable, match="replica"):
                    await numbers.draw_message(app, 1)
            assert (await numbers.draw_message(other, 1)).number == 1  # its replica is up
            group.kill(master)
            group.resume(replica)
            with group.client(replica) as promoted:
                promoted.execute_command("CLUSTER", "FAILOVER", "TAKEOVER")
            group.wait(
                "the replica to take its master's slots", lambda: group.role(replica) == "master"
            )
            group.start(master)  # back, empty, as the new master's replica
            with group.client(master) as back:
                back.execute_command("CLUSTER", "MEET", "127.0.0.1", str(replica))

            def replicating() -> bool:  # once the node has heard of the new master
                with group.client(master) as back, suppress(ResponseError):
                    back.execute_command("CLUSTER", "REPLICATE", group.node_id(replica))
                    return True
                return False

            group.wait("the failed node to join again as a replica", replicating)
            group.wait("it to follow the new master", lambda: group.replica_of(replica) == master)
            # The node that came back is still catching up with its new master: a draw its
            # WAIT cannot confirm in time is refused (503, its number skipped), so each is
            # retried as a client would; what counts is that no acknowledged number returns.
            after = [
                (await _eventually(lambda: numbers.draw_message(app, 1))).number for _ in range(5)
            ]
            assert not set(after) & set(acknowledged), (acknowledged, after)
            assert after == sorted(after) and after[0] > max(acknowledged)
        finally:
            await numbers.drop()
            await numbers.close()
