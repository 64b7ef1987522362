"""Load the running product with real load generators and print throughput and latency.

    python bench/load.py [--duration 10] [--connections 64]

Starts, in one run and served the same way (uvicorn, one worker, on loopback):
the product in embedded mode on a fresh database, a bare Starlette JSON endpoint (and a bare
Starlette page of messages from memory, the REST reads' floor) and a bare Strawberry mutation
with the same parser and validation caches (and the page queries' floor). For each scenario it runs
`wrk` closed loop (the maximum rate) and then `vegeta` open loop at half that rate
(latency at a fixed rate; the achieved rate is printed too), and prints a Markdown table
with the overheads as ratios to the floors.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Figures:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass
class Scenario:
    name: str
    url: str
    method: str = "GET"
    body: str | None = None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _serve(
    target: list[str], env: dict[str, str], log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        *target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    process = subprocess.Popen(
        command,
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(url + "/", timeout=1)
            return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{target} did not start: {log.read_text()}")


def _wrk(scenario: Scenario, duration: int, connections: int, workdir: Path) -> Figures:
    script = workdir / "request.lua"
    body = json.dumps(scenario.body) if scenario.body is not None else "nil"
    script.write_text(
        f'wrk.method = "{scenario.method}"\n'
        f"wrk.body = {body}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(script),
            scenario.url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return Figures(
        rps=rps,
        p50_ms=_wrk_latency(out, "50%"),
        p99_ms=_wrk_latency(out, "99%"),
        errors=(int(errors.group(1)) if errors else 0) + (1 if socket_errors else 0),
    )


def _wrk_latency(out: str, percentile: str) -> float:
    value, unit = re.search(rf"^\s+{percentile}\s+([\d.]+)(us|ms|s)", out, re.M).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _vegeta(scenario: Scenario, rate: float, duration: int, workdir: Path) -> Figures:
    """Open loop: requests leave at `rate` whatever the responses do (no coordinated omission)."""
    target = [f"{scenario.method} {scenario.url}", "Content-Type: application/json"]
    if scenario.body is not None:
        (workdir / "body.json").write_text(scenario.body)
        target.append(f"@{workdir / 'body.json'}")
    attack = subprocess.run(
        [
            "vegeta",
            "attack",
            f"-rate={max(int(rate), 1)}/s",
            f"-duration={duration}s",
            "-max-workers=256",
            "-timeout=10s",
        ],
        input=("\n".join(target) + "\n").encode(),
        capture_output=True,
        check=True,
    ).stdout
    report = json.loads(
        subprocess.run(
            ["vegeta", "report", "-type=json"], input=attack, capture_output=True, check=True
        ).stdout
    )
    errors = sum(n for code, n in report["status_codes"].items() if not code.startswith("2"))
    return Figures(
        rps=report["throughput"],
        p50_ms=report["latencies"]["50th"] / 1e6,
        p99_ms=report["latencies"]["99th"] / 1e6,
        errors=errors,
    )


def _graphql(query: str, variables: dict[str, object]) -> str:
    return json.dumps({"query": query, "variables": variables})


CREATE = (
    "mutation($t: String!, $c: Int!, $b: String!) { createMessage(input: "
    "{applicationToken: $t, chatNumber: $c, body: $b}) { message { number } } }"
)
PAGE = (
    "query($t: String!) { application(token: $t) { chat(number: 1) { messagesCount "
    "messages(first: 20) { nodes { number body } pageInfo { hasNextPage endCursor } } } } }"
)
# What a chat screen opens on: the newest 50, with the cursor to scroll back from.
NEWEST = (
    "query($t: String!) { application(token: $t) { chat(number: 1) { messagesCount "
    "messages(last: 50) { nodes { number body } pageInfo { hasPreviousPage startCursor } } } } }"
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        subprocess.run([str(ROOT / "scripts/install-debian-packages.sh"), "wrk"], check=True)
    if not shutil.which("vegeta"):
        sys.exit("vegeta is not on PATH: `make bench` installs it with `go install`")

    workdir = Path(tempfile.mkdtemp(prefix="graphql-chat-bench-"))
    processes: list[subprocess.Popen[bytes]] = []
    try:
        product, url = _serve(
            ["--factory", "graphql_chat.app:create_app"],
            {"DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'bench.db'}"},
            workdir / "product.log",
        )
        processes.append(product)
        starlette, starlette_url = _serve(["bench.baselines:bare_starlette"], {}, workdir / "s.log")
        processes.append(starlette)
        strawberry, strawberry_url = _serve(
            ["bench.baselines:bare_strawberry"], {}, workdir / "g.log"
        )
        processes.append(strawberry)

        token = httpx.post(f"{url}/api/v1/applications", json={"name": "bench"}).json()["token"]
        httpx.post(f"{url}/api/v1/applications/{token}/chats", json={})
        with httpx.Client() as client:
            for n in range(200):
                client.post(
                    f"{url}/api/v1/applications/{token}/chats/1/messages",
                    json={"body": f"seed message {n}"},
                )

        message = {"t": token, "c": 1, "b": "a message from the benchmark"}
        scenarios = [
            Scenario("bare Starlette JSON", f"{starlette_url}/json", "POST", '{"body": "x"}'),
            Scenario(
                "bare Strawberry mutation (cached)",
                f"{strawberry_url}/graphql",
                "POST",
                _graphql(CREATE, message),
            ),
            Scenario("createMessage GraphQL", f"{url}/graphql", "POST", _graphql(CREATE, message)),
            Scenario(
                "createMessage REST",
                f"{url}/api/v1/applications/{token}/chats/1/messages",
                "POST",
                json.dumps({"body": message["b"]}),
            ),
            Scenario(
                "messages page GraphQL (20)", f"{url}/graphql", "POST", _graphql(PAGE, {"t": token})
            ),
            Scenario(
                "messages page REST (20)",
                f"{url}/api/v1/applications/{token}/chats/1/messages?limit=20",
            ),
            Scenario("bare Starlette page (20)", f"{starlette_url}/messages?limit=20"),
            Scenario(
                "bare Strawberry page query (20)",
                f"{strawberry_url}/graphql",
                "POST",
                _graphql(PAGE, {"t": token}),
            ),
            Scenario(
                "newest page GraphQL (last 50)",
                f"{url}/graphql",
                "POST",
                _graphql(NEWEST, {"t": token}),
            ),
            Scenario(
                "newest page REST (last 50)",
                f"{url}/api/v1/applications/{token}/chats/1/messages?last=50",
            ),
            Scenario("bare Starlette page (last 50)", f"{starlette_url}/messages?last=50"),
            Scenario(
                "bare Strawberry page query (last 50)",
                f"{strawberry_url}/graphql",
                "POST",
                _graphql(NEWEST, {"t": token}),
            ),
        ]
        results: dict[str, tuple[Figures, Figures]] = {}
        for scenario in scenarios:
            closed = _wrk(scenario, args.duration, args.connections, workdir)
            fixed = _vegeta(scenario, closed.rps / 2, args.duration, workdir)
            results[scenario.name] = (closed, fixed)
            print(f"measured {scenario.name}", file=sys.stderr)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=15)
        shutil.rmtree(workdir, ignore_errors=True)

    floor_json = results["bare Starlette JSON"][0].rps
    floor_graphql = results["bare Strawberry mutation (cached)"][0].rps
    # Each page query against the bare Strawberry query of the same shape and size.
    read_floors = {
        "messages page GraphQL (20)": "bare Strawberry page query (20)",
        "newest page GraphQL (last 50)": "bare Strawberry page query (last 50)",
    }
    # Each REST page against the bare Starlette page of the same shape and size too.
    rest_floors = {
        "messages page REST (20)": "bare Starlette page (20)",
        "newest page REST (last 50)": "bare Starlette page (last 50)",
    }
    print(
        f"\nwrk -t2 -c{args.connections} -d{args.duration}s --latency (closed loop); "
        f"vegeta attack -duration={args.duration}s at half the closed-loop rate (open loop, "
        "fixed rate)\n"
    )
    print(
        "| scenario | max req/s | p50 ms | p99 ms | vs Starlette | vs Starlette page "
        "| vs Strawberry | fixed req/s | p50 ms | p99 ms | errors |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, (closed, fixed) in results.items():
        # A page query is measured against the read floor of its shape, anything else
        # against the mutation floor.
        floor = results[read_floors[name]][0].rps if name in read_floors else floor_graphql
        page = (
            f"{closed.rps / results[rest_floors[name]][0].rps:.2f}" if name in rest_floors else ""
        )
        print(
            f"| {name} | {closed.rps:.0f} | {closed.p50_ms:.1f} | {closed.p99_ms:.1f} "
            f"| {closed.rps / floor_json:.2f} | {page} | {closed.rps / floor:.2f} "
            f"| {fixed.rps:.0f} | {fixed.p50_ms:.1f} | {fixed.p99_ms:.1f} "
            f"| {closed.errors + fixed.errors} |"
        )
    print(
        '\n"vs Starlette": against the bare Starlette JSON endpoint (one small object); '
        '"vs Starlette page": REST pages against the bare Starlette page of the same shape and '
        'size from memory; "vs Strawberry": page queries against the bare Strawberry page '
        "query of the same shape and size, everything else against the bare Strawberry mutation."
    )


if __name__ == "__main__":
    main()
