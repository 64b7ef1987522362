"""Benchmark the distributed mode on the engines of `make services`.

    python bench/distributed.py [--duration 10] [--lag-samples 200] [--redis one|cluster]

Starts, on a fresh database, key prefix, queue and index: two API processes
(`graphql-chat serve --workers 2`), two workers, and the bare cached Strawberry floor with
the same process count. Prints createMessage throughput and p50/p99 (wrk closed loop, vegeta
open loop at half that rate), both with everything running and for the API tier alone
(workers paused), the CPU each component spent per request, worker throughput (a paused
backlog drained), and persistence lag (accepted until readable over REST, and until
searchable) for messages created during a fixed-rate load. `--redis cluster` numbers on the
Redis Cluster of `make services` instead of the single Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from redis import Redis
from redis.cluster import ClusterNode, RedisCluster
from sqlalchemy.engine import URL, make_url

from bench import cpu
from bench.load import (
    CREATE,
    NEWEST,
    ROOT,
    Figures,
    Scenario,
    _graphql,
    _serve,
    _vegeta,
    _wrk,
)
from graphql_chat.adapters.rabbitmq import queues
from graphql_chat.domain import encode_cursor

POLL = 0.01  # seconds between two polls of the persistence lag measurement
SERVICES_ENV = Path(os.environ.get("SERVICES_DIR", "/var/tmp/graphql-chat-services")) / "env"


def _services() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in SERVICES_ENV.read_text().splitlines():
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            found[name] = value
    return found


def _fresh(services: dict[str, str]) -> dict[str, str]:
    suffix = secrets.token_hex(4)
    server = make_url(services["DATABASE_URL"])
    database = f"bench_{suffix}"
    url = server.set(database=database)
    _sql(
        server.set(database=None),
        f"CREATE DATABASE {database} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
    )
    environment = {
        **services,
        "DATABASE_URL": url.render_as_string(hide_password=False),
        "REDIS_KEY_PREFIX": f"bench{suffix}",
        "QUEUE_NAME": f"bench-{suffix}",
        "ELASTICSEARCH_INDEX": f"bench-{suffix}",
        "LOG_LEVEL": "warning",
    }
    subprocess.run(
        [sys.executable, "-m", "graphql_chat", "migrate"],
        env={**os.environ, **environment},
        check=True,
        capture_output=True,
    )
    return environment


def start_worker(environment: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """A `graphql-chat worker` process on the run's environment, logging to `log`."""
    return subprocess.Popen(
        [sys.executable, "-m", "graphql_chat", "worker"],
        cwd=ROOT,
        env={**os.environ, **environment},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _remove(environment: dict[str, str]) -> None:
    """Drop what the run created: its database, queues, index and keys."""
    url = make_url(environment["DATABASE_URL"])
    _sql(url.set(database=None), f"DROP DATABASE IF EXISTS {url.database}")
    elastic, index = environment["ELASTICSEARCH_URL"], environment["ELASTICSEARCH_INDEX"]
    # The name is an alias: delete the indices behind it.
    found = httpx.get(f"{elastic}/{index}*", params={"allow_no_indices": "true"}).json()
    for name in found:
        httpx.delete(f"{elastic}/{name}")
    management = make_url(environment["RABBITMQ_MANAGEMENT_URL"])
    api = f"http://{management.host}:{management.port}/api/queues/%2F"
    auth = (management.username or "guest", management.password or "guest")
    for queue in queues.every(environment["QUEUE_NAME"]):
        httpx.delete(f"{api}/{queue}", auth=auth)
    exchanges = api.replace("/api/queues/", "/api/exchanges/")
    for exchange in queues.exchanges(environment["QUEUE_NAME"]):
        httpx.delete(f"{exchanges}/{exchange}", auth=auth)
    keys = _redis(environment["REDIS_URL"])
    for key in keys.scan_iter(match=f"{environment['REDIS_KEY_PREFIX']}:*", count=1000):
        keys.delete(key)
    keys.close()


def _redis(url: str) -> Redis | RedisCluster:
    """A client for a REDIS_URL of one server, or of a cluster (`redis+cluster://`)."""
    parts = urlsplit(url)
    if parts.scheme != "redis+cluster":
        return Redis.from_url(url)
    nodes = [ClusterNode(*host.rsplit(":", 1)) for host in parts.netloc.split(",")]  # type: ignore[no-untyped-call]
    return RedisCluster(startup_nodes=nodes)


def _count(environment: dict[str, str]) -> int:
    return int(_sql(make_url(environment["DATABASE_URL"]), "SELECT COUNT(*) FROM messages"))


def _sql(url: URL, statement: str) -> str:
    """Run one statement with the mariadb client (in `url`'s database, if it names one)."""
    database = [url.database] if url.database else []
    return subprocess.run(
        [
            "mariadb",
            "-N",
            "-h",
            str(url.host),
            "-P",
            str(url.port),
            f"-u{url.username}",
            f"-p{url.password}",
            *database,
            "-e",
            statement,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


async def _lag(api: str, token: str, samples: int, rate: float) -> tuple[list[float], list[float]]:
    """Create `samples` messages at `rate`/s in chat 2; time each from its acceptance (the
    response) until readable and until searchable.

    Two pollers, each one request every `POLL` seconds whatever the number of messages in
    flight, so the measurement adds a fixed, small load: one lists chat 2 from just before
    the oldest message not yet readable, the other searches chat 2 for the word all the
    samples share (newest first, so the page holds every sample still in flight).
    """
    base = f"{api}/api/v1/applications/{token}/chats/2/messages"
    accepted: dict[int, float] = {}
    readable: dict[int, float] = {}
    searchable: dict[int, float] = {}
    done = asyncio.Event()
    async with httpx.AsyncClient(timeout=30) as http:

        async def one() -> None:
            created = await http.post(base, json={"body": f"lagprobe {secrets.token_hex(6)}"})
            accepted[created.json()["number"]] = time.perf_counter()

        async def poll_readable() -> None:
            while not done.is_set() or len(readable) < samples:
                waiting = [n for n in accepted if n not in readable]
                if waiting:
                    after = encode_cursor("message", min(waiting) - 1)
                    page = await http.get(base, params={"limit": 100, "cursor": after})
                    now = time.perf_counter()
                    for message in page.json():
                        if message["number"] in accepted:
                            readable.setdefault(message["number"], now)
                await asyncio.sleep(POLL)

        async def poll_searchable() -> None:
            while not done.is_set() or len(searchable) < samples:
                if len(searchable) < len(accepted):
                    found = await http.get(f"{base}/search", params={"q": "lagprobe", "limit": 100})
                    now = time.perf_counter()
                    for message in found.json():
                        if message["number"] in accepted:
                            searchable.setdefault(message["number"], now)
                await asyncio.sleep(POLL)

        pollers = [asyncio.create_task(poll_readable()), asyncio.create_task(poll_searchable())]
        tasks = []
        for _ in range(samples):
            tasks.append(asyncio.create_task(one()))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks)
        done.set()
        await asyncio.wait_for(asyncio.gather(*pollers), 60)
    return (
        [readable[n] - accepted[n] for n in accepted],
        [searchable[n] - accepted[n] for n in accepted],
    )


def _stored(environment: dict[str, str], target: int, within: float = 180) -> None:
    """Wait until the store holds `target` messages."""
    deadline = time.perf_counter() + within
    while _count(environment) < target and time.perf_counter() < deadline:
        time.sleep(0.1)


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] * 1000 if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--lag-samples", type=int, default=200)
    parser.add_argument(
        "--redis",
        choices=["one", "cluster"],
        default="one",
        help="number on the single Redis, or on the Redis Cluster of `make services`",
    )
    args = parser.parse_args()
    services = _services()
    if args.redis == "cluster":
        services["REDIS_URL"] = services["REDIS_CLUSTER_URL"]
    environment = _fresh(services)
    workdir = Path(tempfile.mkdtemp(prefix="graphql-chat-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        api, url = _serve(
            ["--factory", "graphql_chat.app:create_app", "--workers", "2"],
            environment,
            workdir / "api.log",
        )
        processes.append(api)
        trees = {api.pid: "API processes"}
        for i in range(2):
            processes.append(start_worker(environment, workdir / f"worker{i}.log"))
            trees[processes[-1].pid] = "workers"
        floor_process, floor_url = _serve(
            ["bench.baselines:bare_strawberry", "--workers", "2"], {}, workdir / "floor.log"
        )
        processes.append(floor_process)
        trees[floor_process.pid] = "floor"
        time.sleep(3)
        for _ in range(100):  # numbering starts once recovery saw the fresh queue drained
            token = httpx.post(f"{url}/api/v1/applications", json={"name": "bench"}).json()["token"]
            if httpx.post(f"{url}/api/v1/applications/{token}/chats", json={}).status_code == 201:
                break
            time.sleep(0.5)
        httpx.post(f"{url}/api/v1/applications/{token}/chats", json={})
        message = {"t": token, "c": 1, "b": "a message from the benchmark"}
        scenarios = [
            Scenario(
                "bare Strawberry mutation (cached), 2 processes",
                f"{floor_url}/graphql",
                "POST",
                _graphql(CREATE, message),
            ),
            Scenario(
                "createMessage GraphQL, 2 API processes",
                f"{url}/graphql",
                "POST",
                _graphql(CREATE, message),
            ),
            Scenario(
                "createMessage REST, 2 API processes",
                f"{url}/api/v1/applications/{token}/chats/1/messages",
                "POST",
                json.dumps({"body": message["b"]}),
            ),
            # Reads of the chat the creates filled (MySQL): the newest page, as a chat opens.
            Scenario(
                "bare Strawberry page query (last 50), 2 processes",
                f"{floor_url}/graphql",
                "POST",
                _graphql(NEWEST, {"t": token}),
            ),
            Scenario(
                "newest page GraphQL (last 50), 2 API processes",
                f"{url}/graphql",
                "POST",
                _graphql(NEWEST, {"t": token}),
            ),
            Scenario(
                "newest page REST (last 50), 2 API processes",
                f"{url}/api/v1/applications/{token}/chats/1/messages?last=50",
            ),
        ]
        results: dict[str, tuple[Figures, Figures]] = {}
        alone: dict[str, Figures] = {}
        drain: list[str] = []
        usage: dict[str, tuple[float, dict[str, float]]] = {}
        workers = [p for p in processes if trees.get(p.pid) == "workers"]
        for scenario in scenarios:
            before = _count(environment)
            started = cpu.snapshot(trees)
            closed = _wrk(scenario, args.duration, args.connections, workdir)
            usage[scenario.name] = (
                closed.rps * args.duration,
                cpu.spent(started, cpu.snapshot(trees)),
            )
            if "createMessage" in scenario.name:
                _stored(environment, before + int(closed.rps * args.duration * 0.98))
                # The API tier alone: workers paused, accepted writes wait in the queue.
                for worker in workers:
                    worker.send_signal(signal.SIGSTOP)
                before = _count(environment)
                alone[scenario.name] = _wrk(scenario, args.duration, args.connections, workdir)
                backlog = int(alone[scenario.name].rps * args.duration * 0.98)
                resumed = time.perf_counter()
                for worker in workers:
                    worker.send_signal(signal.SIGCONT)
                _stored(environment, before + backlog)
                took = time.perf_counter() - resumed
                drain.append(
                    f"{scenario.name}: a backlog of {backlog} writes stored in {took:.1f} s "
                    f"({backlog / took:.0f}/s)"
                )
            fixed = _vegeta(scenario, closed.rps / 2, args.duration, workdir)
            results[scenario.name] = (closed, fixed)
            print(f"measured {scenario.name}", file=sys.stderr)
        rest_max = results["createMessage REST, 2 API processes"][0].rps
        lag_rate = rest_max / 2
        load = subprocess.Popen(
            ["vegeta", "attack", f"-rate={int(lag_rate)}/s", f"-duration={args.duration + 5}s"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
        )
        attack = (
            f"POST {url}/api/v1/applications/{token}/chats/1/messages\n"
            f"Content-Type: application/json\n@{workdir / 'lag.json'}\n"
        )
        (workdir / "lag.json").write_text(json.dumps({"body": "background load"}))
        assert load.stdin is not None
        load.stdin.write(attack.encode())
        load.stdin.close()
        time.sleep(1)
        readable, searchable = asyncio.run(_lag(url, token, args.lag_samples, 20))
        load.wait()
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        _remove(environment)

    floor_create = results["bare Strawberry mutation (cached), 2 processes"][0].rps
    floor_read = results["bare Strawberry page query (last 50), 2 processes"][0].rps
    print(
        f"\nwrk -t2 -c{args.connections} -d{args.duration}s (closed loop); vegeta at half that "
        "rate (open loop)\n"
    )
    print(
        "Everything on the machine: the API processes share the 2 cores with the workers "
        "and the four engines. API tier alone: the same load with the workers paused (the "
        "queue keeps what is accepted), as when persistence runs on other machines.\n"
    )
    print(
        "(vs Strawberry: the newest page against the bare Strawberry page query of the same "
        "shape, everything else against the bare Strawberry mutation)\n"
    )
    print(
        "| scenario | max req/s | p50 ms | p99 ms | vs Strawberry | API tier alone req/s "
        "| p50 ms | p99 ms | vs Strawberry | fixed req/s | p50 ms | p99 ms | errors |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, (closed, fixed) in results.items():
        floor = floor_read if "page" in name else floor_create
        own = alone.get(name)
        tier = (
            f"{own.rps:.0f} | {own.p50_ms:.1f} | {own.p99_ms:.1f} | {own.rps / floor:.2f}"
            if own
            else " | | | "
        )
        errors = closed.errors + fixed.errors + (own.errors if own else 0)
        print(
            f"| {name} | {closed.rps:.0f} | {closed.p50_ms:.1f} | {closed.p99_ms:.1f} "
            f"| {closed.rps / floor:.2f} | {tier} | {fixed.rps:.0f} | {fixed.p50_ms:.1f} "
            f"| {fixed.p99_ms:.1f} | {errors} |"
        )
    print("\nCPU per request during the closed-loop load, ms (2 cores: 2,000 ms per second):")
    for name, (requests, spent) in usage.items():
        shares = ", ".join(
            f"{component} {seconds * 1000 / requests:.2f}"
            for component, seconds in spent.items()
            if seconds > 0.005 * args.duration
        )
        print(f"- {name}: {shares}")
    print("\nworkers (2), resumed after the API-tier-alone load:")
    for line in drain:
        print(f"- {line}")
    print(
        f"\npersistence lag, {len(readable)} messages at 20/s during a {lag_rate:.0f} req/s "
        "REST load:"
    )
    print(
        f"- readable: p50 {_percentile(readable, 50):.0f} ms, "
        f"p99 {_percentile(readable, 99):.0f} ms"
    )
    print(
        f"- searchable: p50 {_percentile(searchable, 50):.0f} ms, "
        f"p99 {_percentile(searchable, 99):.0f} ms"
    )


if __name__ == "__main__":
    main()
