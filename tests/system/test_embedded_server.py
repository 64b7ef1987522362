"""The contract against a real server process over HTTP: numbering, durability, ordering."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.system.conftest import Server, all_messages, bounded, create_message

pytestmark = pytest.mark.system


UPDATE = """mutation($t: String!, $c: Int!, $n: Int!, $b: String!) {
  updateMessage(input: {applicationToken: $t, chatNumber: $c, number: $n, body: $b}) {
    message { number body }
  }
}"""


def _client(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.url,
        timeout=30,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
    )


async def _application(http: httpx.AsyncClient) -> str:
    token: str = (await http.post("/api/v1/applications", json={"name": "load"})).json()["token"]
    return token


async def _create_message(http: httpx.AsyncClient, token: str, chat: int, body: str) -> int:
    return await create_message(http, "", token, chat, body)


async def test_concurrent_creates_are_numbered_uniquely_without_gaps(server: Server) -> None:
    async with _client(server) as http:
        token = await _application(http)
        chats = await bounded(
            [http.post(f"/api/v1/applications/{token}/chats", json={}) for _ in range(100)]
        )
        assert sorted(r.json()["number"] for r in chats) == list(range(1, 101))

        plan = [(1 + i % 4, f"body {i}") for i in range(1200)]
        numbers = await bounded([_create_message(http, token, c, b) for c, b in plan])

        for chat in range(1, 5):
            drawn = sorted(n for (c, _), n in zip(plan, numbers, strict=True) if c == chat)
            assert drawn == list(range(1, 301))
            stored = await all_messages(http, "", token, chat)
            assert list(stored) == list(range(1, 301))
            expected = {n: b for (c, b), n in zip(plan, numbers, strict=True) if c == chat}
            assert stored == expected
            counted = (await http.get(f"/api/v1/applications/{token}/chats/{chat}")).json()
            assert counted["messages_count"] == 300
        app = (await http.get(f"/api/v1/applications/{token}")).json()
        assert app["chats_count"] == 100


async def test_write_before_read_and_last_update_wins(server: Server) -> None:
    async with _client(server) as http:
        token = await _application(http)

        async def conversation(i: int) -> tuple[int, int, str]:
            chat = (await http.post(f"/api/v1/applications/{token}/chats", json={})).json()[
                "number"
            ]
            number = await _create_message(http, token, chat, f"draft {i}")
            final = ""
            for edit in range(3):
                final = f"edit {edit} of {i}"
                result = (
                    await http.post(
                        "/graphql",
                        json={
                            "query": UPDATE,
                            "variables": {"t": token, "c": chat, "n": number, "b": final},
                        },
                    )
                ).json()
                assert result["data"]["updateMessage"]["message"]["body"] == final
            return chat, number, final

        results = await bounded([conversation(i) for i in range(50)])
        for chat, number, final in results:
            url = f"/api/v1/applications/{token}/chats/{chat}/messages/{number}"
            stored = (await http.get(url)).json()
            assert (stored["number"], stored["body"]) == (number, final)


NEWEST = """query($t: String!, $c: Int!) {
  application(token: $t) { chat(number: $c) { messages(last: 30) { nodes { number body } } } }
}"""


async def test_pages_answered_from_memory_follow_every_acknowledged_write(server: Server) -> None:
    """Readers of the newest page (which the embedded process keeps in memory between writes)
    and writers of two applications' chats at once: after each acknowledged create or edit,
    the writer's next page, over REST or GraphQL, holds it; no page holds another
    application's message."""
    async with _client(server) as http:
        tokens = [await _application(http) for _ in range(2)]
        for token in tokens:
            assert (await http.post(f"/api/v1/applications/{token}/chats", json={})).is_success

        async def newest(token: str, over_graphql: bool) -> dict[int, str]:
            if over_graphql:
                variables = {"t": token, "c": 1}
                result = (
                    await http.post("/graphql", json={"query": NEWEST, "variables": variables})
                ).json()
                nodes = result["data"]["application"]["chat"]["messages"]["nodes"]
            else:
                response = await http.get(f"/api/v1/applications/{token}/chats/1/messages?last=30")
                assert response.status_code == 200, response.text
                nodes = response.json()
            page = {m["number"]: m["body"] for m in nodes}
            assert all(body.startswith(token[:8]) for body in page.values())
            return page

        async def writer(token: str, w: int) -> None:
            for i in range(12):
                number = await _create_message(http, token, 1, f"{token[:8]} {w}.{i}")
                page = await newest(token, i % 2 == 0)
                assert page.get(number) == f"{token[:8]} {w}.{i}" or number < min(page)
                if i % 4 == 0:
                    edited = f"{token[:8]} {w}.{i} edited"
                    url = f"/api/v1/applications/{token}/chats/1/messages/{number}"
                    assert (await http.put(url, json={"body": edited})).status_code == 200
                    page = await newest(token, i % 2 == 1)
                    assert page.get(number) == edited or number < min(page)

        async def reader(token: str) -> None:
            for i in range(40):
                await newest(token, i % 2 == 0)

        await asyncio.gather(
            *(writer(token, w) for token in tokens for w in range(8)),
            *(reader(token) for token in tokens for _ in range(4)),
        )
        for token in tokens:
            stored = await all_messages(http, "", token, 1)
            assert len(stored) == 96
            newest_stored = dict(sorted(stored.items())[-30:])
            assert await newest(token, False) == newest_stored
            assert await newest(token, True) == newest_stored


async def test_acknowledged_writes_survive_kill_9(server: Server) -> None:
    acknowledged: dict[int, str] = {}
    async with _client(server) as http:
        token = await _application(http)
        await http.post(f"/api/v1/applications/{token}/chats", json={})

        async def writer(worker: int) -> None:
            for i in range(10_000):
                body = f"w{worker} #{i}"
                try:
                    number = await _create_message(http, token, 1, body)
                except (httpx.TransportError, AssertionError, ValueError):
                    return
                acknowledged[number] = body
                if len(acknowledged) >= 500:
                    enough.set()

        enough = asyncio.Event()
        writers = [asyncio.create_task(writer(w)) for w in range(40)]
        await asyncio.wait_for(enough.wait(), timeout=60)
        server.kill()
        await asyncio.wait_for(asyncio.gather(*writers), timeout=60)

    server.start()
    async with _client(server) as http:
        base = f"/api/v1/applications/{token}/chats/1"
        stored = await all_messages(http, "", token, 1)
        assert len(acknowledged) >= 500
        missing = {n: b for n, b in acknowledged.items() if stored.get(n) != b}
        assert missing == {}
        assert (await http.get(base)).json()["messages_count"] == len(stored)
        after = await _create_message(http, token, 1, "after restart")
        assert after == max(stored) + 1
