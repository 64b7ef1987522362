"""An anonymous client on the internet, against a real server process: no query, body or
header can freeze the server, fail another client's write, or read what is not theirs."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest

from graphql_chat.domain import encode_cursor
from tests.metrics_text import samples, value
from tests.system.conftest import Server, all_messages, bounded, free_port

pytestmark = pytest.mark.system

JSON = {"content-type": "application/json"}


def _bomb(levels: int = 30) -> str:
    spreads = "".join(
        f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }} " for i in range(levels)
    )
    return f"query {{ ...F0 }} {spreads}fragment F{levels} on Query {{ __typename }}"


HOSTILE = {
    "fragment bomb": _bomb(),
    "wide fragments": "query { ...W } fragment W on Query { "
    + " ".join(f"a{i}: __typename" for i in range(400))
    + " }",
    "nested inline fragments": "{ " + "... on Query { " * 400 + "__typename" + " }" * 401,
    "many directives": "{ __typename " + "@skip(if: false) " * 300 + "}",
    "repeated identical fields": "{ " + "__typename " * 1000 + "}",
    "nested introspection": "{ __schema { types { fields { type { fields { type { fields { "
    "type { fields { name } } } } } } } } } }",
}


async def _timed_health(http: httpx.AsyncClient, until: asyncio.Event) -> list[float]:
    delays = []
    while not until.is_set():
        started = time.monotonic()
        assert (await http.get("/health/live")).status_code == 200
        delays.append(time.monotonic() - started)
        await asyncio.sleep(0.01)
    return delays


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_hostile_documents_are_refused_fast_and_the_server_stays_responsive(
    server: Server, name: str
) -> None:
    query = HOSTILE[name]
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        done = asyncio.Event()
        health = asyncio.create_task(_timed_health(http, done))
        started = time.monotonic()
        answers = await asyncio.gather(
            *[http.post("/graphql", json={"query": query + " " * i}) for i in range(4)]
        )
        elapsed = time.monotonic() - started
        done.set()
        delays = await health
    assert elapsed < 1.0, f"{name}: refused in {elapsed:.2f} s"
    assert max(delays) < 0.1, f"{name}: /health waited {max(delays) * 1000:.0f} ms"
    for answer in answers:
        assert answer.status_code in (200, 400), answer.text[:300]
        errors = answer.json()["errors"]
        codes = {e["extensions"]["code"] for e in errors}
        assert codes <= {"GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED"}, errors[:3]
        assert "data" not in answer.json()
        assert errors[0]["message"] != "Validation aborted."


async def test_a_document_too_large_in_bytes_is_refused_before_parsing(server: Server) -> None:
    comment = "#" + "x" * 70_000 + "\n"
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        answer = (await http.post("/graphql", json={"query": comment + "{ __typename }"})).json()
    assert answer["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert "MAX_QUERY_BYTES" in answer["errors"][0]["message"]


async def test_one_clients_bad_text_never_fails_another_clients_write(server: Server) -> None:
    """Lone surrogates through GraphQL variables, literals and JSON escapes, and NaN: each is
    refused alone, naming the field, while 24 valid creates all succeed, gapless."""
    mutation = """mutation($t: String!, $b: String!) {
      createMessage(input: {applicationToken: $t, chatNumber: 1, body: $b}) { message { number } }
    }"""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        token = (await http.post("/api/v1/applications", json={"name": "x"})).json()["token"]
        await http.post(f"/api/v1/applications/{token}/chats", json={})

        def bad(variables: str) -> bytes:
            return (
                '{"query": ' + json.dumps(mutation) + ', "variables": ' + variables + "}"
            ).encode()

        hostile = [
            http.post(
                "/graphql", content=bad(f'{{"t": "{token}", "b": "x\\ud800"}}'), headers=JSON
            ),
            http.post("/graphql", content=bad(f'{{"t": "{token}", "b": NaN}}'), headers=JSON),
            http.post("/graphql", content=bad('{"t": "x\\udfff", "b": "ok"}'), headers=JSON),
            http.post(
                f"/api/v1/applications/{token}/chats/1/messages",
                content=b'{"body": "x\\ud800y"}',
                headers=JSON,
            ),
            http.post(
                "/graphql",
                json={"query": '{ application(token: "\\ud800") { name } }'},
            ),
            http.post(
                f"/api/v1/applications/{token}/chats/1/messages/search",
                content=b'{"body": "\\udc00"}',
                headers=JSON,
            ),
        ]
        valid = [
            http.post(f"/api/v1/applications/{token}/chats/1/messages", json={"body": f"valid {i}"})
            for i in range(24)
        ]
        answers = await bounded([*hostile, *valid])
        for answer in answers[: len(hostile)]:
            assert answer.status_code in (200, 400, 422), answer.text
            if answer.status_code == 200:
                codes = [e["extensions"]["code"] for e in answer.json()["errors"]]
                assert codes and set(codes) <= {"BAD_USER_INPUT", "GRAPHQL_PARSE_FAILED"}
            else:
                assert "error" in answer.json() or "errors" in answer.json()
        assert all(a.status_code == 201 for a in answers[len(hostile) :])
        numbers = sorted(a.json()["number"] for a in answers[len(hostile) :])
        assert numbers == list(range(1, 25))
        stored = await all_messages(http, "", token, 1)
        assert sorted(stored) == list(range(1, 25))


@pytest.mark.parametrize(
    "cursor",
    [
        "bWVzc2FnZTo5MjIzMzcyMDM2ODU0Nzc1ODA4",  # message:9223372036854775808 (2**63)
        "bWVzc2FnZTrZoQ",  # "message:" and an Arabic-Indic digit one
        "bWVzc2FnZToxMA==",  # message:10, padded
        "bWVzc2FnZTowMTA",  # message:010
    ],
)
async def test_cursors_out_of_range_or_not_canonical_are_bad_input(
    server: Server, cursor: str
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        token = (await http.post("/api/v1/applications", json={"name": "x"})).json()["token"]
        await http.post(f"/api/v1/applications/{token}/chats", json={})
        rest = await http.get(
            f"/api/v1/applications/{token}/chats/1/messages", params={"cursor": cursor}
        )
        assert rest.status_code == 422 and rest.json()["error"]["field"] == "cursor"
        query = (
            f'{{ application(token: "{token}") {{ chat(number: 1) {{ '
            f'messages(after: "{cursor}") {{ nodes {{ number }} }} }} }} }}'
        )
        answer = (await http.post("/graphql", json={"query": query})).json()
        assert [e["extensions"]["code"] for e in answer["errors"]] == ["BAD_USER_INPUT"]


async def test_several_operations_without_a_name_run_none(server: Server) -> None:
    document = """
      mutation First { createApplication(input: {name: "first"}) { application { name } } }
      mutation Second { createApplication(input: {name: "second"}) { application { name } } }
    """
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        before = len((await http.get("/api/v1/applications")).json())
        answer = await http.post(
            "/graphql",
            json={"query": document},
            headers={"accept": "application/graphql-response+json"},
        )
        assert answer.status_code == 400
        assert answer.headers["content-type"].startswith("application/graphql-response+json")
        assert answer.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert len((await http.get("/api/v1/applications")).json()) == before
        named = await http.post("/graphql", json={"query": document, "operationName": "Second"})
        assert named.json()["data"]["createApplication"]["application"]["name"] == "second"


async def test_cross_site_simple_requests_are_refused(server: Server) -> None:
    """Forms and text/plain bodies (what a page on another site can send without asking)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        before = len((await http.get("/api/v1/applications")).json())
        for headers, body in (
            ({"content-type": "text/plain"}, b'{"name": "csrf"}'),
            ({"content-type": "application/x-www-form-urlencoded"}, b"name=csrf"),
            ({}, b""),
        ):
            answer = await http.post("/api/v1/applications", content=body, headers=headers)
            assert answer.status_code == 415, answer.text
        assert len((await http.get("/api/v1/applications")).json()) == before
        preflight = await http.options(
            "/api/v1/applications",
            headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
        )
        assert "access-control-allow-origin" not in preflight.headers


