"""User tokens and membership against real server processes, as an attacker holding a user
token would try them: forged, stale and malformed tokens, other people's chats on every
path, removal while subscribed, and membership changes across two API processes."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import httpx
import jwt
import pytest

from tests.system.conftest import Cluster, Server
from tests.system.live_client import LiveClient

pytestmark = pytest.mark.system

VIEWER = "{ viewer { id } }"


async def _gql(
    http: httpx.AsyncClient, url: str, query: str, token: str | None = None, **variables: Any
) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await http.post(
        f"{url}/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _codes(answer: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in answer.get("errors", [])]


async def _application(http: httpx.AsyncClient, url: str) -> dict[str, str]:
    answer = await _gql(
        http,
        url,
        'mutation { createApplication(input: {name: "x"}) '
        "{ application { token publicId signingSecret } } }",
    )
    app: dict[str, str] = answer["data"]["createApplication"]["application"]
    return app


def _claims(app: dict[str, str], user: str = "ada", **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": app["publicId"], "sub": user, "iat": now, "exp": now + 600, **changes}


def _sign(app: dict[str, str], user: str = "ada", secret: str | None = None, **changes: Any) -> str:
    return jwt.encode(_claims(app, user, **changes), secret or app["signingSecret"], "HS256")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _raw(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        [_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(signature)]
    )


async def test_forged_stale_and_malformed_user_tokens_are_refused_and_change_nothing(
    server: Server,
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        app, other = await _application(http, server.url), await _application(http, server.url)
        now = int(time.time())
        good = _sign(app)
        header, _, signature = good.split(".")
        tampered_claims = _claims(app, "bob")
        tampered = ".".join([header, _b64(json.dumps(tampered_claims).encode()), signature])
        bad: dict[str, str] = {
            "another application's secret": _sign(app, secret=other["signingSecret"]),
            "another application's id": _sign(other, secret=app["signingSecret"]),
            "expired": _sign(app, iat=now - 7200, exp=now - 3600),
            "not valid yet": _sign(app, nbf=now + 3600),
            "issued in the future": _sign(app, iat=now + 3600),
            "beyond the longest lifetime": _sign(app, exp=now + 90 * 86_400),
            "alg none": _raw({"alg": "none", "typ": "JWT"}, _claims(app)),
            "alg none, signed": _raw({"alg": "none"}, _claims(app), b"x" * 32),
            "RS256 header": _raw({"alg": "RS256", "typ": "JWT"}, _claims(app), b"x" * 256),
            "HS512": jwt.encode(_claims(app), app["signingSecret"] * 2, "HS512"),
            "tampered payload": tampered,
            "no exp": jwt.encode(
                {k: v for k, v in _claims(app).items() if k != "exp"}, app["signingSecret"]
            ),
            "no iat": jwt.encode(
                {k: v for k, v in _claims(app).items() if k != "iat"}, app["signingSecret"]
            ),
            "no sub": jwt.encode(
                {k: v for k, v in _claims(app).items() if k != "sub"}, app["signingSecret"]
            ),
            "control characters in sub": _sign(app, user="ada\x00\x1b[31m"),
            "a lone surrogate in sub": _raw(
                {"alg": "HS256"}, {**_claims(app), "sub": "\ud800"}, b"x" * 32
            ),
            "an empty sub": _sign(app, user=""),
            "a sub too long": _sign(app, user="a" * 256),
            "a number for sub": jwt.encode({**_claims(app), "sub": 7}, app["signingSecret"]),
            "huge": _sign(app, padding="x" * 6000),
            "garbage": "a.b.c",
            "an unknown application": _sign({**app, "publicId": "app_nobody"}),
        }
        for why, token in bad.items():
            answer = await _gql(http, server.url, VIEWER, token)
            assert _codes(answer) == ["UNAUTHENTICATED"], why
            rest = await http.post(
                f"{server.url}/api/v1/applications/{app['publicId']}/chats",
                json={},
                headers={"authorization": f"Bearer {token}"},
            )
            assert rest.status_code == 401, (why, rest.text)
            assert rest.json()["error"]["code"] == "UNAUTHENTICATED"
        assert (await _gql(http, server.url, VIEWER, good))["data"]["viewer"] == {"id": "ada"}
        # A revoked user: the token that held a moment ago no longer does.
        revoked = await http.post(
            f"{server.url}/api/v1/applications/{app['token']}/revocations",
            json={"user_id": "ada"},
        )
        assert revoked.status_code == 200, revoked.text
        assert _codes(await _gql(http, server.url, VIEWER, good)) == ["UNAUTHENTICATED"]
        # Nothing was made by any of them.
        chats = await http.get(f"{server.url}/api/v1/applications/{app['token']}/chats")
        assert chats.json() == []
        # A user id the backend cannot give is refused when it asks for a token, too.
        for user in ("", "a\x07b", "x" * 256):
            minted = await http.post(
                f"{server.url}/api/v1/applications/{app['token']}/user_tokens",
                json={"user_id": user},
            )
            assert minted.status_code == 422, user
        surrogate = await http.post(
            f"{server.url}/api/v1/applications/{app['token']}/user_tokens",
            content=b'{"user_id": "\\ud800"}',
            headers={"content-type": "application/json"},
        )
        assert surrogate.status_code in (400, 422)
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log and "ERROR" not in log, log


async def test_the_old_secret_stops_verifying_when_the_overlap_ends(server: Server) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        app = await _application(http, server.url)
        old = _sign(app)
        rotate = """mutation($t: String!) { rotateSigningSecret(input: {token: $t,
          previousValidFor: 1}) { application { signingSecret } } }"""
        answer = await _gql(http, server.url, rotate, t=app["token"])
        assert (await _gql(http, server.url, VIEWER, old))["data"]["viewer"] == {"id": "ada"}
        await asyncio.sleep(1.6)  # the overlap, and the processes' memory of the secrets
        assert _codes(await _gql(http, server.url, VIEWER, old)) == ["UNAUTHENTICATED"]
        new = answer["data"]["rotateSigningSecret"]["application"]["signingSecret"]
        fresh = _sign(app, secret=new)
        assert (await _gql(http, server.url, VIEWER, fresh))["data"]["viewer"] == {"id": "ada"}


async def test_a_user_reaches_no_other_chat_on_any_path(server: Server) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        url = server.url
        app = await _application(http, url)
        ada, eve = _sign(app, "ada"), _sign(app, "eve")
        made = await _gql(
            http, url, "mutation { createChat(input: {}) { chat { number id } } }", ada
        )
        chat = made["data"]["createChat"]["chat"]
        sent = await _gql(
            http,
            url,
            'mutation { createMessage(input: {chatNumber: 1, body: "secret plans"}) '
            "{ message { id } } }",
            ada,
        )
        message_id = sent["data"]["createMessage"]["message"]["id"]
        backend_ids = await _gql(
            http,
            url,
            "query($t: String!) { application(token: $t) { id chat(number: 1) { id "
            "message(number: 1) { id } } } }",
            t=app["token"],
        )
        tree = backend_ids["data"]["application"]
        ids = [
            chat["id"],
            message_id,
            tree["id"],
            tree["chat"]["id"],
            tree["chat"]["message"]["id"],
        ]

        as_eve = await _gql(
            http,
            url,
            """query($ids: [ID!]!) { viewer { chat(number: 1) { number }
                chats { nodes { number } } } nodes(ids: $ids) { id } }""",
            eve,
            ids=ids,
        )
        assert as_eve["data"]["viewer"] == {"chat": None, "chats": {"nodes": []}}
        assert as_eve["data"]["nodes"] == [None] * len(ids)
        # Ada, a member, reaches the chat and message but not the application.
        as_ada = await _gql(
            http, url, "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", ada, ids=ids
        )
        # (shown with the ids a user is shown: the backend's are other ids of the same objects)
        found = as_ada["data"]["nodes"]
        assert [n and n["id"] for n in found] == [ids[0], ids[1], None, ids[0], ids[1]]
        # Writes and subscriptions: as unknown as chat 99.
        for number in (1, 99):
            write = await _gql(
                http,
                url,
                'mutation($c: Int!) { createMessage(input: {chatNumber: $c, body: "x"}) '
                "{ message { number } } }",
                eve,
                c=number,
            )
            assert _codes(write) == ["NOT_FOUND"]
            edit = await _gql(
                http,
                url,
                "mutation($c: Int!) { updateMessage(input: {chatNumber: $c, number: 1, "
                'body: "x"}) { message { number } } }',
                eve,
                c=number,
            )
            assert _codes(edit) == ["NOT_FOUND"]
            join = await _gql(
                http,
                url,
                'mutation($c: Int!) { addChatMembers(input: {chatNumber: $c, userIds: ["eve"]}) '
                "{ chatNumber } }",
                eve,
                c=number,
            )
            assert _codes(join) == ["NOT_FOUND"]
            for mark in ("markRead", "markUnread"):
                marked = await _gql(
                    http,
                    url,
                    f"mutation($c: Int!) {{ {mark}(input: {{chatNumber: $c, number: 1}}) "
                    "{ lastReadNumber } }",
                    eve,
                    c=number,
                )
                assert _codes(marked) == ["NOT_FOUND"]
        # Her inbox and counts know nothing of it; Ada's marker did not move.
        counts = await _gql(
            http, url, "{ viewer { unreadChatsCount unreadCount chats { nodes { number } } } }", eve
        )
        assert counts["data"]["viewer"] == {
            "unreadChatsCount": 0,
            "unreadCount": 0,
            "chats": {"nodes": []},
        }
        ada_sees = await _gql(
            http,
            url,
            "{ viewer { chat(number: 1) { lastReadNumber "
            "readMarkers { nodes { user { id } } } } } }",
            ada,
        )
        assert ada_sees["data"]["viewer"]["chat"] == {
            "lastReadNumber": 1,
            "readMarkers": {"nodes": [{"user": {"id": "ada"}}]},
        }
        # GET with the query in the URL, and a persisted query's hash.
        query = "{ viewer { chat(number: 1) { messages { nodes { body } } } } }"
        got = await http.get(
            f"{url}/graphql", params={"query": query}, headers={"authorization": f"Bearer {eve}"}
        )
        assert got.json()["data"]["viewer"]["chat"] is None
        # REST: every path of the chat answers as for a chat that does not exist.
        public = f"{url}/api/v1/applications/{app['publicId']}"
        paths = ("", "/messages", "/messages/1", "/messages/search?q=plans", "/members")
        for path in (*paths, "/read_markers"):
            theirs = await http.get(
                f"{public}/chats/1{path}", headers={"authorization": f"Bearer {eve}"}
            )
            none = await http.get(
                f"{public}/chats/99{path}", headers={"authorization": f"Bearer {eve}"}
            )
            assert theirs.status_code == none.status_code == 404, path
            assert theirs.json()["error"]["message"].replace("1", "N") == none.json()["error"][
                "message"
            ].replace("99", "N")
        for path in ("/read", "/unread"):
            theirs = await http.post(
                f"{public}/chats/1{path}",
                json={"number": 1},
                headers={"authorization": f"Bearer {eve}"},
            )
            assert theirs.status_code == 404, path
        inbox = await http.get(f"{public}/inbox", headers={"authorization": f"Bearer {eve}"})
        assert inbox.json() == []
        # A subscription to it is refused as for an unknown chat.
        live = await LiveClient.open(url, init=False)
        try:
            await live.send(
                {"type": "connection_init", "payload": {"authorization": f"Bearer {eve}"}}
            )
            assert (await live.receive())["type"] == "connection_ack"
            await live.subscribe(
                "subscription { messageEvents(chatNumber: 1) { message { body } } }", {}
            )
            refused = await live.receive()
            assert refused["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND", refused
        finally:
            await live.close()


async def test_a_member_removed_while_subscribed_is_cut_off_within_a_second(
    server: Server,
) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        url = server.url
        app = await _application(http, url)
        ada, bob = _sign(app, "ada"), _sign(app, "bob")
        await _gql(http, url, "mutation { createChat(input: {}) { chat { number } } }", ada)
        await _gql(
            http,
            url,
            'mutation { addChatMembers(input: {chatNumber: 1, userIds: ["bob"]}) { chatNumber } }',
            ada,
        )
        live = await LiveClient.open(url, init=False)
        try:
            await live.send(
                {"type": "connection_init", "payload": {"authorization": f"Bearer {bob}"}}
            )
            assert (await live.receive())["type"] == "connection_ack"
            await live.subscribe(
                "subscription { messageEvents(chatNumber: 1) { message { body author { id } } } }",
                {},
            )
            await asyncio.sleep(0.3)
            await _gql(
                http,
                url,
                'mutation { createMessage(input: {chatNumber: 1, body: "hi bob"}) '
                "{ message { number } } }",
                ada,
            )
            event = await live.receive()
            assert event["type"] == "next"
            assert event["payload"]["data"]["messageEvents"]["message"] == {
                "body": "hi bob",
                "author": {"id": "ada"},
            }
            removed = await http.post(
                f"{url}/api/v1/applications/{app['token']}/chats/1/members",
                json={"remove": ["bob"]},
            )
            assert removed.json()["removed"] == ["bob"]
            started = time.monotonic()
            ended = await live.receive(within=5)
            took = time.monotonic() - started
            # An error after the stream began is a result with errors, then the end.
            assert ended["type"] == "next", ended
            assert ended["payload"]["errors"][0]["extensions"]["code"] == "FORBIDDEN"
            assert took < 1.0, took
            assert (await live.receive())["type"] == "complete"
        finally:
            await live.close()


async def test_membership_changes_hold_on_every_api_process(cluster: Cluster) -> None:
    """Two API processes and two workers: a chat a user creates on one is theirs on the
    other at once, a member added on one writes on the other at once, and a member removed
    on one is refused on the other within a second, while concurrent writes go on."""
    one, two = (api.url for api in cluster.apis)
    async with httpx.AsyncClient(timeout=30) as http:
        app = await _application(http, one)
        users = [f"user{i}" for i in range(8)]
        tokens = {user: _sign(app, user) for user in users}
        send = """mutation($c: Int!, $b: String!) { createMessage(input:
            {chatNumber: $c, body: $b}) { message { number author { id } } } }"""

        made = await _gql(
            http, one, "mutation { createChat(input: {}) { chat { number } } }", tokens["user0"]
        )
        number = made["data"]["createChat"]["chat"]["number"]
        first = await _gql(http, two, send, tokens["user0"], c=number, b="first")
        assert first["data"]["createMessage"]["message"]["author"] == {"id": "user0"}

        added = await http.post(
            f"{one}/api/v1/applications/{app['token']}/chats/{number}/members",
            json={"add": users[1:]},
        )
        assert added.json()["added"] == users[1:]

        async def write(user: str, api: str, i: int) -> tuple[str, int | None]:
            answer = await _gql(http, api, send, tokens[user], c=number, b=f"{user} {i}")
            if "errors" in answer:
                assert _codes(answer) == ["NOT_FOUND"], answer
                return user, None
            message = answer["data"]["createMessage"]["message"]
            assert message["author"] == {"id": user}
            return user, message["number"]

        # Everyone writes through both processes while half are removed through one.
        writes = [write(user, (one, two)[i % 2], i) for i in range(6) for user in users[1:]]
        removal = asyncio.ensure_future(
            http.post(
                f"{one}/api/v1/applications/{app['token']}/chats/{number}/members",
                json={"remove": users[4:]},
            )
        )
        results = await asyncio.gather(*writes)
        assert (await removal).json()["removed"] == users[4:]
        accepted = [(user, n) for user, n in results if n is not None]
        assert accepted, "the members wrote"

        await asyncio.sleep(1.0)  # every process's memory of a membership is shorter
        for api in (one, two):
            for user in users[4:]:
                refused = await _gql(http, api, send, tokens[user], c=number, b="late")
                assert _codes(refused) == ["NOT_FOUND"], (api, user)
            kept = await _gql(http, api, send, tokens["user1"], c=number, b="still here")
            assert "errors" not in kept, kept

        # Every acknowledged write is stored, with its author.
        expected = {n: user for user, n in accepted}
        deadline = time.monotonic() + 60
        while True:
            page = await http.get(
                f"{one}/api/v1/applications/{app['token']}/chats/{number}/messages?limit=100"
            )
            stored = {m["number"]: m["author"] for m in page.json()}
            if all(n in stored for n in expected):
                break
            assert time.monotonic() < deadline, "not stored in time"
            await asyncio.sleep(0.2)
        assert {n: stored[n] for n in expected} == expected


async def test_membership_needs_no_worker_and_waits_for_none(cluster: Cluster) -> None:
    """With every worker stalled (SIGSTOP), a user creates a chat on one API process and adds
    a friend, the backend creates one with a member, and each member writes on the other
    process at once: membership is never queued. Every write is stored, with its author,
    once the workers resume."""
    one, two = (api.url for api in cluster.apis)
    send = """mutation($c: Int!, $b: String!) { createMessage(input: {chatNumber: $c, body: $b})
        { message { author { id } } } }"""
    async with httpx.AsyncClient(timeout=30) as http:
        app = await _application(http, one)
        ada, bob, cy = _sign(app, "ada"), _sign(app, "bob"), _sign(app, "cy")
        for worker in cluster.workers:
            worker.pause()
        try:
            made = await _gql(
                http, one, "mutation { createChat(input: {}) { chat { number } } }", ada
            )
            mine = made["data"]["createChat"]["chat"]["number"]
            added = await _gql(
                http,
                one,
                'mutation($c: Int!) { addChatMembers(input: {chatNumber: $c, userIds: ["bob"]}) '
                "{ userIds } }",
                ada,
                c=mine,
            )
            assert added["data"]["addChatMembers"]["userIds"] == ["bob"], added
            backend = await _gql(
                http,
                one,
                'mutation($t: String!) { createChat(input: {applicationToken: $t, members: ["cy"]})'
                " { chat { number } } }",
                t=app["token"],
            )
            theirs = backend["data"]["createChat"]["chat"]["number"]
            writes = [(ada, mine, "hi"), (bob, mine, "hey"), (cy, theirs, "yo")]
            for token, chat, body in writes:
                sent = await _gql(http, two, send, token, c=chat, b=body)
                assert "errors" not in sent, sent
            # Bob is not in the backend's chat: refused, as for an unknown chat.
            assert _codes(await _gql(http, two, send, bob, c=theirs, b="no")) == ["NOT_FOUND"]
        finally:
            for worker in cluster.workers:
                worker.resume()
        expected = {mine: [("hi", "ada"), ("hey", "bob")], theirs: [("yo", "cy")]}
        deadline = time.monotonic() + 60
        for chat, messages in expected.items():
            while True:
                page = await http.get(
                    f"{one}/api/v1/applications/{app['token']}/chats/{chat}/messages"
                )
                found = [(m["body"], m["author"]) for m in page.json()] if page.is_success else []
                if found == messages:
                    break
                assert time.monotonic() < deadline, (chat, page.text)
                await asyncio.sleep(0.2)


async def test_a_subscription_ends_when_its_user_token_expires(server: Server) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        url = server.url
        app = await _application(http, url)
        ada = _sign(app, "ada")
        await _gql(http, url, "mutation { createChat(input: {}) { chat { number } } }", ada)
        short = _sign(app, "ada", exp=int(time.time()) + 2)
        live = await LiveClient.open(url, init=False)
        try:
            await live.send(
                {"type": "connection_init", "payload": {"authorization": f"Bearer {short}"}}
            )
            assert (await live.receive())["type"] == "connection_ack"
            await live.subscribe("subscription { messageEvents(chatNumber: 1) { kind } }", {})
            ended = await live.receive(within=10)
            assert ended["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
            assert (await live.receive())["type"] == "complete"
        finally:
            await live.close()
