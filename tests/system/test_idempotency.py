"""Idempotency keys across real processes: a retry after the embedded server was killed and
restarted, and concurrent retries spread over two API processes of the distributed mode."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.system.conftest import Cluster, Server, all_messages, persisted

pytestmark = pytest.mark.system

JSON = {"content-type": "application/json"}


async def test_a_retry_after_a_crash_and_restart_answers_the_first_create(
    server: Server,
) -> None:
    """The client sent a create, the server stored it and died (`kill -9`) before the client
    saw the answer: the retry, to the restarted server, gets the same message."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        token = (await http.post("/api/v1/applications", json={"name": "a"})).json()["token"]
        chat = await http.post(
            f"/api/v1/applications/{token}/chats", headers={**JSON, "Idempotency-Key": "c1"}
        )
        base = f"/api/v1/applications/{token}/chats/1/messages"
        keys = [f"send-{n}" for n in range(20)]
        first = [
            (await http.post(base, json={"body": f"m{n}"}, headers={**JSON, "Idempotency-Key": k}))
            for n, k in enumerate(keys)
        ]
    server.kill()
    server.start()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        again = await asyncio.gather(
            *[
                http.post(base, json={"body": f"m{n}"}, headers={**JSON, "Idempotency-Key": k})
                for n, k in enumerate(keys)
            ]
        )
        assert [r.json() for r in again] == [r.json() for r in first]
        retried_chat = await http.post(
            f"/api/v1/applications/{token}/chats", headers={**JSON, "Idempotency-Key": "c1"}
        )
        assert retried_chat.json() == chat.json()
        assert (await all_messages(http, "", token, 1)) == {n + 1: f"m{n}" for n in range(20)}
        conflict = await http.post(
            base, json={"body": "other"}, headers={**JSON, "Idempotency-Key": keys[0]}
        )
        assert conflict.status_code == 409


async def test_concurrent_retries_on_two_api_processes_make_one_message(cluster: Cluster) -> None:
    """Each create sent five times at once, spread over both API processes: one message per
    key, every copy answered with its number."""
    apis = [api.url for api in cluster.apis]
    async with httpx.AsyncClient(timeout=30) as http:
        token = (await http.post(f"{apis[0]}/api/v1/applications", json={"name": "a"})).json()[
            "token"
        ]
        await http.post(f"{apis[0]}/api/v1/applications/{token}/chats", headers=JSON)
        path = f"/api/v1/applications/{token}/chats/1/messages"

        async def send(n: int, copy: int) -> tuple[int, int]:
            response = await http.post(
                apis[copy % 2] + path,
                json={"body": f"m{n}"},
                headers={**JSON, "Idempotency-Key": f"k{n}"},
            )
            assert response.status_code == 201, response.text
            return n, response.json()["number"]

        answers = await asyncio.gather(*[send(n, copy) for n in range(40) for copy in range(5)])
        numbers: dict[int, set[int]] = {}
        for n, number in answers:
            numbers.setdefault(n, set()).add(number)
        assert all(len(found) == 1 for found in numbers.values())
        assert sorted(found.pop() for found in numbers.values()) == list(range(1, 41))
        await persisted(http, apis[1], token, {1: 40})
        stored = await all_messages(http, apis[1], token, 1)
        assert len(stored) == 40
        counted = (await http.get(f"{apis[0]}/api/v1/applications/{token}/chats/1")).json()
        assert counted["messages_count"] == 40


async def test_hostile_keys_change_nothing_and_reach_no_other_application(
    server: Server,
) -> None:
    """Keys that are too long, empty, of control characters or of raw non-UTF-8 bytes are
    refused and change nothing; a key another application used is not theirs to replay."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        mine = (await http.post("/api/v1/applications", json={"name": "a"})).json()["token"]
        theirs = (await http.post("/api/v1/applications", json={"name": "b"})).json()["token"]
        for token in (mine, theirs):
            await http.post(f"/api/v1/applications/{token}/chats", headers=JSON)
        base = f"/api/v1/applications/{mine}/chats/1/messages"
        for key in (b"x" * 10_000, b"", b"a\x01b", b'""'):
            refused = await http.post(
                base,
                json={"body": "b"},
                headers=[(b"content-type", b"application/json"), (b"idempotency-key", key)],
            )
            assert refused.status_code in (400, 422, 431), (key[:10], refused.status_code)
        # Raw bytes that are not UTF-8 are a key like any other text (read as Latin-1).
        raw = [(b"content-type", b"application/json"), (b"idempotency-key", b"\xff\xfe\xfd")]
        first = await http.post(base, json={"body": "kept"}, headers=raw)
        again = await http.post(base, json={"body": "kept"}, headers=raw)
        assert first.status_code == again.status_code == 201
        assert first.json() == again.json()
        assert (await all_messages(http, "", mine, 1)) == {1: "kept"}
        # Their application, the same key and body: a message of their own, not mine back.
        other = await http.post(
            f"/api/v1/applications/{theirs}/chats/1/messages",
            json={"body": "kept"},
            headers=raw,
        )
        assert other.status_code == 201 and other.json()["number"] == 1
        assert (await all_messages(http, "", theirs, 1)) == {1: "kept"}
        assert (await all_messages(http, "", mine, 1)) == {1: "kept"}
        assert (await http.get(f"/api/v1/applications/{mine}/chats/1")).json()[
            "messages_count"
        ] == 1
