"""Numbers survive any fault: Redis loses its data while the workers run, stall or wait on a
locked database; two API processes and two workers under concurrent load, every acknowledged
write checked afterwards.

The recovery reads no queue statistics: every run here has `RABBITMQ_MANAGEMENT_URL` pointing
at a port nothing listens on, as a deployment that still sets it would.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from graphql_chat.adapters import redis_client
from graphql_chat.config import Settings
from tests.conftest import distributed_settings
from tests.engine_control import restart_redis_empty
from tests.system.conftest import Cluster, all_messages, created_again, indexed, persisted

pytestmark = pytest.mark.system

CLIENTS = 16
MAYBE = "may have been accepted"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with distributed_settings() as settings:
        started = Cluster(settings, tmp_path)
        for process in [*started.apis, *started.workers]:
            assert process.environment is not None
            process.environment["RABBITMQ_MANAGEMENT_URL"] = "http://guest:guest@127.0.0.1:9"
        started.start()
        try:
            yield started
        finally:
            started.stop()


@dataclass
class Ledger:
    """What the clients were told. `messages` holds, per (chat, number), the bodies the
    stored one may be: the last acknowledged, and any later write whose outcome is unknown."""

    token: str
    chats: set[int]
    messages: dict[tuple[int, int], set[str]] = field(default_factory=dict)
    twice: list[str] = field(default_factory=list)
    refused: int = 0
    unknown: int = 0
    loss_at: float | None = None  # when the loss was over (Redis flushed, or up again empty)
    back_at: float | None = None  # the first create sent after the loss and acknowledged

    def acknowledged(self, sent: float) -> None:
        if self.loss_at is not None and sent > self.loss_at and self.back_at is None:
            self.back_at = time.monotonic()


async def _client(
    http: httpx.AsyncClient, apis: list[str], ledger: Ledger, stop: asyncio.Event, seed: int
) -> None:
    rng = random.Random(seed)
    own: list[tuple[int, int]] = []
    i = 0
    while not stop.is_set():
        i += 1
        api = rng.choice(apis)
        base = f"{api}/api/v1/applications/{ledger.token}/chats"
        roll = rng.random()
        sent = time.monotonic()
        if roll < 0.08:
            response = await http.post(base, json={})
            if response.status_code == 201:
                number = response.json()["number"]
                if number in ledger.chats:
                    ledger.twice.append(f"chat {number}")
                ledger.chats.add(number)
                ledger.acknowledged(sent)
        elif roll < 0.2 and own:
            chat, number = rng.choice(own)
            body = f"edit {seed}.{i}"
            try:
                # An edit's answer reads the message's time from the store, which a locked
                # database holds up: give up on it, so that every client goes on asking (and
                # meets the loss) instead of all of them waiting for the lock.
                response = await http.put(
                    f"{base}/{chat}/messages/{number}", json={"body": body}, timeout=2
                )
            except httpx.TimeoutException:
                ledger.messages[(chat, number)].add(body)  # it may still be applied
                continue
            if response.status_code == 200:
                ledger.messages[(chat, number)] = {body}
            elif MAYBE in response.text:
                ledger.messages[(chat, number)].add(body)
        else:
            chat = rng.choice(sorted(ledger.chats))
            body = f"body {seed}.{i}"
            response = await http.post(f"{base}/{chat}/messages", json={"body": body})
            if response.status_code == 201:
                number = response.json()["number"]
                if (chat, number) in ledger.messages:
                    ledger.twice.append(f"message {number} of chat {chat}")
                ledger.messages[(chat, number)] = {body}
                own.append((chat, number))
                ledger.acknowledged(sent)
        if response.status_code == 503:
            assert response.headers["retry-after"].isdigit()
            ledger.refused += 1
            ledger.unknown += MAYBE in response.text
            await asyncio.sleep(0.05)
        else:
            assert response.status_code in (200, 201), response.text


async def _settled(http: httpx.AsyncClient, api: str, ledger: Ledger, within: float = 90) -> None:
    """Every acknowledged write stored at its number with an allowed body; counts exact."""
    deadline = time.monotonic() + within
    while True:
        problems: list[str] = []
        stored_chats = {
            c["number"]: c["messages_count"]
            for c in await _pages(http, f"{api}/api/v1/applications/{ledger.token}/chats")
        }
        app = (await http.get(f"{api}/api/v1/applications/{ledger.token}")).json()
        if app["chats_count"] != len(stored_chats):
            problems.append(f"chats_count {app['chats_count']} != {len(stored_chats)}")
        if not ledger.chats <= set(stored_chats):
            problems.append(f"chats missing: {sorted(ledger.chats - set(stored_chats))[:5]}")
        for chat, count in sorted(stored_chats.items()):
            stored = await all_messages(http, api, ledger.token, chat)
            if count != len(stored):
                problems.append(f"chat {chat}: messages_count {count} != {len(stored)}")
            for (c, number), bodies in ledger.messages.items():
                if c == chat and stored.get(number) not in bodies:
                    problems.append(f"chat {chat} message {number}: {stored.get(number)!r}")
        if not problems:
            return
        assert time.monotonic() < deadline, problems[:10]
        await asyncio.sleep(0.5)


async def _pages(http: httpx.AsyncClient, url: str) -> list[dict[str, int]]:
    found: list[dict[str, int]] = []
    next_url: str | None = f"{url}?limit=100"
    while next_url:
        response = await http.get(next_url)
        assert response.status_code == 200, response.text
        found += response.json()
        next_url = response.links["next"]["url"] if "next" in response.links else None
    return found


async def _indexed(cluster: Cluster, http: httpx.AsyncClient, api: str, ledger: Ledger) -> None:
    chats = await _pages(http, f"{api}/api/v1/applications/{ledger.token}/chats")
    expected = sum(c["messages_count"] for c in chats)
    await indexed(cluster.settings, expected)


class _LockedDatabase:
    """A long migration: LOCK TABLES holds the chats and messages tables."""

    def __init__(self, url: str) -> None:
        self._engine = create_async_engine(url)
        self._conn: AsyncConnection | None = None

    async def lock(self) -> None:
        self._conn = await self._engine.connect()
        await self._conn.execute(text("LOCK TABLES chats WRITE, messages WRITE"))

    async def unlock(self) -> None:
        assert self._conn is not None
        await self._conn.execute(text("UNLOCK TABLES"))
        await self._conn.close()
        await self._engine.dispose()


async def _flush(cluster: Cluster) -> None:
    redis = Redis.from_url(str(cluster.settings.redis_url))
    try:
        await redis.flushall()
    finally:
        await redis.aclose()


async def _restart_empty(_: Cluster) -> None:
    await asyncio.to_thread(restart_redis_empty)


LOSSES: dict[str, Callable[[Cluster], Awaitable[None]]] = {
    "flushed": _flush,
    "restarted-empty": _restart_empty,
}


async def _setup(http: httpx.AsyncClient, api: str, chats: int) -> str:
    token: str = (await http.post(f"{api}/api/v1/applications", json={"name": "f"})).json()["token"]
    for _ in range(chats):
        assert (
            await http.post(f"{api}/api/v1/applications/{token}/chats", json={})
        ).status_code == 201
    return token


@pytest.mark.parametrize("workers", ["running", "stalled", "database-locked"])
@pytest.mark.parametrize("loss", sorted(LOSSES))
async def test_redis_data_loss_under_load_reuses_no_number(
    cluster: Cluster, loss: str, workers: str
) -> None:
    apis = [api.url for api in cluster.apis]
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    locked = _LockedDatabase(cluster.settings.database_url)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        ledger = Ledger(await _setup(http, apis[0], 5), set(range(1, 6)))
        stop = asyncio.Event()
        clients = [
            asyncio.create_task(_client(http, apis, ledger, stop, seed)) for seed in range(CLIENTS)
        ]
        try:
            await asyncio.sleep(1.5)
            if workers == "stalled":
                for worker in cluster.workers:
                    worker.pause()
            elif workers == "database-locked":
                await locked.lock()
            await asyncio.sleep(1.0)  # acknowledged writes pile up in the queue
            await LOSSES[loss](cluster)
            ledger.loss_at = time.monotonic()
            await asyncio.sleep(3.0)
            if workers == "stalled":
                for worker in cluster.workers:
                    worker.resume()
            elif workers == "database-locked":
                await locked.unlock()
            released = time.monotonic()
            deadline = released + 30
            while ledger.back_at is None or time.monotonic() < ledger.back_at + 2:
                assert time.monotonic() < deadline, "creates did not resume after the loss"
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await asyncio.gather(*clients)
        assert ledger.refused > 0, "the loss was never noticed: nothing was exercised"
        assert ledger.twice == [], ledger.twice
        await _settled(http, apis[1], ledger)
        await _indexed(cluster, http, apis[1], ledger)
        assert ledger.back_at is not None and ledger.loss_at is not None
        since = "the loss" if workers == "running" else "the workers were released"
        back = ledger.back_at - (ledger.loss_at if workers == "running" else released)
        print(
            f"\n{loss}/{workers}: {len(ledger.messages)} messages, {len(ledger.chats)} chats "
            f"acknowledged; {ledger.refused} refused ({ledger.unknown} outcome unknown); creates "
            f"back {back:.2f} s after {since}"
        )


async def test_the_six_step_sequence_reuses_no_number(cluster: Cluster) -> None:
    """Workers stall with 20 acknowledged creates (and chats) queued; Redis is flushed; no
    create succeeds until the workers resume and everything queued is stored, then numbering
    continues after it; readiness says why meanwhile."""
    api, other = (a.url for a in cluster.apis)
    async with httpx.AsyncClient(timeout=30) as http:
        token = await _setup(http, api, 1)
        chat_url = f"{api}/api/v1/applications/{token}/chats"
        assert (
            await http.post(f"{chat_url}/1/messages", json={"body": "first"})
        ).status_code == 201
        await persisted(http, api, token, {1: 1})
        await asyncio.sleep(3)  # the queue has been idle a few seconds
        for worker in cluster.workers:
            worker.pause()
        acknowledged = {1: "first"}
        for i in range(20):
            response = await http.post(
                f"{[api, other][i % 2]}/api/v1/applications/{token}/chats/1/messages",
                json={"body": f"queued {i}"},
            )
            assert response.status_code == 201, response.text
            acknowledged[response.json()["number"]] = f"queued {i}"
        assert sorted(acknowledged) == list(range(1, 22))
        queued_chats = [(await http.post(chat_url, json={})).json()["number"] for _ in range(20)]
        assert queued_chats == list(range(2, 22))
        await _flush(cluster)
        refused_until = time.monotonic() + 4
        while time.monotonic() < refused_until:
            for base in (api, other):
                created = await http.post(
                    f"{base}/api/v1/applications/{token}/chats/1/messages", json={"body": "x"}
                )
                assert created.status_code == 503, created.text
                assert (
                    await http.post(f"{base}/api/v1/applications/{token}/chats", json={})
                ).status_code == 503
            await asyncio.sleep(0.2)
        ready = await http.get(f"{api}/health/ready")
        assert ready.status_code == 503 and "recover" in ready.json()["numbers"], ready.text
        assert (await http.get(f"{api}/health/live")).status_code == 200
        for worker in cluster.workers:
            worker.resume()
        assert await created_again(http, api, token, "after") == 22
        acknowledged[22] = "after"
        assert (await http.post(chat_url, json={})).json()["number"] == 22
        assert (await http.get(f"{api}/health/ready")).status_code == 200
        await persisted(http, api, token, {1: 22})
        assert await all_messages(http, other, token, 1) == acknowledged
        app = (await http.get(f"{api}/api/v1/applications/{token}")).json()
        assert app["chats_count"] == 22


async def test_a_new_deployment_accepts_creates_at_once(tmp_path: Path) -> None:
    """Fresh Redis, fresh queue, fresh database: the first create after start succeeds."""
    async with distributed_settings() as settings:
        cluster = Cluster(settings, tmp_path)
        cluster.start()
        try:
            async with httpx.AsyncClient(timeout=30) as http:
                token = await _setup(http, cluster.apis[0].url, 1)
                started = time.monotonic()
                response = await http.post(
                    f"{cluster.apis[1].url}/api/v1/applications/{token}/chats/1/messages",
                    json={"body": "hello"},
                )
                assert response.status_code == 201, response.text
                assert time.monotonic() - started < 1
        finally:
            cluster.stop()


async def _application_ids(settings: Settings, tokens: list[str]) -> list[int]:
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT token, id FROM applications"))
            ids = {token: int(app_id) for token, app_id in rows.all()}
    finally:
        await engine.dispose()
    return [ids[token] for token in tokens]


async def _masters(settings: Settings, app_ids: list[int]) -> list[tuple[str, int]]:
    """The master holding each application's numbering slot."""
    client = redis_client.connect(str(settings.redis_url))
    assert isinstance(client, RedisCluster)
    try:
        await client.initialize()
        return [
            (node.host, node.port)
            for app_id in app_ids
            for node in [client.get_node_from_key(f"{settings.redis_key_prefix}:{{a:{app_id}}}")]
        ]
    finally:
        await redis_client.close(client)