async def test_trailing_slashes_are_routed_and_the_host_is_never_reflected(
    server: Server,
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        token = (await http.post("/api/v1/applications", json={"name": "x"})).json()["token"]
        for path in ("/api/v1/applications/", f"/api/v1/applications/{token}/chats/"):
            answer = await http.get(path, headers={"host": "evil.example"})
            assert answer.status_code == 200 and "location" not in answer.headers
            assert "evil.example" not in answer.text


def test_a_client_that_sends_its_whole_oversized_body_reads_the_413(server: Server) -> None:
    body = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    head = (
        "POST /api/v1/applications HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + body)  # the whole body first, like urllib
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            assert chunk, "the connection closed without an answer"
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


async def test_listing_applications_needs_the_admin_token(tmp_path: Path) -> None:
    server = Server(
        tmp_path / "admin.db",
        free_port(),
        tmp_path / "admin.log",
        environment={"ADMIN_TOKEN": "s3cret-admin-token"},
    )
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            token = (await http.post("/api/v1/applications", json={"name": "x"})).json()["token"]
            anonymous = await http.get("/api/v1/applications")
            assert anonymous.status_code == 401 and token not in anonymous.text
            wrong = await http.get(
                "/api/v1/applications", headers={"authorization": "Bearer guess"}
            )
            assert wrong.status_code == 403 and token not in wrong.text
            query = {"query": "{ applications { nodes { token } } }"}
            graphql = (await http.post("/graphql", json=query)).json()
            assert graphql["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
            assert token not in json.dumps(graphql)
            admin = {"authorization": "Bearer s3cret-admin-token"}
            listed = await http.get("/api/v1/applications", headers=admin)
            assert [a["token"] for a in listed.json()] == [token]
            graphql = (await http.post("/graphql", json=query, headers=admin)).json()
            assert graphql["data"]["applications"]["nodes"] == [{"token": token}]
            # The application's own token still reads everything of it.
            own = await http.get(f"/api/v1/applications/{token}")
            assert own.status_code == 200
            playground = await http.get("/graphql", headers={"accept": "text/html"})
            assert "applications(" not in playground.text
    finally:
        server.stop()


async def test_sigterm_stops_the_server_promptly_under_load(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        token = (await http.post("/api/v1/applications", json={"name": "x"})).json()["token"]
        await http.post(f"/api/v1/applications/{token}/chats", json={})

        async def pound() -> None:
            while True:
                try:
                    await http.post("/graphql", json={"query": _bomb()})
                    await http.post(
                        f"/api/v1/applications/{token}/chats/1/messages", json={"body": "b"}
                    )
                except httpx.TransportError:
                    return

        load = [asyncio.create_task(pound()) for _ in range(16)]
        await asyncio.sleep(1)
        assert server.process is not None
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        while server.process.poll() is None:
            assert time.monotonic() - started < 12, "the server did not stop on SIGTERM"
            await asyncio.sleep(0.1)
        await asyncio.gather(*load)


async def test_request_ids_and_operation_names_from_a_client_stay_bounded(
    server: Server,
) -> None:
    """What the request log line and the metrics take from a client: an `X-Request-ID` that
    is huge, not UTF-8 or not an id is replaced by one of the server's; a malformed
    `traceparent` changes nothing; operation names past 200, or too long, count as `other`."""
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        for given in (b"x" * 10_000, b"\xff\xfe\xc0\x80", b"a b", b"<script>"):
            answer = await http.get(
                "/health", headers=[(b"x-request-id", given), (b"traceparent", b"\xff-zz")]
            )
            assert answer.status_code == 200
            assert len(answer.headers["x-request-id"]) == 32
            assert answer.headers["x-request-id"].encode() != given
        named = await bounded(
            [
                http.post("/graphql", json={"query": f"query N{n} {{ __typename }}"})
                for n in range(260)
            ]
        )
        assert all(a.status_code == 200 for a in named)
        long_name = "L" * 5000
        answer = await http.post("/graphql", json={"query": f"query {long_name} {{ __typename }}"})
        assert answer.json() == {"data": {"__typename": "Query"}}
        found = samples((await http.get("/metrics")).text)
    operations = {
        dict(labels)["operation"]
        for name, labels in found
        if name == "graphql_chat_requests_total" and dict(labels)["interface"] == "graphql"
    }
    assert len(operations - {"other", "anonymous", "none"}) <= 200
    assert long_name not in operations
    assert (
        value(
            found,
            "graphql_chat_requests_total",
            interface="graphql",
            operation="other",
            outcome="ok",
        )
        >= 61
    )


def cursor(number: int) -> str:
    return encode_cursor("message", number)


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def test_a_flood_of_distinct_pages_keeps_the_page_cache_within_its_bound(
    tmp_path: Path,
) -> None:
    """Any client can make an application and ask for its pages by every size and cursor
    there is: the embedded process keeps pages within PAGE_CACHE_BYTES, its memory does not
    grow with the pages asked for, and every page is still right."""
    limit = 300_000
    server = Server(
        tmp_path / "pages.db",
        free_port(),
        tmp_path / "pages.log",
        environment={"PAGE_CACHE_BYTES": str(limit)},
    )
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            token = (await http.post("/api/v1/applications", json={"name": "x"})).json()["token"]
            await http.post(f"/api/v1/applications/{token}/chats", json={})
            url = f"/api/v1/applications/{token}/chats/1/messages"
            for n in range(60):
                body = f"{n:04d}" + "é" * 4000
                assert (await http.post(url, json={"body": body})).status_code == 201
            stored = await all_messages(http, "", token, 1)
            # Pages of 1 to 25 messages from every cursor there is.
            pages: list[dict[str, str | int]] = [
                {"limit": size} if n is None else {"limit": size, "cursor": cursor(n)}
                for size in range(1, 26)
                for n in [None, *stored]
            ]
            assert server.process is not None
            before = _rss_bytes(server.process.pid)
            seen: list[float] = []

            async def read(params: dict[str, str | int]) -> None:
                answer = await http.get(url, params=params)
                assert answer.status_code == 200, answer.text
                got = {m["number"]: m["body"] for m in answer.json()}
                assert all(stored[n] == body for n, body in got.items())

            async def watch(until: asyncio.Event) -> None:
                while not until.is_set():
                    found = samples((await http.get("/metrics")).text)
                    seen.append(value(found, "graphql_chat_page_cache_bytes"))
                    await asyncio.sleep(0.05)

            done = asyncio.Event()
            watcher = asyncio.ensure_future(watch(done))
            for _ in range(2):
                await bounded([read(params) for params in pages], limit=32)
            done.set()
            await watcher
            grown = _rss_bytes(server.process.pid) - before
        assert len(pages) > 1000
        assert seen and max(seen) <= limit and max(seen) > 0
        # Kept without a bound, these pages would hold about 200 MB.
        assert grown < 60 * 1024 * 1024, grown
    finally:
        server.stop()
