"""The CPU of one create, in process: the embedded app called directly (no network, no fsync).

    python -m bench.inprocess [--calls 5000]

Creates messages one after another through the ASGI app (httpx's ASGI transport) on a fresh
SQLite file with `SQLITE_SYNCHRONOUS=OFF`, over REST and over GraphQL, then reads pages of
them (20 from the start, the newest 50) the same ways, with the page cache and without it
(what a page costs when its chat was just written to), and the creates and the first page
again as a user of the application (a user token, a member of the chat), and prints the mean
microseconds per call: of CPU (all the process's threads; what bounds throughput) and of
wall-clock time (mostly the hops to the writer thread and back). Run it on two commits
to compare what a change costs a request.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from bench.load import NEWEST, PAGE
from graphql_chat import migrations
from graphql_chat.app import create_app
from graphql_chat.config import Settings
from graphql_chat.usecases import ChatService

JSON = {"content-type": "application/json"}
MUTATION = """mutation($t: String!, $b: String!) {
  createMessage(input: {applicationToken: $t, chatNumber: 1, body: $b}) { message { number } }
}"""
USER_MUTATION = """mutation($b: String!) {
  createMessage(input: {chatNumber: 1, body: $b}) { message { number } }
}"""
USER_PAGE = """{ viewer { chat(number: 1) { messages(first: 20) { nodes { number body } } } } }"""


async def _measure(calls: int) -> dict[str, tuple[float, float]]:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}"
        await migrations.upgrade_async(url)
        figures: dict[str, tuple[float, float]] = {}
        token = user = ""
        # The same database twice: with the page cache (the default), then without it (what a
        # page costs when its chat was just written to).
        for cache in (True, False):
            # Every call is counted against its rate limit, set high enough to refuse none.
            unrefused = "1000000/second"
            settings = Settings(
                database_url=url,
                sqlite_synchronous="OFF",
                rate_limit_anonymous=unrefused,
                rate_limit_application=unrefused,
                rate_limit_user_writes=unrefused,
                rate_limit_user_reads=unrefused,
            )
            if not cache:
                settings = settings.model_copy(update={"page_cache_bytes": 0})
            app = create_app(settings, migrate=False)
            transport = httpx.ASGITransport(app=app)
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http,
            ):
                if cache:
                    answer = await http.post("/api/v1/applications", json={"name": "b"})
                    token = answer.json()["token"]
                    await http.post(f"/api/v1/applications/{token}/chats", headers=JSON, json={})
                    minted = await http.post(
                        f"/api/v1/applications/{token}/user_tokens",
                        json={"user_id": "ada", "expires_in": 3600},
                    )
                    user = minted.json()["token"]
                    await http.post(
                        f"/api/v1/applications/{token}/chats/1/members", json={"add": ["ada"]}
                    )
                figures.update(await _scenarios(http, token, user, calls, cache))
                if cache:
                    service = app.state.container.service
                    figures.update(await _checks(service, token, user, calls))
        return figures


async def _scenarios(
    http: httpx.AsyncClient, token: str, user: str, calls: int, cache: bool
) -> dict[str, tuple[float, float]]:
    rest = f"/api/v1/applications/{token}/chats/1/messages"
    as_user = {"authorization": f"Bearer {user}"}
    public = (await http.get(f"/api/v1/applications/{token}")).json().get("public_id")
    user_rest = f"/api/v1/applications/{public}/chats/1/messages"

    def user_over_rest(i: int) -> Awaitable[httpx.Response]:
        return http.post(user_rest, json={"body": f"m {i}"}, headers=as_user)

    def user_over_graphql(i: int) -> Awaitable[httpx.Response]:
        variables = {"b": f"m {i}"}
        return http.post(
            "/graphql", json={"query": USER_MUTATION, "variables": variables}, headers=as_user
        )

    def user_page_rest(i: int) -> Awaitable[httpx.Response]:
        return http.get(f"{user_rest}?limit=20", headers=as_user)

    def user_page_graphql(i: int) -> Awaitable[httpx.Response]:
        return http.post("/graphql", json={"query": USER_PAGE}, headers=as_user)

    def over_rest(i: int) -> Awaitable[httpx.Response]:
        return http.post(rest, json={"body": f"m {i}"})

    def over_graphql(i: int) -> Awaitable[httpx.Response]:
        variables = {"t": token, "b": f"m {i}"}
        return http.post("/graphql", json={"query": MUTATION, "variables": variables})

    def page_rest(i: int) -> Awaitable[httpx.Response]:
        return http.get(f"{rest}?limit=20")

    def page_graphql(i: int) -> Awaitable[httpx.Response]:
        return http.post("/graphql", json={"query": PAGE, "variables": {"t": token}})

    def newest_rest(i: int) -> Awaitable[httpx.Response]:
        return http.get(f"{rest}?last=50")

    def newest_graphql(i: int) -> Awaitable[httpx.Response]:
        return http.post("/graphql", json={"query": NEWEST, "variables": {"t": token}})

    reads = [
        ("REST messages page (20)", page_rest),
        ("GraphQL messages page (20)", page_graphql),
        ("REST newest page (last 50)", newest_rest),
        ("GraphQL newest page (last 50)", newest_graphql),
    ]
    if cache:
        scenarios = [
            ("REST createMessage", over_rest),
            ("GraphQL createMessage", over_graphql),
            *reads,
            ("REST createMessage, user token", user_over_rest),
            ("GraphQL createMessage, user token", user_over_graphql),
            ("REST messages page (20), user token", user_page_rest),
            ("GraphQL messages page (20), user token", user_page_graphql),
        ]
    else:
        scenarios = [(f"{name}, page cache off", call) for name, call in reads]
    figures: dict[str, tuple[float, float]] = {}
    for name, call in scenarios:
        for i in range(200):  # warm up: caches, the allocator, the JIT-less paths
            await call(i)
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(calls):
            response = await call(i)
            assert response.status_code in (200, 201), response.text
        figures[name] = (
            (time.process_time() - cpu) / calls * 1e6,
            (time.perf_counter() - started) / calls * 1e6,
        )
    if cache:  # the same creates by the backend and by a user, call for call in turn
        for name, by_backend, by_user in (
            ("REST createMessage", over_rest, user_over_rest),
            ("GraphQL createMessage", over_graphql, user_over_graphql),
        ):
            figures.update(await _in_turn(name, by_backend, by_user, calls))
    return figures


Call = Callable[[int], Awaitable[httpx.Response]]


async def _in_turn(
    name: str, backend: Call, user: Call, calls: int
) -> dict[str, tuple[float, float]]:
    """The CPU of each of two calls made one after the other, `calls` times: what the second
    costs more, without the drift between two scenarios run apart (the database grows)."""
    spent = {"backend": 0.0, "user": 0.0}
    for i in range(calls):
        for kind, call in (("backend", backend), ("user", user)):
            cpu = time.process_time()
            response = await call(i)
            spent[kind] += time.process_time() - cpu
            assert response.status_code in (200, 201), response.text
    return {f"{name} in turn, {kind}": (total / calls * 1e6, 0.0) for kind, total in spent.items()}


async def _checks(
    service: ChatService, token: str, user_token: str, calls: int
) -> dict[str, tuple[float, float]]:
    """What a user's call adds before its use case, alone (the end-to-end figures above move
    by more than it from run to run): verifying the token, the membership, the rate limit,
    as a warm process does it (for a token it has seen; the membership and the secrets as it
    remembered them for ACCESS_RECHECK_MS), and for a token it has not seen."""
    warmup = 200
    # Tokens this process has not seen (each its own expiry, so each its own text).
    fresh = [
        f"Bearer {(await service.users.mint(token, 'ada', 60 + i)).token}"
        for i in range(warmup + calls)
    ]

    async def checked(authorization: str) -> None:
        user = await service.users.authenticate(authorization)
        assert user is not None
        await service.members.require(user, 1)
        await service.throttle.user(user, writes=True)

    figures: dict[str, tuple[float, float]] = {}
    for name, tokens in (
        ("user token, membership and rate limit checked", [f"Bearer {user_token}"]),
        ("the same, a token this process has not seen", fresh),
    ):
        for i in range(warmup):
            await checked(tokens[i % len(tokens)])
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(warmup, warmup + calls):
            await checked(tokens[i % len(tokens)])
        figures[name] = (
            (time.process_time() - cpu) / calls * 1e6,
            (time.perf_counter() - started) / calls * 1e6,
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    for name, (cpu, wall) in asyncio.run(_measure(args.calls)).items():
        timed = f", {wall:.0f} µs of wall-clock time" if wall else ""
        print(f"{name}: {cpu:.0f} µs of CPU{timed} per call")


if __name__ == "__main__":
    main()
