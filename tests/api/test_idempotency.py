"""Retry-safe creates: an idempotency key makes a retried create answer the first one's
result and create nothing more, in both modes, over REST and GraphQL."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

JSON = {"content-type": "application/json"}

CREATE_MESSAGE = """mutation($t: String!, $c: Int!, $b: String!, $k: String) {
  createMessage(input: {applicationToken: $t, chatNumber: $c, body: $b, idempotencyKey: $k}) {
    message { number body createdAt }
  }
}"""
CREATE_CHAT = """mutation($t: String!, $k: String) {
  createChat(input: {applicationToken: $t, idempotencyKey: $k}) { chat { number createdAt } }
}"""


async def _app(http: httpx.AsyncClient) -> str:
    token: str = (await http.post("/api/v1/applications", json={"name": "a"})).json()["token"]
    return token


async def _graphql(http: httpx.AsyncClient, query: str, **variables: Any) -> dict[str, Any]:
    answer: dict[str, Any] = (
        await http.post("/graphql", json={"query": query, "variables": variables})
    ).json()
    return answer


async def _stored(http: httpx.AsyncClient, token: str, chat: int = 1) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (
        await http.get(f"/api/v1/applications/{token}/chats/{chat}/messages", params={"limit": 100})
    ).json()
    return found


async def test_a_rest_retry_answers_the_first_create_and_creates_nothing_more(
    http: httpx.AsyncClient,
) -> None:
    token = await _app(http)
    chats = f"/api/v1/applications/{token}/chats"
    first_chat = await http.post(chats, headers={**JSON, "Idempotency-Key": "chat-1"})
    again_chat = await http.post(chats, headers={**JSON, "Idempotency-Key": "chat-1"})
    assert first_chat.status_code == again_chat.status_code == 201
    assert first_chat.json() == again_chat.json()
    assert (await http.post(chats, headers=JSON)).json()["number"] == 2

    base = f"{chats}/1/messages"
    keyed = {**JSON, "Idempotency-Key": "8e03978e-40d5-43e8-bc93-6894a57f9324"}
    first = await http.post(base, json={"body": "hello"}, headers=keyed)
    again = await http.post(base, json={"body": "hello"}, headers=keyed)
    # The header as the IETF draft writes it (a structured string) is the same key.
    quoted = {**JSON, "Idempotency-Key": '"8e03978e-40d5-43e8-bc93-6894a57f9324"'}
    third = await http.post(base, json={"body": "hello"}, headers=quoted)
    assert first.status_code == again.status_code == third.status_code == 201
    assert first.json() == again.json() == third.json()

    changed = await http.post(base, json={"body": "something else"}, headers=keyed)
    assert changed.status_code == 409
    assert changed.json()["error"]["code"] == "CONFLICT"
    elsewhere = await http.post(f"{chats}/2/messages", json={"body": "hello"}, headers=keyed)
    assert elsewhere.status_code == 409
    assert [(m["number"], m["body"]) for m in await _stored(http, token)] == [(1, "hello")]
    assert (await http.get(f"{chats}/1")).json()["messages_count"] == 1
    assert await _stored(http, token, 2) == []


async def test_a_bad_key_is_refused_and_changes_nothing(http: httpx.AsyncClient) -> None:
    token = await _app(http)
    chats = f"/api/v1/applications/{token}/chats"
    await http.post(chats, headers=JSON)
    for key in ("", "x" * 256, '""'):
        refused = await http.post(
            f"{chats}/1/messages", json={"body": "b"}, headers={**JSON, "Idempotency-Key": key}
        )
        assert refused.status_code == 422, key
        assert refused.json()["error"]["field"] == "idempotencyKey"
    answer = await _graphql(http, CREATE_MESSAGE, t=token, c=1, b="b", k="tab\there")
    assert answer["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert await _stored(http, token) == []


async def test_concurrent_graphql_retries_make_one_message(http: httpx.AsyncClient) -> None:
    """Twenty copies of one create in flight at once (a client retrying on timeouts): one
    message, and every copy answers its number and time."""
    token = await _app(http)
    chat = await _graphql(http, CREATE_CHAT, t=token, k="c")
    assert chat["data"]["createChat"]["chat"]["number"] == 1
    retried = await _graphql(http, CREATE_CHAT, t=token, k="c")
    assert retried["data"] == chat["data"]
    answers = await asyncio.gather(
        *[_graphql(http, CREATE_MESSAGE, t=token, c=1, b="hi", k="send-1") for _ in range(20)]
    )
    messages = [a["data"]["createMessage"]["message"] for a in answers]
    assert all(m == messages[0] for m in messages)
    assert messages[0]["number"] == 1
    conflict = await _graphql(http, CREATE_MESSAGE, t=token, c=1, b="bye", k="send-1")
    assert conflict["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert conflict["data"] is None
    unkeyed = await _graphql(http, CREATE_MESSAGE, t=token, c=1, b="hi")
    assert unkeyed["data"]["createMessage"]["message"]["number"] == 2
    assert [m["number"] for m in await _stored(http, token)] == [1, 2]
