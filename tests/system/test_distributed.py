"""Distributed mode for real: two API processes and two workers on MySQL, Redis, RabbitMQ and
Elasticsearch, driven by concurrent clients over both APIs."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from graphql_chat.adapters.rabbitmq.publisher import RabbitPipeline
from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.domain import ChatCreated, MessageWritten, new_token
from tests.conftest import distributed_settings
from tests.engine_control import (
    restart_services,
    start_rabbitmq,
    stop_elasticsearch,
    stop_mysql,
    stop_rabbitmq,
    stop_redis,
)
from tests.system.conftest import (
    CREATE,
    Cluster,
    all_messages,
    bounded,
    create_message,
    created_again,
    indexed,
    persisted,
)

pytestmark = pytest.mark.system


async def _drive(
    cluster: Cluster, messages: int, chats_with_messages: int, create: Any = None
) -> tuple[str, list[tuple[int, str, int]]]:
    create = create or create_message
    apis = [api.url for api in cluster.apis]
    limits = httpx.Limits(max_connections=128, max_keepalive_connections=128)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        token = (await http.post(f"{apis[0]}/api/v1/applications", json={"name": "load"})).json()[
            "token"
        ]
        chats = await bounded(
            [
                http.post(f"{apis[i % 2]}/api/v1/applications/{token}/chats", json={})
                for i in range(100)
            ]
        )
        assert sorted(r.json()["number"] for r in chats) == list(range(1, 101))
        plan = [(1 + i % chats_with_messages, f"body {i} token{i}x") for i in range(messages)]
        numbers = await bounded(
            [create(http, apis[i % 2], token, c, b) for i, (c, b) in enumerate(plan)]
        )
    return token, [(c, b, n) for (c, b), n in zip(plan, numbers, strict=True)]


async def _verify(cluster: Cluster, token: str, created: list[tuple[int, str, int]]) -> None:
    api = cluster.apis[1].url
    chats = sorted({c for c, _, _ in created})
    per_chat = {c: sorted(n for cc, _, n in created if cc == c) for c in chats}
    for chat, numbers in per_chat.items():
        assert numbers == list(range(1, len(numbers) + 1)), f"chat {chat}: gaps or duplicates"
    async with httpx.AsyncClient(timeout=30) as http:
        await persisted(http, api, token, {c: len(n) for c, n in per_chat.items()})
        for chat in chats:
            stored = await all_messages(http, api, token, chat)
            assert stored == {n: b for c, b, n in created if c == chat}
        app = (await http.get(f"{api}/api/v1/applications/{token}")).json()
        assert app["chats_count"] == 100
        await indexed(cluster.settings, len(created))
        for chat, body, number in random.sample(created, 20):
            found = await http.get(
                f"{api}/api/v1/applications/{token}/chats/{chat}/messages/search",
                params={"q": body.split()[-1].upper()},
            )
            assert [(m["number"], m["body"]) for m in found.json()] == [(number, body)]


async def test_two_apis_two_workers_number_and_persist_exactly_once(cluster: Cluster) -> None:
    token, created = await _drive(cluster, messages=2000, chats_with_messages=10)
    await _verify(cluster, token, created)


async def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(cluster: Cluster) -> None:
    async def kill_during_load() -> None:
        await asyncio.sleep(1.5)
        cluster.workers[0].kill()
        cluster.add_worker()

    killer = asyncio.create_task(kill_during_load())
    token, created = await _drive(cluster, messages=2000, chats_with_messages=10)
    await killer
    killed = cluster.workers[0].process
    assert killed is not None and killed.returncode == -9
    await _verify(cluster, token, created)


async def _acknowledged_creates(
    http: httpx.AsyncClient, api: str, token: str, count: int, label: str
) -> dict[int, str]:
    done: dict[int, str] = {}
    for i in range(count):
        body = f"{label} {i}"
        done[await create_message(http, api, token, 1, body)] = body
    return done


async def _setup_chat(http: httpx.AsyncClient, api: str) -> str:
    token: str = (await http.post(f"{api}/api/v1/applications", json={"name": "f"})).json()["token"]
    assert (await http.post(f"{api}/api/v1/applications/{token}/chats", json={})).status_code == 201
    return token


async def test_rabbitmq_stopped_creates_fail_fast_and_service_resumes(cluster: Cluster) -> None:
    api = cluster.apis[0].url
    async with httpx.AsyncClient(timeout=30) as http:
        token = await _setup_chat(http, api)
        acknowledged = await _acknowledged_creates(http, api, token, 50, "before")
        stop_rabbitmq()
        try:
            started = time.monotonic()
            refused = await http.post(
                f"{api}/api/v1/applications/{token}/chats/1/messages", json={"body": "during"}
            )
            assert time.monotonic() - started < 10
            assert refused.status_code == 503
            assert refused.headers["retry-after"].isdigit()
            assert refused.json()["error"]["code"] == "UNAVAILABLE"
            variables = {"t": token, "c": 1, "b": "during"}
            result = (
                await http.post(f"{api}/graphql", json={"query": CREATE, "variables": variables})
            ).json()
            assert [e["extensions"]["code"] for e in result["errors"]] == ["UNAVAILABLE"]
            reads = await http.get(f"{api}/api/v1/applications/{token}/chats/1")
            assert reads.status_code == 200
            health = await http.get(f"{api}/health")
            assert health.status_code == 503
            assert health.json()["pipeline"] != "ok" and health.json()["store"] == "ok"
        finally:
            start_rabbitmq()
        acknowledged[await created_again(http, api, token, "after")] = "after"
        acknowledged.update(await _acknowledged_creates(http, api, token, 20, "later"))
        await persisted(http, api, token, {1: len(acknowledged)})
        assert await all_messages(http, api, token, 1) == acknowledged


async def test_elasticsearch_stopped_persistence_goes_on_and_search_catches_up(
    cluster: Cluster,
) -> None:
    api = cluster.apis[1].url
    async with httpx.AsyncClient(timeout=30) as http:
        token = await _setup_chat(http, api)
        acknowledged = await _acknowledged_creates(http, api, token, 20, "before")
        stop_elasticsearch()
        try:
            acknowledged.update(await _acknowledged_creates(http, api, token, 50, "during"))
            await persisted(http, api, token, {1: len(acknowledged)})
            search = f"{api}/api/v1/applications/{token}/chats/1/messages/search"
            refused = await http.get(search, params={"q": "during"})
            assert refused.status_code == 503 and "retry-after" in refused.headers
        finally:
            restart_services()
        deadline = time.monotonic() + 90
        while True:
            found = await http.get(search, params={"q": "during", "limit": 100})
            if found.status_code == 200 and len(found.json()) == 50:
                break
            assert time.monotonic() < deadline, f"search did not catch up: {found.text[:200]}"
            await asyncio.sleep(0.5)
        assert await all_messages(http, api, token, 1) == acknowledged


async def test_mysql_stopped_writes_go_on_everywhere_and_workers_catch_up(
    cluster: Cluster,
) -> None:
    """With MySQL down, creates are accepted in every chat, including new chats and their
    first messages, on an API process that never saw the application; REST search answers
    for chats the process has looked up; reads answer 503; nothing is lost."""
    api, other = (a.url for a in cluster.apis)
    async with httpx.AsyncClient(timeout=30) as http:
        token = await _setup_chat(http, api)
        acknowledged = await _acknowledged_creates(http, api, token, 20, "before")
        await persisted(http, api, token, {1: 20})
        search = f"{api}/api/v1/applications/{token}/chats/1/messages/search"
        deadline = time.monotonic() + 30
        while len((await http.get(search, params={"q": "before", "limit": 100})).json()) < 20:
            assert time.monotonic() < deadline, "not searchable in time"
            await asyncio.sleep(0.2)
        stop_mysql()
        try:
            refused = await http.get(f"{api}/api/v1/applications/{token}/chats/1")
            assert refused.status_code == 503 and "retry-after" in refused.headers
            # Creates touch only Redis and RabbitMQ: they are still accepted.
            acknowledged.update(await _acknowledged_creates(http, api, token, 30, "during"))
            new_chat = await http.post(f"{other}/api/v1/applications/{token}/chats", json={})
            assert new_chat.status_code == 201, new_chat.text
            chat = new_chat.json()["number"]
            first = await http.post(
                f"{other}/api/v1/applications/{token}/chats/{chat}/messages",
                json={"body": "first in a new chat"},
            )
            assert first.status_code == 201 and first.json()["number"] == 1, first.text
            found = await http.get(search, params={"q": "before", "limit": 100})
            assert found.status_code == 200 and len(found.json()) == 20, found.text
            health = await http.get(f"{api}/health/ready")
            assert health.status_code == 503 and health.json()["store"] != "ok"
        finally:
            restart_services()
        await persisted(http, api, token, {1: len(acknowledged), chat: 1})
        assert await all_messages(http, api, token, 1) == acknowledged
        assert await all_messages(http, api, token, chat) == {1: "first in a new chat"}


async def test_redis_stopped_creates_fail_fast_reads_and_search_go_on(cluster: Cluster) -> None:
    api = cluster.apis[1].url
    async with httpx.AsyncClient(timeout=30) as http:
        token = await _setup_chat(http, api)
        acknowledged = await _acknowledged_creates(http, api, token, 10, "before")
        await persisted(http, api, token, {1: 10})
        search = f"{api}/api/v1/applications/{token}/chats/1/messages/search"
        stop_redis()
        try:
            started = time.monotonic()
            refused = await http.post(
                f"{api}/api/v1/applications/{token}/chats/1/messages", json={"body": "during"}
            )
            assert refused.status_code == 503 and refused.headers["retry-after"].isdigit()
            assert time.monotonic() - started < 10
            assert (await http.get(f"{api}/api/v1/applications/{token}/chats/1")).status_code == 200
            assert (await http.get(search, params={"q": "before"})).status_code == 200
            health = await http.get(f"{api}/health/ready")
            assert health.status_code == 503 and health.json()["numbers"] != "ok"
        finally:
            restart_services()
        # Its data survived (append-only file): numbering goes on without a recovery.
        assert await created_again(http, api, token, "after") == 11
        acknowledged[11] = "after"
        await persisted(http, api, token, {1: 11})
        assert await all_messages(http, api, token, 1) == acknowledged


async def test_worker_stops_cleanly_on_sigterm_and_hands_back_the_rest(tmp_path: Path) -> None:
    """SIGTERM: the worker stops consuming, finishes its batch and exits 0; what it did not
    take stays queued for the next worker; nothing is lost or applied twice."""
    async with distributed_settings() as settings:
        cluster = Cluster(settings, tmp_path)
        store = SqlStore(settings.database_url)
        pipeline = RabbitPipeline(str(settings.rabbitmq_url), settings.queue_name)
        await pipeline.start()
        try:
            app = (await store.insert_application(new_token(), "sigterm")).id
            await pipeline.submit(ChatCreated(app, 1))
            await asyncio.gather(
                *[pipeline.submit(MessageWritten(app, 1, n, f"m{n}", n)) for n in range(1, 20_001)]
            )
            worker = cluster.add_worker()
            deadline = time.monotonic() + 60
            while not (await store.chats_by_number([(app, 1)])).get((app, 1)):
                assert time.monotonic() < deadline, "the worker did not start consuming"
                await asyncio.sleep(0.05)
            assert worker.process is not None
            worker.process.send_signal(signal.SIGTERM)
            assert worker.process.wait(timeout=30) == 0
            stored = (await store.chats_by_number([(app, 1)]))[(app, 1)].messages_count
            assert stored < 20_000, "the worker finished everything before the signal"
            drain = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "graphql_chat",
                "worker",
                "--burst",
                env={**os.environ, **cluster.environment, "LOG_LEVEL": "warning"},
                stderr=asyncio.subprocess.PIPE,
            )
            _, errors = await asyncio.wait_for(drain.communicate(), 180)
            assert drain.returncode == 0, errors.decode()[-2000:]
            chat = (await store.chats_by_number([(app, 1)]))[(app, 1)]
            assert chat.messages_count == 20_000
            page = (await store.list_messages([chat.id], 19_990, 100))[chat.id]
            assert [m.number for m in page] == list(range(19_991, 20_001))
        finally:
            cluster.stop()
            await pipeline.close()
            await store.close()
