"""Bad input gets a clear error, in one JSON shape, and changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from graphql_chat.config import Settings


async def _state(http: httpx.AsyncClient, token: str) -> Any:
    return (
        (await http.get("/api/v1/applications")).json(),
        (await http.get(f"/api/v1/applications/{token}/chats")).json(),
        (await http.get(f"/api/v1/applications/{token}/chats/1/messages")).json(),
    )


@pytest.fixture
async def token(http: httpx.AsyncClient) -> str:
    created = (await http.post("/api/v1/applications", json={"name": "app"})).json()
    await http.post(f"/api/v1/applications/{created['token']}/chats", json={})
    await http.post(f"/api/v1/applications/{created['token']}/chats/1/messages", json={"body": "b"})
    return str(created["token"])


BAD = [
    ("POST", "/api/v1/applications", b'{"name": ', 400, "BAD_USER_INPUT"),
    ("POST", "/api/v1/applications", b"[1, 2]", 400, "BAD_USER_INPUT"),
    ("POST", "/api/v1/applications", b"", 400, "BAD_USER_INPUT"),
    ("POST", "/api/v1/applications", b"{}", 422, "BAD_USER_INPUT"),
    ("POST", "/api/v1/applications", b'{"name": ""}', 422, "BAD_USER_INPUT"),
    ("POST", "/api/v1/applications", b'{"name": "   "}', 422, "BAD_USER_INPUT"),
    ("POST", "/api/v1/applications", b'{"name": 12}', 422, "BAD_USER_INPUT"),
    ("POST", "/api/v1/applications", b'{"name": "' + b"n" * 256 + b'"}', 422, "BAD_USER_INPUT"),
    ("PUT", "/api/v1/applications/{token}", b'{"name": null}', 422, "BAD_USER_INPUT"),
    ("PUT", "/api/v1/applications/nope", b'{"name": "x"}', 404, "NOT_FOUND"),
    ("GET", "/api/v1/applications/nope", b"", 404, "NOT_FOUND"),
    ("POST", "/api/v1/applications/nope/chats", b"", 404, "NOT_FOUND"),
    ("POST", "/api/v1/applications/{token}/chats", b"{oops", 400, "BAD_USER_INPUT"),
    ("GET", "/api/v1/applications/{token}/chats/9", b"", 404, "NOT_FOUND"),
    ("GET", "/api/v1/applications/{token}/chats/one", b"", 422, "BAD_USER_INPUT"),
    ("GET", "/api/v1/applications/{token}/chats/-1", b"", 422, "BAD_USER_INPUT"),
    ("POST", "/api/v1/applications/{token}/chats/2/messages", b'{"body": "x"}', 404, "NOT_FOUND"),
    ("POST", "/api/v1/applications/{token}/chats/x/messages", b'{"body": "x"}', 422, None),
    ("POST", "/api/v1/applications/{token}/chats/1/messages", b'{"body": ""}', 422, None),
    ("POST", "/api/v1/applications/{token}/chats/1/messages", b'{"text": "x"}', 422, None),
    ("POST", "/api/v1/applications/{token}/chats/1/messages", b'{"body": [1]}', 422, None),
    ("PUT", "/api/v1/applications/{token}/chats/1/messages/2", b'{"body": "x"}', 404, "NOT_FOUND"),
    ("PUT", "/api/v1/applications/{token}/chats/1/messages/1.5", b'{"body": "x"}', 422, None),
    ("PUT", "/api/v1/applications/{token}/chats/1/messages/1", b'{"body": " "}', 422, None),
    ("GET", "/api/v1/applications/{token}/chats/1/messages/7", b"", 404, "NOT_FOUND"),
    ("GET", "/api/v1/applications/{token}/chats/1/messages/search", b"", 422, None),
    ("POST", "/api/v1/applications/{token}/chats/1/messages/search", b"{}", 422, None),
    ("POST", "/api/v1/applications/{token}/chats/1/messages/search", b'{"body": " "}', 422, None),
    ("GET", "/api/v1/applications/{token}/chats?limit=0", b"", 422, None),
    ("GET", "/api/v1/applications/{token}/chats?limit=x", b"", 422, None),
    ("GET", "/api/v1/applications/{token}/chats?cursor=zzz", b"", 422, None),
    ("GET", "/api/v1/nowhere", b"", 404, "NOT_FOUND"),
    ("DELETE", "/api/v1/applications/{token}", b"", 405, "METHOD_NOT_ALLOWED"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), BAD)
async def test_bad_request_is_refused_and_changes_nothing(
    http: httpx.AsyncClient,
    token: str,
    method: str,
    path: str,
    body: bytes,
    status: int,
    code: str | None,
) -> None:
    before = await _state(http, token)
    response = await http.request(
        method,
        path.format(token=token),
        content=body,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == (code or "BAD_USER_INPUT")
    assert error["message"] and "Traceback" not in response.text
    assert await _state(http, token) == before


async def test_oversized_request_is_413(http: httpx.AsyncClient, token: str) -> None:
    limit = Settings().max_request_bytes
    before = await _state(http, token)
    response = await http.post(
        f"/api/v1/applications/{token}/chats/1/messages",
        json={"body": "x" * (limit + 10)},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "BAD_USER_INPUT"
    graphql = await http.post("/graphql", json={"query": "{ __typename }", "x": "y" * limit})
    assert graphql.status_code == 413
    assert graphql.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert await _state(http, token) == before


async def test_streamed_oversized_request_is_413(http: httpx.AsyncClient, token: str) -> None:
    limit = Settings().max_request_bytes

    async def chunks() -> AsyncIterator[
        bytes
    ]:  # no content-length: the limit is counted as the body arrives
        yield b'{"body": "'
        for _ in range(limit // 65536 + 2):
            yield b"y" * 65536
        yield b'"}'

    response = await http.post(
        f"/api/v1/applications/{token}/chats/1/messages",
        content=chunks(),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413


async def test_longest_body_is_accepted(http: httpx.AsyncClient, token: str) -> None:
    longest = "é" * Settings().max_body_length  # 2 bytes each in UTF-8: over TEXT's 65,535 bytes
    base = f"/api/v1/applications/{token}/chats/1/messages"
    created = await http.post(base, json={"body": longest})
    assert created.status_code == 201
    number = created.json()["number"]
    assert (await http.get(f"{base}/{number}")).json()["body"] == longest
    too_long = await http.post(base, json={"body": longest + "é"})
    assert too_long.status_code == 422


async def test_long_documents_are_parsed_in_turn_with_the_same_answers(
    http: httpx.AsyncClient,
) -> None:
    """Documents past 2,048 characters are parsed one at a time (the event loop serves others
    between two); what they answer is what a short one would: data, a syntax error, the
    token limit."""
    padding = "# " + "x" * 3000 + "\n"
    ok = await http.post("/graphql", json={"query": padding + "{ __typename }"})
    assert ok.json() == {"data": {"__typename": "Query"}}
    broken = await http.post("/graphql", json={"query": padding + "{ __typename "})
    [error] = broken.json()["errors"]
    assert (
        error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED" and "Syntax Error" in error["message"]
    )
    many = await http.post("/graphql", json={"query": "{ " + "__typename " * 3000 + "}"})
    [error] = many.json()["errors"]
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert "tokens" in error["message"]
    # Concurrent long documents each get their own answer.
    answers = await asyncio.gather(
        *(
            http.post("/graphql", json={"query": padding + " " * i + "{ __typename }"})
            for i in range(5)
        )
    )
    assert all(a.json() == {"data": {"__typename": "Query"}} for a in answers)
