"""The floor under `make bench-live`: what fan-out costs when the server does nothing but send.

    python -m bench.live_floor [--subscribers 2000] [--hot 100] [--rates 100,250,500]

One process of a bare ASGI app on uvicorn, with the options `graphql-chat serve` uses (uvloop,
httptools, no per-message deflate), speaking just enough `graphql-transport-ws` for the same
Go subscribers (`bench/subscribers`): acknowledge, take one subscription, send `next`
frames. A create is a REST call of the same path as the product's: it takes the chat's next
number in memory, answers 201, then sends each subscriber of the chat one frame, rendered
once with each subscription's id spliced in, each frame one ASGI `send` awaited in turn
(no queue, no task per subscriber, no GraphQL execution, no store, no broker, no Redis).

The same load as `bench.live`'s fan-out (vegeta creates, open loop, `--hot` subscribers per
chat) and the same table, so its rows read against that benchmark's: the gap between them is
what the product adds, and the floor's own CPU per delivery is what no Python ASGI server on
uvicorn can go under.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.live import Subscribers, _fan_out, print_fan_out
from bench.load import ROOT, _free_port

Send = Callable[[dict[str, Any]], Awaitable[None]]


def _floor_app() -> Callable[..., Awaitable[None]]:
    numbers: dict[int, int] = defaultdict(int)
    followers: dict[int, dict[int, tuple[str, Send]]] = defaultdict(dict)

    async def created(chat: int, number: int) -> None:
        payload = orjson.dumps(
            {"data": {"messageEvents": {"kind": "CREATED", "message": {"number": number}}}}
        ).decode()
        for prefix, send in list(followers[chat].values()):
            with contextlib.suppress(Exception):  # a subscriber gone meanwhile
                await send({"type": "websocket.send", "text": prefix + payload + "}"})

    async def http(scope: dict[str, Any], receive: Any, send: Send) -> None:
        while (await receive()).get("more_body"):
            pass
        parts = scope["path"].split("/")
        if scope["method"] != "POST" or len(parts) != 8 or parts[7] != "messages":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        chat = int(parts[6])
        numbers[chat] += 1
        number = numbers[chat]
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": orjson.dumps({"number": number})})
        await created(chat, number)  # after the response, as the product delivers

    async def websocket(scope: dict[str, Any], receive: Any, send: Send) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept", "subprotocol": "graphql-transport-ws"})
        chat = None
        try:
            while True:
                event = await receive()
                if event["type"] == "websocket.disconnect":
                    return
                message = orjson.loads(event.get("text") or event.get("bytes") or b"{}")
                if message.get("type") == "connection_init":
                    await send({"type": "websocket.send", "text": '{"type":"connection_ack"}'})
                elif message.get("type") == "subscribe":
                    chat = int(message["payload"]["variables"]["c"])
                    prefix = '{"id":' + orjson.dumps(message["id"]).decode() + ',"type":"next"'
                    prefix += ',"payload":'
                    followers[chat][id(send)] = (prefix, send)
                    first = {
                        "data": {"messageEvents": {"kind": "CREATED", "message": {"number": 0}}}
                    }
                    await send(
                        {
                            "type": "websocket.send",
                            "text": prefix + orjson.dumps(first).decode() + "}",
                        }
                    )
        finally:
            if chat is not None:
                followers[chat].pop(id(send), None)

    async def app(scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] == "http":
            await http(scope, receive, send)
        elif scope["type"] == "websocket":
            await websocket(scope, receive, send)

    return app


def _serve(port: int) -> None:
    import uvicorn

    uvicorn.run(
        _floor_app(),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        ws_per_message_deflate=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--hot", type=int, default=100, help="subscribers per chat")
    parser.add_argument("--rates", default="100,250,500")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the floor server itself
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve)
        return

    port = _free_port()
    workdir = Path(tempfile.mkdtemp(prefix="graphql-chat-bench-floor-"))
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.live_floor", "--serve", str(port)],
        cwd=ROOT,
        stdout=(workdir / "floor.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    subscribers = None
    rows = []
    try:
        for _ in range(100):
            with contextlib.suppress(httpx.TransportError):
                httpx.get(url, timeout=1)
                break
            time.sleep(0.1)
        chats = list(range(1, args.subscribers // args.hot + 1))
        subscribers = Subscribers(
            "floor", [(url, chats[i % len(chats)]) for i in range(args.subscribers)]
        )
        held, failed = subscribers.held()
        trees = {server.pid: "floor server"}
        for rate in (float(r) for r in args.rates.split(",")):
            rows.append(
                _fan_out(
                    subscribers,
                    workdir,
                    trees,
                    [url],
                    "floor",
                    chats,
                    args.hot,
                    rate,
                    args.duration,
                    server="floor server",
                )
            )
            print(f"measured at {rate:.0f}/s: {rows[-1]}", file=sys.stderr)
    finally:
        if subscribers is not None:
            subscribers.stop()
        server.terminate()
        server.wait(timeout=30)

    print(f"\nFloor: {held:,} subscribers held ({failed} failed) on one bare ASGI process.\n")
    print_fan_out(rows, "server")


if __name__ == "__main__":
    main()
