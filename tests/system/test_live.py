"""Subscriptions through real server processes and real WebSocket clients: order,
exactly-once, resume, limits, slow consumers, shutdown; across processes in
test_live_distributed.py."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.system.conftest import Server, bounded, free_port
from tests.system.live_client import MESSAGE_EVENTS, Collector, LiveClient, new_chat, ws_url

pytestmark = pytest.mark.system


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Server]:
    started = Server(
        tmp_path / "chat.db",
        free_port(),
        tmp_path / "server.log",
        environment={
            "LIVE_MAX_CONNECTIONS": "3",
            "LIVE_MAX_SUBSCRIPTIONS": "2",
            "LIVE_INIT_TIMEOUT_MS": "500",
            "LIVE_QUEUE_SIZE": "20",
            "MAX_QUERY_DEPTH": "4",
        },
    )
    started.start()
    yield started
    started.stop()


async def _post(http: httpx.AsyncClient, url: str, token: str, body: str) -> int:
    response = await http.post(
        f"{url}/api/v1/applications/{token}/chats/1/messages", json={"body": body}
    )
    assert response.status_code == 201, response.text
    number: int = response.json()["number"]
    return number


async def test_page_then_subscribe_has_no_hole_and_no_duplicate(server: Server) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        token = await new_chat(http, server.url)
        await bounded([_post(http, server.url, token, f"before {i}") for i in range(120)], 20)
        page = (
            await http.get(
                f"{server.url}/api/v1/applications/{token}/chats/1/messages", params={"limit": 40}
            )
        ).json()
        last_seen = page[-1]["number"]
        # Writes go on while the subscription replays what is stored above the page.
        writing = asyncio.ensure_future(
            bounded([_post(http, server.url, token, f"during {i}") for i in range(150)], 10)
        )
        client = await LiveClient.open(server.url)
        await client.messages(token, 1, after=last_seen)
        live = Collector(client)
        await writing
        await live.until(270 - last_seen)
        await asyncio.sleep(0.3)  # nothing more may come
        assert live.created() == list(range(last_seen + 1, 271))
        assert live.others == []
        # Edits arrive as UPDATED, in the order they were made.
        for body in ("edit 1", "edit 2", "edit 3"):
            response = await http.put(
                f"{server.url}/api/v1/applications/{token}/chats/1/messages/5",
                json={"body": body},
            )
            assert response.status_code == 200, response.text
        await live.holds(lambda: len([e for e in live.events if e[0] == "UPDATED"]) == 3)
        assert [e for e in live.events if e[0] == "UPDATED"] == [
            ("UPDATED", 5, "edit 1"),
            ("UPDATED", 5, "edit 2"),
            ("UPDATED", 5, "edit 3"),
        ]
        await live.close()


async def test_unknown_application_or_chat_ends_the_subscription_with_not_found(
    server: Server,
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        token = await new_chat(http, server.url)
    client = await LiveClient.open(server.url)
    for variables in (
        {"t": token, "c": 2},
        {"t": "00000000-0000-4000-8000-000000000000", "c": 1},
    ):
        operation = await client.subscribe(MESSAGE_EVENTS, variables)
        error = await client.receive()
        assert error["id"] == operation
        assert error["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        assert await client.receive() == {"id": operation, "type": "complete"}
    # Over HTTP a subscription is refused, not run as a query.
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.post(
            f"{server.url}/graphql",
            json={"query": MESSAGE_EVENTS, "variables": {"t": token, "c": 1}},
            headers={"accept": "multipart/mixed;subscriptionSpec=1.0, application/json"},
        )
    assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    await client.close()


async def test_subscription_and_connection_limits(limited: Server) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        token = await new_chat(http, limited.url)

    # Per connection: the third subscription is refused, the first two work on.
    client = await LiveClient.open(limited.url)
    await client.messages(token, 1)
    await client.messages(token, 1)
    third = await client.messages(token, 1)
    refused = await client.receive()
    assert refused["id"] == third and refused["type"] == "error"
    assert "limit" in refused["payload"][0]["message"]

    # The same document limits as queries.
    deep = await LiveClient.open(limited.url)
    operation = await deep.subscribe(
        "subscription($t: String!) { chatEvents(applicationToken: $t) "
        "{ chat { messages { nodes { number } } } } }",
        {"t": token},
    )
    answer = await deep.receive()
    assert answer["id"] == operation and answer["type"] == "error"
    assert "MAX_QUERY_DEPTH" in json.dumps(answer)

    # Per process: a fourth connection is accepted and closed with 1013 (try again later).
    third_connection = await LiveClient.open(limited.url)
    refused_connection = await LiveClient.open(limited.url, init=False)
    with pytest.raises(ConnectionClosed) as closed:
        await refused_connection.receive()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    await refused_connection.close()
    for other in (third_connection, deep, client):
        await other.close()
    await asyncio.sleep(0.2)

    # Connection init has a deadline.
    silent = await LiveClient.open(limited.url, init=False)
    with pytest.raises(ConnectionClosed) as timed_out:
        await silent.receive(within=5)
    assert timed_out.value.rcvd is not None and timed_out.value.rcvd.code == 4408
    await silent.close()

    # A frame larger than a request body closes the connection (1009: message too big).
    big = await LiveClient.open(limited.url)
    with pytest.raises(ConnectionClosed) as too_big:
        await big.send({"type": "ping", "payload": {"x": "y" * 2_000_000}})
        await big.receive(within=5)
    assert too_big.value.rcvd is not None and too_big.value.rcvd.code == 1009
    await big.close()

    # And the server still serves.
    again = await LiveClient.open(limited.url)
    await again.send({"type": "ping"})
    assert (await again.receive())["type"] == "pong"
    await again.close()


async def test_a_slow_consumer_is_closed_with_its_code_and_resumes_without_loss(
    limited: Server,
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        token = await new_chat(http, limited.url)
        # A client that stops reading: its socket fills, then its queue (LIVE_QUEUE_SIZE=20).
        slow = await LiveClient.open(limited.url, max_queue=1)
        slow.connection.transport.pause_reading()
        await slow.messages(token, 1, after=0)
        body = "x" * 60_000
        await bounded([_post(http, limited.url, token, body) for _ in range(300)], 10)
        slow.connection.transport.resume_reading()
        received: list[int] = []
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                message = await slow.receive(within=30)
                if message["type"] == "next" and "errors" not in message["payload"]:
                    received.append(
                        message["payload"]["data"]["messageEvents"]["message"]["number"]
                    )
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4008
        await slow.close()
        assert "afterNumber" in closed.value.rcvd.reason
        assert received == list(range(1, len(received) + 1))
        assert len(received) < 300

        # Resuming from the last number received loses nothing and repeats nothing.
        resumed = await LiveClient.open(limited.url)
        await resumed.messages(token, 1, after=received[-1] if received else 0)
        rest = Collector(resumed)
        await rest.until(300 - len(received))
        assert received + rest.created() == list(range(1, 301))
        await rest.close()


async def test_sigterm_sends_subscribers_a_close_frame(tmp_path: Path) -> None:
    server = Server(tmp_path / "chat.db", free_port(), tmp_path / "server.log")
    server.start()
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            token = await new_chat(http, server.url)
        client = await LiveClient.open(server.url)
        await client.messages(token, 1)
        await asyncio.sleep(0.2)
        assert server.process is not None
        server.process.terminate()
        with pytest.raises(ConnectionClosed) as closed:
            await client.receive(within=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012  # restarting
        await client.close()
        # uvicorn exits by the signal once it has shut down gracefully
        assert server.process.wait(timeout=15) in (0, -signal.SIGTERM)
    finally:
        server.stop()


async def test_the_legacy_graphql_ws_protocol_is_served_too(server: Server) -> None:
    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    async with httpx.AsyncClient(timeout=30) as http:
        token = await new_chat(http, server.url)
        async with connect(ws_url(server.url), subprotocols=[Subprotocol("graphql-ws")]) as ws:
            await ws.send(json.dumps({"type": "connection_init"}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(
                json.dumps(
                    {
                        "id": "1",
                        "type": "start",
                        "payload": {"query": MESSAGE_EVENTS, "variables": {"t": token, "c": 1}},
                    }
                )
            )
            await asyncio.sleep(0.3)
            await _post(http, server.url, token, "over the old protocol")
            async with asyncio.timeout(10):
                while True:
                    message = json.loads(await ws.recv())
                    if message["type"] == "data":
                        break
            assert message["payload"]["data"]["messageEvents"]["message"] == {
                "number": 1,
                "body": "over the old protocol",
            }


async def test_the_typed_client_follows_a_chat(server: Server) -> None:
    from tests.client.graphql_chat_client import GraphQLChatClient
    from tests.client.graphql_chat_client.enums import EventKind

    async with httpx.AsyncClient(timeout=30) as http:
        token = await new_chat(http, server.url)
        await _post(http, server.url, token, "stored first")
        typed = GraphQLChatClient(
            url=f"{server.url}/graphql",
            ws_url=ws_url(server.url),
            http_client=http,  # type: ignore[arg-type]
        )
        received = []
        times = []
        async with asyncio.timeout(20):
            events = typed.message_events(token, 1, after=0)
            async for event in events:
                message = event.message_events.message
                received.append((event.message_events.kind, message.body))
                times.append((message.created_at, message.updated_at))
                if len(received) == 1:
                    created = await typed.create_message(token, 1, "sent live")
                    assert created.create_message.message.number == 2
                if len(received) == 2:
                    break
            await events.aclose()  # type: ignore[attr-defined]
    assert received == [(EventKind.CREATED, "stored first"), (EventKind.CREATED, "sent live")]
    # Replayed or live, an event says when its message was accepted, as the create did.
    sent_at = created.create_message.message.created_at
    assert times[0][0] == times[0][1] < times[1][0] == times[1][1] == sent_at


@pytest.mark.parametrize(
    "frame",
    [b"\xff\xfe not text", "{not json", "[1, 2]", '"a string"', '{"type": 7}', '{"no": "type"}'],
)
async def test_malformed_frames_close_only_their_own_connection(
    server: Server, frame: bytes | str
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        token = await new_chat(http, server.url)
        bystander = await LiveClient.open(server.url)
        await bystander.messages(token, 1)
        hostile = await LiveClient.open(server.url)
        await hostile.connection.send(frame)
        with pytest.raises(ConnectionClosed) as closed:
            await hostile.receive(within=5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
        await hostile.close()  # waits for the closing handshake to end: no socket left behind
        await _post(http, server.url, token, "still served")
        event = await bystander.receive()
        assert event["payload"]["data"]["messageEvents"]["message"]["body"] == "still served"
        await bystander.close()


async def test_a_subscription_reaches_only_the_chats_of_its_token(server: Server) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        victim = await new_chat(http, server.url)
        attacker = await new_chat(http, server.url)
        client = await LiveClient.open(server.url)
        await client.messages(attacker, 1, after=0)
        watching = Collector(client)
        await _post(http, server.url, victim, "secret")
        await _post(http, server.url, attacker, "mine")
        await watching.until(1)
        await asyncio.sleep(0.3)
        assert watching.events == [("CREATED", 1, "mine")]
        await watching.close()
