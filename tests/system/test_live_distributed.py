"""Subscriptions in the distributed mode: two API processes, two workers, MySQL, Redis,
RabbitMQ and Elasticsearch, all real. A subscriber on one API process hears of what was
created through the other; a worker killed with -9 mid-stream, or the live feed's connection
cut, loses nothing and repeats nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from tests.conftest import distributed_settings
from tests.engines import engine_url
from tests.system.conftest import Cluster, bounded, create_message
from tests.system.live_client import Collector, LiveClient, new_chat

pytestmark = pytest.mark.system


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """Two API processes and two workers, whose live sequences hold a gap open for 3 s before
    they read it from the store and skip what is still missing (LIVE_GAP_WAIT_MS; 500 ms by
    default). A loaded 2-core machine can take longer than 500 ms from acceptance to the
    feed, and these tests check the order the sequences keep while writes arrive within it."""
    async with distributed_settings() as settings:
        started = Cluster(settings, tmp_path)
        for api in started.apis:
            assert api.environment is not None
            api.environment["LIVE_GAP_WAIT_MS"] = "3000"
        started.start()
        try:
            yield started
        finally:
            started.stop()


async def _subscribers(cluster: Cluster, token: str) -> list[Collector]:
    collectors = []
    for api in cluster.apis:
        client = await LiveClient.open(api.url)
        await client.messages(token, 1, after=0)
        collectors.append(Collector(client))
    return collectors


async def _each_got_once(
    collectors: list[Collector], acknowledged: set[int], within: float
) -> None:
    """Every subscriber got each acknowledged message's CREATED once, and nothing else."""
    for collector in collectors:
        await collector.until(len(acknowledged), within=within)
    await asyncio.sleep(1)  # nothing more may come
    for collector in collectors:
        created = collector.created()
        assert len(created) == len(set(created)), "a message was sent twice"
        assert set(created) == acknowledged
        await collector.close()


def _updated(collector: Collector) -> Callable[[], bool]:
    return lambda: ("UPDATED", 7, "edited") in collector.events


async def _creates(http: httpx.AsyncClient, cluster: Cluster, token: str, count: int) -> set[int]:
    """Creates spread over both API processes, 20 at a time; the numbers acknowledged."""
    calls = [
        create_message(http, cluster.apis[i % 2].url, token, 1, f"message {i}")
        for i in range(count)
    ]
    return set(await bounded(calls, 20))


async def test_every_api_process_delivers_what_any_of_them_accepted(cluster: Cluster) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        token = await new_chat(http, cluster.apis[0].url)
        collectors = await _subscribers(cluster, token)
        await asyncio.sleep(0.2)
        acknowledged = await _creates(http, cluster, token, 400)
        assert acknowledged == set(range(1, 401))
        for collector in collectors:
            await collector.until(400, within=60)
        await asyncio.sleep(0.5)  # nothing more may come
        for collector in collectors:
            assert collector.created() == list(range(1, 401))  # once each, in number order
            assert collector.others == []
        # Edits made through one process reach subscribers of both.
        response = await http.put(
            f"{cluster.apis[1].url}/api/v1/applications/{token}/chats/1/messages/7",
            json={"body": "edited"},
        )
        assert response.status_code == 200
        for collector in collectors:
            await collector.holds(_updated(collector))
            await collector.close()


async def test_a_worker_killed_mid_stream_repeats_nothing_and_loses_nothing(
    cluster: Cluster,
) -> None:
    async with httpx.AsyncClient(timeout=60) as http:
        token = await new_chat(http, cluster.apis[0].url)
        collectors = await _subscribers(cluster, token)
        await asyncio.sleep(0.2)
        writing = asyncio.ensure_future(_creates(http, cluster, token, 600))
        await asyncio.sleep(0.5)
        cluster.workers[0].kill()  # its unacknowledged batches are redelivered
        await _each_got_once(collectors, await writing, within=90)


async def test_a_cut_feed_connection_is_caught_up_from_the_store(cluster: Cluster) -> None:
    redis = Redis.from_url(engine_url("REDIS_URL"))
    try:
        async with httpx.AsyncClient(timeout=60) as http:
            token = await new_chat(http, cluster.apis[0].url)
            collectors = await _subscribers(cluster, token)
            await asyncio.sleep(0.2)
            writing = asyncio.ensure_future(_creates(http, cluster, token, 400))
            for _ in range(3):
                await asyncio.sleep(0.3)
                # Every subscriber connection of Redis is cut, ours among others': pub/sub
                # keeps nothing for them, so what was published meanwhile is gone.
                await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")  # type: ignore[no-untyped-call]
            await _each_got_once(collectors, await writing, within=60)
    finally:
        await redis.aclose()


async def test_a_chat_still_queued_is_waited_for(cluster: Cluster) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        for worker in cluster.workers:
            worker.pause()  # the chat is acknowledged (queued) but not stored
        try:
            token = await new_chat(http, cluster.apis[0].url)
            client = await LiveClient.open(cluster.apis[1].url)
            await client.messages(token, 1, after=0)
            live = Collector(client)
            await asyncio.sleep(1)
        finally:
            for worker in cluster.workers:
                worker.resume()
        await create_message(http, cluster.apis[0].url, token, 1, "first")
        await live.until(1)
        assert live.events == [("CREATED", 1, "first")] and live.others == []
        # A chat that never comes: NOT_FOUND once the wait is over.
        await client.messages(token, 2)
        await live.holds(lambda: bool(live.others), within=15)
        assert live.others[0]["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        await live.close()