@pytest.mark.parametrize("workers", ["running", "stalled"])
async def test_a_redis_cluster_shard_lost_under_load_recovers_alone(
    tmp_path: Path, workers: str
) -> None:
    """Numbering on a real Redis Cluster (three masters), two API processes and two workers,
    clients writing to several applications; one master loses its data. The applications
    whose slots it held are refused until every write of theirs accepted before is stored
    (with `stalled` workers: until the workers resume), then number on past them; the
    others are never refused. No number is handed out twice, no acknowledged write lost."""
    async with distributed_settings("REDIS_CLUSTER_URL") as settings:
        cluster = Cluster(settings, tmp_path)
        cluster.start()
        try:
            await _shard_lost_under_load(cluster, workers)
        finally:
            cluster.stop()


async def _shard_lost_under_load(cluster: Cluster, workers: str) -> None:
    apis = [api.url for api in cluster.apis]
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        ledgers: list[Ledger] = []
        masters: list[tuple[str, int]] = []
        while len(ledgers) < 4 or len(set(masters)) < 2:  # applications on two masters at least
            ledgers.append(Ledger(await _setup(http, apis[0], 3), set(range(1, 4))))
            ids = await _application_ids(cluster.settings, [ledger.token for ledger in ledgers])
            masters = await _masters(cluster.settings, ids)
            assert len(ledgers) < 30, "every application landed on one master"
        lost_master = masters[0]
        lost = [ledger for ledger, m in zip(ledgers, masters, strict=True) if m == lost_master]
        kept = [ledger for ledger in ledgers if ledger not in lost]
        stop = asyncio.Event()
        clients = [
            asyncio.create_task(_client(http, apis, ledgers[seed % len(ledgers)], stop, seed))
            for seed in range(CLIENTS)
        ]
        try:
            await asyncio.sleep(1.5)
            if workers == "stalled":
                for worker in cluster.workers:
                    worker.pause()
                await asyncio.sleep(1.0)  # acknowledged writes pile up in the queue
            async with Redis(host=lost_master[0], port=lost_master[1]) as redis:
                await redis.flushall()
            for ledger in lost:
                ledger.loss_at = time.monotonic()
            await asyncio.sleep(3.0)
            if workers == "stalled":
                assert all(ledger.back_at is None for ledger in lost), "recovered undrained"
                for worker in cluster.workers:
                    worker.resume()
            deadline = time.monotonic() + 30
            while any(ledger.back_at is None for ledger in lost):
                assert time.monotonic() < deadline, "creates did not resume after the loss"
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)
        finally:
            stop.set()
            await asyncio.gather(*clients)
        for ledger in lost:
            assert ledger.refused > 0, "the loss was never noticed: nothing was exercised"
        assert [ledger.refused for ledger in kept] == [0] * len(kept), "a kept shard refused"
        for ledger in ledgers:
            assert ledger.twice == [], ledger.twice
            await _settled(http, apis[1], ledger)
        expected = 0
        for ledger in ledgers:
            chats = await _pages(http, f"{apis[1]}/api/v1/applications/{ledger.token}/chats")
            expected += sum(c["messages_count"] for c in chats)
        await indexed(cluster.settings, expected)
        print(
            f"\nshard lost/{workers}: {sum(len(x.messages) for x in ledgers)} messages "
            f"acknowledged in {len(ledgers)} applications ({len(lost)} lost); "
            f"{sum(x.refused for x in lost)} refused"
        )
