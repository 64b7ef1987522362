"""Numbers on a Redis master watched by Sentinel (`redis+sentinel://`): draws go on after a
failover, and with `REDIS_WAIT_REPLICAS` a failover to a replica that missed the last draws
reuses no acknowledged number (real servers: a master, its replica, a Sentinel)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from graphql_chat.adapters import redis_client
from graphql_chat.adapters.redis_feed import RedisFeed
from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.domain import UNKNOWN_TIME, new_token
from graphql_chat.errors import ConfigurationError, Unavailable
from graphql_chat.ports import Changes, IndexedMessage
from tests.numbering import TestNumbers, redis_numbering
from tests.redis_group import RedisGroup, redis_group

MYSQL = pytest.mark.parametrize("store", ["mysql"], indirect=True)


async def _drained() -> bool:
    return True


@pytest.fixture
def group(tmp_path: Path) -> Iterator[RedisGroup]:
    with redis_group(tmp_path) as started:
        yield started


@pytest.fixture
async def numbers(store: SqlStore, group: RedisGroup) -> AsyncIterator[TestNumbers]:
    numbers = redis_numbering(
        group.url, store, _drained, "sentinel", replicas=1, replicas_timeout_ms=200
    )
    await asyncio.wait_for(numbers.recover(), 10)
    try:
        yield numbers
    finally:
        await numbers.close()


async def _draw(numbers: TestNumbers, app: int, within: float = 30) -> int:
    """The next number of chat 1, retried while Redis is unavailable (a failover)."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            return (await numbers.draw_message(app, 1)).number
        except Unavailable:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _failed_over(group: RedisGroup, to: int) -> None:
    """Until the failover to `to` is over: Sentinel names `to` to clients as soon as it is
    promoted, but switches its own record of the master only at the end (the old master,
    back before that, could be taken for the master still and `to` made its replica)."""
    for _ in range(300):
        if await asyncio.to_thread(group.master_port) == to and (
            await asyncio.to_thread(group.recorded_master_port) == to
        ):
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("the Sentinel did not fail over")


@MYSQL
async def test_draws_go_on_after_a_failover_and_reuse_nothing(
    store: SqlStore, numbers: TestNumbers, group: RedisGroup
) -> None:
    app = (await store.insert_application(new_token(), "a")).id
    assert (await numbers.next_chat(app)).number == 1
    first = await asyncio.gather(*(numbers.draw_message(app, 1) for _ in range(50)))
    assert sorted(d.number for d in first) == list(range(1, 51))
    with group.client(group.sentinel) as sentinel:
        sentinel.execute_command("SENTINEL", "FAILOVER", "gc-test")
    await _failed_over(group, group.replica)
    after = [await _draw(numbers, app) for _ in range(20)]
    # Draws tried while the replica was being promoted were refused (no replica held them)
    # and their numbers are not used again: a gap, never a reuse.
    assert after == sorted(set(after)) and after[0] > 50, after


@MYSQL
async def test_a_draw_no_replica_holds_is_not_acknowledged_so_a_failover_reuses_none(
    store: SqlStore, numbers: TestNumbers, group: RedisGroup
) -> None:
    """The unfavourable interleaving: the replica stops receiving (stopped, its link cut by
    the master), draws go on at the master, the master dies, the stale replica is promoted.
    Without waiting for a replica, the draws made meanwhile would have been acknowledged and
    then handed out again by the new master."""
    app = (await store.insert_application(new_token(), "a")).id
    await numbers.next_chat(app)
    acknowledged = [(await numbers.draw_message(app, 1)).number for _ in range(5)]
    group.pause(group.replica)
    with group.client(group.master) as master:
        master.execute_command("CLIENT", "KILL", "TYPE", "replica")
    for _ in range(3):  # applied by the master; no replica holds them: not acknowledged
        with pytest.raises(Unavailable, match="replica"):
            await numbers.draw_message(app, 1)
    group.kill(group.master)
    group.resume(group.replica)
    await _failed_over(group, group.replica)
    # The new master needs a replica of its own to acknowledge draws: the failed server comes
    # back, empty, as its replica.
    group.restart_empty(group.master, following=group.replica)
    await asyncio.to_thread(
        group.wait, "the old master to follow the new", lambda: group.replicas_of(group.replica)
    )
    acknowledged += [await _draw(numbers, app) for _ in range(5)]
    assert len(set(acknowledged)) == len(acknowledged) == 10, acknowledged
    # Draws tried before the new master had a replica were refused too: gaps, never a reuse.
    assert acknowledged[:5] == [1, 2, 3, 4, 5] and acknowledged[5:] == sorted(acknowledged[5:])


async def test_the_live_feed_reaches_listeners_through_the_sentinels_master(
    group: RedisGroup,
) -> None:
    channel = "sentinel-feed"
    listening, publishing = RedisFeed(group.url, channel), RedisFeed(group.url, channel)
    heard: list[Changes] = []

    class Listener:
        def changes(self, changes: Changes) -> None:
            heard.append(changes)

        def lost(self) -> None:
            pass

    try:
        await listening.listen(Listener())
        await publishing.ping()
        message = IndexedMessage(7, 1, "over the master", 1, UNKNOWN_TIME, UNKNOWN_TIME)
        await publishing.publish(Changes(created=[message]))
        for _ in range(100):
            if heard:
                break
            await asyncio.sleep(0.05)
        assert [m.body for c in heard for m in c.created] == ["over the master"]
    finally:
        await listening.close()
        await publishing.close()


def test_a_sentinel_url_must_name_its_service() -> None:
    with pytest.raises(ConfigurationError, match="SERVICE"):
        redis_client.connect("redis+sentinel://127.0.0.1:26379")
