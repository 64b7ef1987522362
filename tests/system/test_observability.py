"""Metrics and logs from real processes: `serve --workers 2` answering /metrics for both of its
processes, a worker serving its own, and the JSON lines that follow one request id."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from graphql_chat.health import HEALTH_SPACING
from tests.conftest import distributed_settings
from tests.metrics_text import samples, value
from tests.system.conftest import Server, environment_of, free_port, persisted

pytestmark = pytest.mark.system

ROUTE = "POST /api/v1/applications/{token}/chats/{chat}/messages"


async def _pings(redis: Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_ping", {}).get("calls", 0))


def json_lines(path: Path) -> list[dict[str, object]]:
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def _pids_following(log: Path) -> set[object]:
    """The processes whose request lines carry a `follow-` id so far (the log is still being
    written: a line not yet whole is skipped)."""
    pids = set()
    for text in log.read_text().splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if isinstance(line, dict) and str(line.get("request_id")).startswith("follow-"):
            pids.add(line.get("pid"))
    return pids


async def test_metrics_and_logs_follow_creates_through_two_api_processes_and_a_worker(
    tmp_path: Path,
) -> None:
    async with distributed_settings() as settings:
        environment = {**environment_of(settings), "LOG_FORMAT": "json", "LOG_LEVEL": "info"}
        api = Server(
            tmp_path / "unused.db",
            free_port(),
            tmp_path / "api.log",
            environment=environment,
            command=("serve", "--workers", "2"),
        )
        worker_port = free_port()
        worker = Server(
            tmp_path / "unused.db",
            free_port(),
            tmp_path / "worker.log",
            environment={**environment, "WORKER_METRICS_PORT": str(worker_port)},
            command=("worker",),
        )
        api.start()
        worker.start()
        try:
            async with httpx.AsyncClient(timeout=10) as http:
                token = (
                    await http.post(f"{api.url}/api/v1/applications", json={"name": "o"})
                ).json()["token"]
                assert (
                    await http.post(f"{api.url}/api/v1/applications/{token}/chats", json={})
                ).status_code == 201
                # Rounds of 40 at once, each on new connections, until both processes have
                # taken some (the kernel hands each connection to either; one round may all go
                # to one).
                creates = 0
                for _ in range(5):
                    async with httpx.AsyncClient(timeout=10) as fresh:
                        answers = await asyncio.gather(
                            *(
                                fresh.post(
                                    f"{api.url}/api/v1/applications/{token}/chats/1/messages",
                                    json={"body": f"m{n}"},
                                    headers={"X-Request-ID": f"follow-{n}"},
                                )
                                for n in range(creates, creates + 40)
                            )
                        )
                    assert [a.status_code for a in answers] == [201] * 40
                    assert {a.headers["x-request-id"] for a in answers} == {
                        f"follow-{n}" for n in range(creates, creates + 40)
                    }
                    creates += 40
                    if len(_pids_following(api.log)) == 2:
                        break
                await persisted(http, api.url, token, {1: creates})

                # Either process answers for both: every create is counted once, whichever
                # process took it.
                for _ in range(4):
                    found = samples((await http.get(f"{api.url}/metrics")).text)
                    assert (
                        value(
                            found,
                            "graphql_chat_requests_total",
                            interface="rest",
                            operation=ROUTE,
                            outcome="ok",
                        )
                        == creates
                    )
                # The worker's own: every create batched, stored, and made searchable.
                deadline = time.monotonic() + 30
                while True:
                    mine = samples((await http.get(f"http://127.0.0.1:{worker_port}/metrics")).text)
                    searchable = value(
                        mine, "graphql_chat_persistence_lag_seconds_count", stage="searchable"
                    )
                    if searchable >= creates or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.2)
                assert value(mine, "graphql_chat_batch_events_sum") >= creates + 1  # and the chat
                assert (
                    value(mine, "graphql_chat_persistence_lag_seconds_count", stage="stored")
                    >= creates
                )
                assert searchable >= creates
                assert value(mine, "graphql_chat_commit_duration_seconds_count") >= 1
                # The worker checks its own dependencies too (the API's scrape does not).
                for dependency in ("store", "numbers", "pipeline", "search", "feed"):
                    assert value(mine, "graphql_chat_dependency_up", dependency=dependency) == 1
                assert value(mine, "graphql_chat_numbering_recovering") == 0

                # A flood of readiness checks (`/health` is public) costs the dependencies one
                # round of checks at a time, not one per request: counted at Redis, which
                # hears one PING per round (the live feed's check).
                assert settings.redis_url
                redis = Redis.from_url(settings.redis_url)
                try:
                    before, started = await _pings(redis), time.monotonic()
                    flood = await asyncio.gather(
                        *(http.get(f"{api.url}/health") for _ in range(300))
                    )
                    assert [r.status_code for r in flood] == [200] * 300
                    # Each of the two processes: a round at most every HEALTH_SPACING (the
                    # metrics' own rounds among them), one more at either end; and a few
                    # PINGs from elsewhere (the worker's round, idle connections' checks).
                    rounds = 2 * ((time.monotonic() - started) / HEALTH_SPACING + 2) + 4
                    assert await _pings(redis) - before <= rounds < 300
                finally:
                    await redis.aclose()
        finally:
            api.stop()
            worker.stop()

    # One JSON line per request, with the client's id; one per worker batch.
    requests = [line for line in json_lines(api.log) if line.get("message") == "request"]
    followed = {
        line["request_id"]: line
        for line in requests
        if str(line.get("request_id")).startswith("follow-")
    }
    assert len(followed) == creates
    # Both processes took some: the count above was of both, from either.
    assert len({line["pid"] for line in followed.values()}) == 2
    line = followed["follow-7"]
    assert (line["interface"], line["operation"], line["status"], line["level"]) == (
        "rest",
        ROUTE,
        201,
        "INFO",
    )
    assert isinstance(line["duration_ms"], float) and "time" in line
    batches = [line for line in json_lines(worker.log) if line.get("message") == "batch"]
    assert sum(int(str(b["events"])) for b in batches) >= creates + 1
    assert all(float(str(b["lag_ms"])) >= 0 for b in batches)
