"""Rate limits against real server processes: floods of anonymous, application and user
calls are cut at their limits with 429, Retry-After and the RateLimit fields (GraphQL:
RATE_LIMITED), X-Forwarded-For counts only from a trusted proxy, other clients go on
unaffected, and in the distributed mode one limit holds across two API processes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import distributed_settings
from tests.system.conftest import Cluster, Server, free_port

pytestmark = pytest.mark.system

CREATE_APPLICATION = (
    'mutation { createApplication(input: {name: "flood"}) { application { token } } }'
)


def _server(tmp_path: Path, **environment: str) -> Server:
    started = Server(
        tmp_path / "chat.db", free_port(), tmp_path / "server.log", environment=environment
    )
    started.start()
    return started


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Server]:
    """Small limits (per hour: a test never straddles a window's end), no trusted proxy."""
    started = _server(
        tmp_path,
        RATE_LIMIT_ANONYMOUS="10/hour",
        RATE_LIMIT_USER_WRITES="5/hour",
        RATE_LIMIT_USER_READS="8/hour",
    )
    yield started
    started.stop()


async def _create_application(
    http: httpx.AsyncClient, url: str, i: int, headers: dict[str, str] | None = None
) -> httpx.Response:
    """Half over REST, half over GraphQL."""
    if i % 2:
        return await http.post(f"{url}/api/v1/applications", json={"name": "f"}, headers=headers)
    return await http.post(f"{url}/graphql", json={"query": CREATE_APPLICATION}, headers=headers)


def _refused(response: httpx.Response) -> bool:
    if response.status_code != 429:
        assert response.status_code in (200, 201), response.text
        assert "errors" not in response.json(), response.text
        return False
    assert int(response.headers["retry-after"]) >= 1
    assert response.headers["ratelimit-policy"].startswith('"anonymous";q=10;w=3600')
    assert response.headers["ratelimit"].startswith('"anonymous";r=0;t=')
    body = response.json()
    code = body["error"]["code"] if "error" in body else body["errors"][0]["extensions"]["code"]
    assert code == "RATE_LIMITED", body
    return True


async def test_an_anonymous_flood_is_cut_at_its_limit_and_others_go_on(limited: Server) -> None:
    url = limited.url
    async with httpx.AsyncClient(timeout=30) as http:
        # Made before the flood: an application's backend, busy meanwhile.
        first = await _create_application(http, url, 1)
        token = first.json()["token"]
        await http.post(f"{url}/api/v1/applications/{token}/chats", json={})

        async def backend(i: int) -> int:
            sent = await http.post(
                f"{url}/api/v1/applications/{token}/chats/1/messages", json={"body": f"m{i}"}
            )
            return sent.status_code

        # X-Forwarded-For from an untrusted peer is not believed: one address, one limit.
        flood = [
            _create_application(http, url, i, {"x-forwarded-for": f"10.0.{i}.1"}) for i in range(60)
        ]
        busy = asyncio.gather(*[backend(i) for i in range(40)])
        floods = await asyncio.gather(*flood)
        assert sum(not _refused(r) for r in floods) == 9  # the tenth was made first
        assert await busy == [201] * 40
        log = limited.log.read_text(errors="replace")
        assert "Traceback" not in log and "ERROR" not in log, log


async def test_a_trusted_proxy_s_addresses_are_limited_apart(tmp_path: Path) -> None:
    server = _server(tmp_path, RATE_LIMIT_ANONYMOUS="3/hour", TRUSTED_PROXIES="127.0.0.1")
    try:
        async with httpx.AsyncClient(timeout=30) as http:

            async def made(address: str, count: int) -> list[int]:
                return [
                    (
                        await _create_application(http, server.url, 1, {"x-forwarded-for": address})
                    ).status_code
                    for _ in range(count)
                ]

            assert await made("10.1.1.1", 5) == [201, 201, 201, 429, 429]
            assert await made("10.2.2.2", 3) == [201, 201, 201]
    finally:
        server.stop()


async def test_a_user_s_flood_limits_that_user_alone(limited: Server) -> None:
    url = limited.url
    async with httpx.AsyncClient(timeout=30) as http:
        token = (await http.post(f"{url}/api/v1/applications", json={"name": "a"})).json()["token"]
        base = f"{url}/api/v1/applications/{token}"
        await http.post(f"{base}/chats", json={})
        await http.post(f"{base}/chats/1/members", json={"add": ["ada", "bob"]})
        tokens = {}
        for user in ("ada", "bob"):
            minted = await http.post(f"{base}/user_tokens", json={"user_id": user})
            tokens[user] = minted.json()["token"]
        public = (await http.get(base)).json()["public_id"]

        def send(user: str, i: int) -> Any:
            return http.post(
                f"{url}/graphql",
                json={
                    "query": "mutation($b: String!) { createMessage(input: "
                    "{chatNumber: 1, body: $b}) { message { number } } }",
                    "variables": {"b": f"{user} {i}"},
                },
                headers={"authorization": f"Bearer {tokens[user]}"},
            )

        ada = await asyncio.gather(*[send("ada", i) for i in range(12)])
        refused = [r for r in ada if r.status_code == 429]
        assert len(refused) == 7
        for response in refused:
            assert response.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
            assert response.headers["ratelimit-policy"] == '"user_writes";q=5;w=3600'
        bob = await asyncio.gather(*[send("bob", i) for i in range(3)])
        assert [r.status_code for r in bob] == [200] * 3
        # Ada's reads have their own limit, and the backend's calls another.
        read = await http.get(
            f"{url}/api/v1/applications/{public}/chats/1/messages",
            headers={"authorization": f"Bearer {tokens['ada']}"},
        )
        assert read.status_code == 200
        messages = await http.get(f"{base}/chats/1/messages?limit=100")
        assert len(messages.json()) == 5 + 3


async def test_one_limit_holds_across_two_api_processes(tmp_path: Path) -> None:
    async with distributed_settings() as settings:
        cluster = Cluster(settings, tmp_path)
        for api in cluster.apis:
            assert api.environment is not None
            api.environment["RATE_LIMIT_ANONYMOUS"] = "10/hour"
        cluster.workers = []  # applications are written directly: no worker needed
        cluster.start()
        try:
            async with httpx.AsyncClient(timeout=30) as http:
                started = time.monotonic()
                answers = await asyncio.gather(
                    *[_create_application(http, cluster.apis[i % 2].url, i) for i in range(40)]
                )
                assert time.monotonic() - started < 60
                assert sum(not _refused(r) for r in answers) == 10
        finally:
            cluster.stop()
