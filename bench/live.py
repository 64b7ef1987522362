"""Benchmark subscriptions in the distributed mode on the engines of `make services`.

    python -m bench.live [--subscribers 2000] [--chats 100] [--hot 100] [--rates 100,250,500]

Starts, on a fresh database, key prefix, queue and index: two API processes (`graphql-chat
serve`, one process each), two workers, and subscriber processes holding the WebSockets.

1. Held: `--subscribers` connections, half on each API process, each with one messageEvents
   subscription, spread evenly over `--chats` chats. Each subscribes from afterNumber 0 to a
   chat holding one message, so it is counted as held once that message arrived. Memory per
   connection is the growth of the API processes' resident memory divided by the connections.
2. Fan-out: creates at a fixed rate (open loop, spread over the API processes) into the chats
   that have `--hot` subscribers each, for `--duration` seconds per rate. Delivery latency runs
   from each create's response to each subscriber's receipt (one clock: CLOCK_MONOTONIC).
3. One chat: every subscriber in one chat, creates at a low fixed rate.

Everything shares the 2 cores: the API processes, the workers, the four engines, the load
generator (vegeta) and the subscribers' own processes (`bench/subscribers`, Go, which parse
and time every event).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
import orjson

from bench import cpu
from bench.distributed import _fresh, _remove, _services, start_worker
from bench.load import ROOT, _free_port

CLIENT_PROCESSES = 2


def _create_at(
    apis: list[str], token: str, chats: list[int], rate: float, duration: float, workdir: Path
) -> dict[tuple[int, int], tuple[float, float]]:
    """Open loop with vegeta (requests leave at `rate` whatever the responses do), round
    robin over chats and API processes; when each create was sent and when its response
    came (wall clock), by (chat, number)."""
    body = workdir / "body.json"
    body.write_text('{"body": "x"}')
    targets = "\n".join(
        f"POST {api}/api/v1/applications/{token}/chats/{chat}/messages\n"
        f"Content-Type: application/json\n@{body}\n"
        for chat in chats
        for api in apis
    )
    attack = subprocess.run(
        [
            "vegeta",
            "attack",
            f"-rate={max(int(rate), 1)}/s",
            f"-duration={duration}s",
            "-max-workers=512",
            "-timeout=60s",
        ],
        input=targets.encode(),
        capture_output=True,
        check=True,
    ).stdout
    lines = subprocess.run(
        ["vegeta", "encode", "--to", "json"], input=attack, capture_output=True, check=True
    ).stdout.splitlines()
    accepted: dict[tuple[int, int], tuple[float, float]] = {}
    errors = 0
    for line in lines:
        result = orjson.loads(line)
        if result["code"] != 201:
            errors += 1
            continue
        chat = int(result["url"].rsplit("/", 2)[-2])
        number = orjson.loads(base64.b64decode(result["body"]))["number"]
        sent = datetime.fromisoformat(result["timestamp"]).timestamp()
        accepted[(chat, number)] = (sent, sent + result["latency"] / 1e9)
    if errors:
        print(f"  {errors} creates failed", file=sys.stderr)
    return accepted


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else 0.0


def _serve_api(environment: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "graphql_chat", "serve"],
        cwd=ROOT,
        env={**os.environ, **environment, "PORT": str(port)},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url + "/health/live", timeout=1).status_code == 200:
                return process, url
        time.sleep(0.1)
    raise RuntimeError(f"the API did not start: {log.read_text()}")


class Subscribers:
    """Subscriber processes (`bench/subscribers`, Go: its cost per event is a small part of
    the server's), each holding its share of the connections."""

    def __init__(self, token: str, connections: list[tuple[str, int]]) -> None:
        self.processes: list[subprocess.Popen[str]] = []
        for k in range(CLIENT_PROCESSES):
            share = [(api.replace("http", "ws") + "/graphql", chat) for api, chat in connections]
            plan = {"token": token, "connections": share[k::CLIENT_PROCESSES]}
            process = subprocess.Popen(
                ["subscribers"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert process.stdin is not None
            process.stdin.write(orjson.dumps(plan).decode() + "\n")
            process.stdin.flush()
            self.processes.append(process)

    def held(self) -> tuple[int, int]:
        held = failed = 0
        for process in self.processes:
            assert process.stdout is not None
            _, count, _, failures = process.stdout.readline().split()
            held += int(count)
            failed += int(failures)
        return held, failed

    def records(self) -> list[tuple[int, int, float]]:
        found: list[tuple[int, int, float]] = []
        for process in self.processes:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.write("records\n")
            process.stdin.flush()
            for line in process.stdout:
                if line == "end\n":
                    break
                chat, number, at = line.split()
                found.append((int(chat), int(number), int(at) / 1e9))
        return found

    def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(OSError, ValueError):
                assert process.stdin is not None
                process.stdin.write("stop\n")
                process.stdin.close()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def _fan_out(
    subscribers: Subscribers,
    workdir: Path,
    trees: dict[int, str],
    apis: list[str],
    token: str,
    chats: list[int],
    per_chat: int,
    rate: float,
    duration: float,
    server: str = "API processes",
) -> tuple[str, ...]:
    subscribers.records()  # forget what came before
    for process in subscribers.processes:
        trees[process.pid] = "subscribers (load)"
    started = cpu.snapshot(trees)
    accepted = _create_at(apis, token, chats, rate, duration, workdir)
    time.sleep(3)  # the last deliveries
    used = cpu.spent(started, cpu.snapshot(trees))
    records = subscribers.records()
    from_sent = [t - accepted[(c, n)][0] for c, n, t in records if (c, n) in accepted]
    from_response = [t - accepted[(c, n)][1] for c, n, t in records if (c, n) in accepted]
    creates = [done - sent for sent, done in accepted.values()]
    expected = len(accepted) * per_chat
    delivered = len(from_sent)
    return (
        f"{rate:.0f}",
        f"{len(accepted) / duration:.0f}",
        f"{per_chat}",
        f"{delivered / duration:,.0f}",
        f"{delivered:,} of {expected:,}",
        f"{_percentile(creates, 50):.0f} / {_percentile(creates, 99):.0f}",
        f"{_percentile(from_response, 50):.0f} / {_percentile(from_response, 99):.0f}",
        f"{_percentile(from_sent, 50):.0f} / {_percentile(from_sent, 99):.0f}",
        f"{used.get(server, 0) / max(delivered, 1) * 1e6:.0f}",
        ", ".join(f"{name} {seconds:.1f}" for name, seconds in used.items() if seconds >= 0.5),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--chats", type=int, default=100)
    parser.add_argument("--hot", type=int, default=100, help="subscribers per chat, fan-out")
    parser.add_argument("--rates", default="50,100,250,500")
    parser.add_argument("--one-chat-rate", type=float, default=20)
    parser.add_argument("--duration", type=float, default=10)
    args = parser.parse_args()
    environment = _fresh(_services())
    workdir = Path(tempfile.mkdtemp(prefix="graphql-chat-bench-live-"))
    processes: list[subprocess.Popen[bytes]] = []
    subscribers: Subscribers | None = None
    rows: list[tuple[str, ...]] = []
    try:
        apis: list[str] = []
        trees: dict[int, str] = {}
        for i in range(2):
            process, url = _serve_api(environment, workdir / f"api{i}.log")
            processes.append(process)
            apis.append(url)
            trees[process.pid] = "API processes"
        for i in range(2):
            processes.append(start_worker(environment, workdir / f"worker{i}.log"))
            trees[processes[-1].pid] = "workers"
        time.sleep(3)
        for _ in range(100):  # numbering opens once recovery saw the fresh queue drained
            token = httpx.post(f"{apis[0]}/api/v1/applications", json={"name": "b"}).json()["token"]
            if (
                httpx.post(f"{apis[0]}/api/v1/applications/{token}/chats", json={}).status_code
                == 201
            ):
                break
            time.sleep(0.5)
        chats_needed = max(args.chats, args.subscribers // args.hot)
        with httpx.Client(timeout=30) as http:
            for chat in range(1, chats_needed + 1):
                if chat > 1:
                    http.post(f"{apis[0]}/api/v1/applications/{token}/chats", json={})
                http.post(
                    f"{apis[0]}/api/v1/applications/{token}/chats/{chat}/messages",
                    json={"body": "the first"},
                )
        time.sleep(2)  # stored by the workers: the replay finds each chat's first message

        # 1. Held, spread over --chats chats. The first tenth warms the processes up (code
        # paths, pools, each chat's sequence); memory is measured over the rest.
        spread = [(apis[i % 2], 1 + i % args.chats) for i in range(args.subscribers)]
        warm = Subscribers(token, spread[: args.subscribers // 10])
        warm_held, _ = warm.held()
        time.sleep(2)
        before = sum(_rss_kib(p.pid) for p in processes[:2])
        subscribers = Subscribers(token, spread[args.subscribers // 10 :])
        rest_held, failed = subscribers.held()
        held = warm_held + rest_held
        time.sleep(2)
        after = sum(_rss_kib(p.pid) for p in processes[:2])
        per_connection = (after - before) * 1024 / max(rest_held, 1)
        subscribers.stop()
        warm.stop()
        subscribers = None
        time.sleep(2)

        # 2. Fan-out: --hot subscribers in each of subscribers/hot chats.
        chats = list(range(1, args.subscribers // args.hot + 1))
        hot = [(apis[i % 2], chats[i % len(chats)]) for i in range(args.subscribers)]
        subscribers = Subscribers(token, hot)
        hot_held, _ = subscribers.held()
        for rate in (float(r) for r in args.rates.split(",")):
            rows.append(
                _fan_out(
                    subscribers, workdir, trees, apis, token, chats, args.hot, rate, args.duration
                )
            )
            print(f"measured fan-out at {rate:.0f}/s: {rows[-1]}", file=sys.stderr)
        subscribers.stop()
        subscribers = None
        time.sleep(2)

        # 3. One chat holding every subscriber: a new one, with nothing to replay but its
        # first message.
        base = f"{apis[0]}/api/v1/applications"
        with httpx.Client(timeout=30) as http:
            one = http.post(f"{base}/{token}/chats", json={}).json()["number"]
            http.post(f"{base}/{token}/chats/{one}/messages", json={"body": "the first"})
        time.sleep(2)
        every = [(apis[i % 2], one) for i in range(args.subscribers)]
        subscribers = Subscribers(token, every)
        one_held, _ = subscribers.held()
        rows.append(
            _fan_out(
                subscribers,
                workdir,
                trees,
                apis,
                token,
                [one],
                one_held,
                args.one_chat_rate,
                args.duration,
            )
        )
    finally:
        if subscribers is not None:
            subscribers.stop()
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        _remove(environment)

    print(
        f"\nHeld: {held:,} of {args.subscribers:,} subscribers ({failed} failed) on 2 API "
        f"processes, over {args.chats} chats; API resident memory "
        f"{before / 1024:.0f} MiB -> {after / 1024:.0f} MiB over the last {rest_held:,}: "
        f"{per_connection / 1024:.1f} KiB per idle connection with one subscription.\n"
    )
    print(f"Fan-out: {hot_held:,} subscribers held; then {one_held:,} in one chat (last row).\n")
    print(
        "Delivery latency: from the create's response to each receipt (negative when the "
        "event overtook the response), and from the create's request.\n"
    )
    print_fan_out(rows, "API")


def print_fan_out(rows: list[tuple[str, ...]], server: str) -> None:
    """The fan-out table, `server` naming whose CPU per delivery it shows."""
    print(
        "| creates/s asked | creates/s done | subscribers per chat | deliveries/s "
        "| delivered | create p50 / p99 ms | delivery from response p50 / p99 ms "
        f"| from request p50 / p99 ms | {server} CPU µs per delivery | CPU s by component |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
