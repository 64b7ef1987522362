"""Arbitrary Unicode (lone surrogates, NUL and other control characters included) through
every text input of both APIs, against a real server process, while another client writes:
never a 5xx, never an internal error, and the other client's writes all succeed, gapless."""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.system.conftest import Server

pytestmark = pytest.mark.system

_CHARACTERS = st.one_of(
    st.characters(),
    st.integers(0xD800, 0xDFFF).map(chr),  # lone surrogates: JSON can escape them
    st.sampled_from(["\x00", "\x01", "\x1b", "\x7f", "\u2028", "\ufeff", "\U0010ffff", " "]),
    # Search query syntax (FTS5's and Lucene's): every term must stay a literal substring.
    st.sampled_from(['"', "*", ":", "^", "(", ")", "NEAR(", " OR ", " NOT ", "\\", "\ue000"]),
)
TEXT = st.lists(_CHARACTERS, max_size=40).map("".join)

GRAPHQL = [
    (
        "mutation($t: String!, $s: String!) { createMessage(input: "
        "{applicationToken: $t, chatNumber: 2, body: $s}) { message { number } } }"
    ),
    "mutation($t: String!, $s: String!) { createApplication(input: {name: $s}) "
    "{ application { name } } }",
    "query($t: String!, $s: String!) { application(token: $s) { name } a: application(token: $t)"
    " { chat(number: 2) { searchMessages(query: $s) { nodes { number } } "
    "messages(after: $s) { nodes { number } } } } }",
    "mutation($t: String!, $s: String!) { updateApplication(input: {token: $t, name: $s}) "
    "{ application { name } } }",
    "mutation($t: String!, $s: String!) { updateApplication(input: {token: $s, name: $t}) "
    "{ application { name } } }",
    "mutation($t: String!, $s: String!) { createChat(input: {applicationToken: $s}) "
    "{ chat { number } } }",
    "mutation($t: String!, $s: String!) { createMessage(input: {applicationToken: $s, "
    "chatNumber: 1, body: $t}) { message { number } } }",
]


def _send(http: httpx.Client, method: str, path: str, payload: Any) -> httpx.Response:
    # json.dumps escapes what UTF-8 cannot carry (`\ud800`), as a hostile client would.
    body = json.dumps(payload).encode()
    return http.request(method, path, content=body, headers={"content-type": "application/json"})


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text[:300]
    if response.headers.get("content-type", "").startswith("application/json") and (
        "errors" in response.text
    ):
        found = response.json()
        codes = {e.get("extensions", {}).get("code") for e in found.get("errors", [])}
        assert "INTERNAL_SERVER_ERROR" not in codes, found


def test_arbitrary_text_never_breaks_the_server_or_other_writes(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        token = http.post("/api/v1/applications", json={"name": "fuzz"}).json()["token"]
        for _ in range(2):
            assert http.post(f"/api/v1/applications/{token}/chats", json={}).status_code == 201
        assert (
            http.post(
                f"/api/v1/applications/{token}/chats/2/messages", json={"body": "first"}
            ).status_code
            == 201
        )

        stop = threading.Event()
        written: list[int] = []
        refused: list[str] = []

        def valid_writes() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as other:
                i = 0
                while not stop.is_set():
                    i += 1
                    answer = other.post(
                        f"/api/v1/applications/{token}/chats/1/messages",
                        json={"body": f"valid {i}"},
                    )
                    if answer.status_code == 201:
                        written.append(answer.json()["number"])
                    else:
                        refused.append(answer.text)

        writer = threading.Thread(target=valid_writes)
        writer.start()
        try:

            @settings(
                max_examples=60,
                deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture],
            )
            @given(text=TEXT)
            def hostile(text: str) -> None:
                base = f"/api/v1/applications/{token}"
                _check(_send(http, "POST", "/api/v1/applications", {"name": text}))
                _check(_send(http, "PUT", base, {"name": text}))
                _check(_send(http, "POST", f"{base}/chats/2/messages", {"body": text}))
                _check(_send(http, "PUT", f"{base}/chats/2/messages/1", {"body": text}))
                _check(_send(http, "POST", f"{base}/chats/2/messages/search", {"body": text}))
                raw = quote(text.encode("utf-8", "surrogatepass"), safe="")
                _check(http.get(f"{base}/chats/2/messages/search?q={raw}"))
                _check(http.get(f"{base}/chats/2/messages?cursor={raw}"))
                _check(http.get(f"/api/v1/applications/{raw}"))
                for query in GRAPHQL:
                    variables = {"t": token, "s": text}
                    _check(
                        _send(http, "POST", "/graphql", {"query": query, "variables": variables})
                    )

            hostile()
        finally:
            stop.set()
            writer.join(timeout=30)
        assert refused == []
        assert len(written) > 10, "the valid writer hardly ran: nothing was exercised"
        assert sorted(written) == list(range(1, len(written) + 1))
        stored = http.get(f"/api/v1/applications/{token}/chats/1").json()
        assert stored["messages_count"] == len(written)
