"""A graphql-transport-ws client over a real WebSocket (the `websockets` library)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

MESSAGE_EVENTS = """subscription($t: String!, $c: Int!, $after: Int) {
  messageEvents(applicationToken: $t, chatNumber: $c, afterNumber: $after) {
    kind message { number body }
  }
}"""

CHAT_EVENTS = """subscription($t: String!) {
  chatEvents(applicationToken: $t) { kind chat { number messagesCount } }
}"""


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://") + "/graphql"


class LiveClient:
    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self._ids = itertools.count(1)

    @classmethod
    async def open(cls, http_url: str, init: bool = True, **options: Any) -> LiveClient:
        connection = await connect(
            ws_url(http_url), subprotocols=[Subprotocol("graphql-transport-ws")], **options
        )
        client = cls(connection)
        if init:
            await client.send({"type": "connection_init"})
            assert (await client.receive())["type"] == "connection_ack"
        return client

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(message))

    async def receive(self, within: float = 10) -> dict[str, Any]:
        # Not `asyncio.wait_for`: on Python 3.11 it can swallow a cancellation that arrives as
        # a frame does (the collector's `close` then waited for the next frame, 120 s).
        async with asyncio.timeout(within):
            frame = await self.connection.recv()
        assert isinstance(frame, str), "the protocol speaks in text frames"
        message: dict[str, Any] = json.loads(frame)
        return message

    async def subscribe(self, query: str, variables: dict[str, Any]) -> str:
        operation = str(next(self._ids))
        await self.send(
            {
                "id": operation,
                "type": "subscribe",
                "payload": {"query": query, "variables": variables},
            }
        )
        return operation

    async def messages(self, token: str, chat: int, after: int | None = None) -> str:
        return await self.subscribe(MESSAGE_EVENTS, {"t": token, "c": chat, "after": after})

    async def close(self) -> None:
        await self.connection.close()


class Collector:
    """Every messageEvents event of one subscription, read in the background."""

    def __init__(self, client: LiveClient) -> None:
        self.client = client
        self.events: list[tuple[str, int, str]] = []
        self.others: list[dict[str, Any]] = []
        self._grew = asyncio.Event()
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            message = await self.client.receive(within=120)
            if message["type"] == "next" and "errors" not in message["payload"]:
                event = message["payload"]["data"]["messageEvents"]
                self.events.append(
                    (event["kind"], event["message"]["number"], event["message"]["body"])
                )
            else:
                self.others.append(message)
            self._grew.set()

    def created(self) -> list[int]:
        return [number for kind, number, _ in self.events if kind == "CREATED"]

    async def until(self, count: int, within: float = 30) -> None:
        """Wait until `count` CREATED events have arrived."""
        await self.holds(lambda: len(self.created()) >= count, within)

    async def holds(self, condition: Callable[[], bool], within: float = 30) -> None:
        """Wait until `condition()` is true of what arrived."""
        async with asyncio.timeout(within):
            while not condition():
                if self.task.done():
                    self.task.result()
                self._grew.clear()
                await self._grew.wait()

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.client.close()


async def member_token(http: httpx.AsyncClient, base: str, token: str, user: str = "ada") -> str:
    """A user token for `user`, a member of chat 1 of the application `token`."""
    minted = await http.post(
        f"{base}/api/v1/applications/{token}/user_tokens", json={"user_id": user}
    )
    assert minted.status_code == 201, minted.text
    added = await http.post(
        f"{base}/api/v1/applications/{token}/chats/1/members", json={"add": [user]}
    )
    assert added.status_code == 200, added.text
    user_token: str = minted.json()["token"]
    return user_token


async def new_chat(http: httpx.AsyncClient, base: str) -> str:
    """A new application with chat 1; its token."""
    response = await http.post(f"{base}/api/v1/applications", json={"name": "live"})
    token: str = response.json()["token"]
    created = await http.post(f"{base}/api/v1/applications/{token}/chats", json={})
    assert created.status_code == 201, created.text
    return token
