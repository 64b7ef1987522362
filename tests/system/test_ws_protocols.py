"""Both WebSocket protocols from a client nobody here wrote (Python's `gql`, which offers the
legacy `graphql-ws` first), against a real server process: the newer protocol is preferred,
every operation type runs over either, refusals carry a code, and nothing a client sends
fills the server's error log."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import aclosing
from pathlib import Path

import httpx
import pytest
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.websockets import WebsocketsTransport

from tests.system.conftest import Server, free_port
from tests.system.live_client import MESSAGE_EVENTS, LiveClient, new_chat, ws_url

pytestmark = pytest.mark.system

APPLICATION = "query($t: String!) { application(token: $t) { name chatsCount } }"
CREATE = """mutation($t: String!, $b: String!) {
  createMessage(input: {applicationToken: $t, chatNumber: 1, body: $b}) { message { number } }
}"""


def _request(document: str, **variables: object) -> GraphQLRequest:
    return GraphQLRequest(document, variable_values=variables)


@pytest.fixture
def one_each(tmp_path: Path) -> Iterator[Server]:
    """A server that allows one operation in flight per connection."""
    started = Server(
        tmp_path / "chat.db",
        free_port(),
        tmp_path / "server.log",
        environment={"LIVE_MAX_SUBSCRIPTIONS": "1"},
    )
    started.start()
    yield started
    started.stop()


def _quiet(server: Server) -> None:
    """Nothing a client did was logged as the server's own failure."""
    log = server.log.read_text(errors="replace")
    assert "ERROR" not in log and "Traceback" not in log, log


async def test_a_client_offering_both_protocols_is_answered_in_graphql_transport_ws(
    server: Server,
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        token = await new_chat(http, server.url)
    transport = WebsocketsTransport(url=ws_url(server.url))  # offers graphql-ws first
    async with Client(transport=transport) as session:
        assert transport.subprotocol == "graphql-transport-ws"
        answer = await session.execute(_request(APPLICATION, t=token))
    assert answer == {"application": {"name": "live", "chatsCount": 1}}
    _quiet(server)


async def test_queries_mutations_and_subscriptions_run_over_the_legacy_protocol(
    server: Server,
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        token = await new_chat(http, server.url)
    transport = WebsocketsTransport(url=ws_url(server.url), subprotocols=["graphql-ws"])
    async with Client(transport=transport) as session:
        assert transport.subprotocol == "graphql-ws"
        answer = await session.execute(_request(APPLICATION, t=token))
        assert answer == {"application": {"name": "live", "chatsCount": 1}}
        created = await session.execute(_request(CREATE, t=token, b="first"))
        assert created == {"createMessage": {"message": {"number": 1}}}

        events = session.subscribe(_request(MESSAGE_EVENTS, t=token, c=1, after=0))
        async with aclosing(events), asyncio.timeout(15):
            async for event in events:
                if event["messageEvents"]["message"]["number"] == 1:  # from the store
                    break
        with pytest.raises(TransportQueryError) as refused:
            await session.execute(_request(APPLICATION, t=12))
        [error] = refused.value.errors or []
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
    _quiet(server)


async def test_an_operation_over_the_connections_limit_is_refused_with_a_code_either_way(
    one_each: Server,
) -> None:
    from websockets.asyncio.client import connect
    from websockets.typing import Subprotocol

    async with httpx.AsyncClient(timeout=30) as http:
        token = await new_chat(http, one_each.url)
    variables = {"t": token, "c": 1}

    client = await LiveClient.open(one_each.url)  # graphql-transport-ws
    try:
        await client.messages(token, 1)
        second = await client.messages(token, 1)
        refused = await client.receive()
        assert refused["id"] == second and refused["type"] == "error"
        assert refused["payload"][0]["extensions"]["code"] == "LIMIT_EXCEEDED"
    finally:
        await client.close()

    async with connect(ws_url(one_each.url), subprotocols=[Subprotocol("graphql-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        for operation in ("1", "2"):
            payload = {"query": MESSAGE_EVENTS, "variables": variables}
            await ws.send(json.dumps({"id": operation, "type": "start", "payload": payload}))
        async with asyncio.timeout(10):
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "error":
                    break
        assert message["id"] == "2"
        assert message["payload"]["extensions"]["code"] == "LIMIT_EXCEEDED"
    _quiet(one_each)


@pytest.mark.parametrize(
    "frame",
    [
        {"id": "1", "type": "start"},
        {"id": "1", "type": "start", "payload": 7},
        {"id": "1", "type": "start", "payload": {"query": 7}},
        {"id": "1", "type": "start", "payload": {"query": "{ __typename }", "variables": [1]}},
        {"id": "1", "type": "start", "payload": {"query": "{ a }", "operationName": 5}},
        {"type": "start", "payload": {"query": "{ __typename }"}},
        {"id": ["1"], "type": "stop"},
        {"type": "stop"},
    ],
)
async def test_a_malformed_legacy_message_closes_only_its_own_connection_quietly(
    server: Server, frame: dict[str, object]
) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed
    from websockets.typing import Subprotocol

    async with httpx.AsyncClient(timeout=30) as http:
        token = await new_chat(http, server.url)
        bystander = await LiveClient.open(server.url)
        try:
            await bystander.messages(token, 1)
            url, legacy = ws_url(server.url), [Subprotocol("graphql-ws")]
            async with connect(url, subprotocols=legacy) as hostile:
                await hostile.send(json.dumps({"type": "connection_init"}))
                assert json.loads(await hostile.recv())["type"] == "connection_ack"
                await hostile.send(json.dumps(frame))
                with pytest.raises(ConnectionClosed) as closed:
                    async with asyncio.timeout(10):
                        while True:
                            await hostile.recv()  # keep-alives until the close
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
            sent = await http.post(
                f"{server.url}/api/v1/applications/{token}/chats/1/messages",
                json={"body": "still served"},
            )
            assert sent.status_code == 201, sent.text
            event = await bystander.receive()
            assert event["payload"]["data"]["messageEvents"]["message"]["body"] == "still served"
        finally:
            await bystander.close()
    _quiet(server)
