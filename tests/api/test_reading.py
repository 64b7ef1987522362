"""Read markers, unread counts and the inbox, on both modes, over GraphQL and REST."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.test_users import _application, _codes, _gql, _sign

SEND = """mutation($chat: Int!, $body: String!) {
  createMessage(input: {chatNumber: $chat, body: $body}) { message { number } }
}"""
MARK = """mutation($chat: Int!, $n: Int!) {
  markRead(input: {chatNumber: $chat, number: $n}) { chatNumber lastReadNumber }
}"""
UNMARK = """mutation($chat: Int!, $n: Int!) {
  markUnread(input: {chatNumber: $chat, number: $n}) { chatNumber lastReadNumber }
}"""
STATE = """query($chat: Int!) { viewer { chat(number: $chat) {
  lastReadNumber unreadCount lastMessage { number body author { id } }
  readMarkers { nodes { user { id } lastReadNumber readAt } }
} unreadChatsCount unreadCount } }"""
INBOX = """query($first: Int, $after: String) { viewer {
  chats(first: $first, after: $after) {
    nodes { number unreadCount lastReadNumber lastMessage { body } members { nodes { id } } }
    pageInfo { hasNextPage endCursor }
  }
} }"""


async def _state(http: httpx.AsyncClient, token: str, chat: int) -> dict[str, Any]:
    answer = await _gql(http, STATE, token, chat=chat)
    assert "errors" not in answer, answer
    viewer: dict[str, Any] = answer["data"]["viewer"]
    return viewer


async def _chat(http: httpx.AsyncClient, token: str, *members: str) -> int:
    answer = await _gql(
        http,
        "mutation($m: [String!]) { createChat(input: {members: $m}) { chat { number } } }",
        token,
        m=list(members) or None,
    )
    number: int = answer["data"]["createChat"]["chat"]["number"]
    return number


async def test_markers_move_forward_unread_moves_back_and_counts_follow(
    http: httpx.AsyncClient,
) -> None:
    app = await _application(http)
    ada, bob, cy = _sign(app, "ada"), _sign(app, "bob"), _sign(app, "cy")
    chat = await _chat(http, ada, "bob")
    state = await _state(http, ada, chat)
    assert state["chat"]["unreadCount"] == 0 and state["chat"]["lastMessage"] is None
    for body in ("one", "two", "three"):
        await _gql(http, SEND, bob, chat=chat, body=body)
    state = await _state(http, ada, chat)
    assert (state["chat"]["lastReadNumber"], state["chat"]["unreadCount"]) == (0, 3)
    assert state["chat"]["lastMessage"] == {"number": 3, "body": "three", "author": {"id": "bob"}}
    assert (state["unreadChatsCount"], state["unreadCount"]) == (1, 3)
    # Bob wrote them: read by him.
    assert (await _state(http, bob, chat))["chat"]["unreadCount"] == 0

    marked = await _gql(http, MARK, ada, chat=chat, n=2)
    assert marked["data"]["markRead"] == {"chatNumber": chat, "lastReadNumber": 2}
    assert (await _state(http, ada, chat))["chat"]["unreadCount"] == 1
    await _gql(http, MARK, ada, chat=chat, n=1)  # behind the marker: nothing changes
    assert (await _state(http, ada, chat))["chat"]["lastReadNumber"] == 2
    await _gql(http, MARK, ada, chat=chat, n=99)  # never past the newest message
    state = await _state(http, ada, chat)
    assert (state["chat"]["lastReadNumber"], state["chat"]["unreadCount"]) == (3, 0)
    assert (state["unreadChatsCount"], state["unreadCount"]) == (0, 0)

    unmarked = await _gql(http, UNMARK, ada, chat=chat, n=2)
    assert unmarked["data"]["markUnread"]["lastReadNumber"] == 1
    state = await _state(http, ada, chat)
    assert (state["chat"]["lastReadNumber"], state["chat"]["unreadCount"]) == (1, 2)
    assert (state["unreadChatsCount"], state["unreadCount"]) == (1, 2)

    # Ada's own message: read by her up to it; unread for Bob.
    await _gql(http, SEND, ada, chat=chat, body="four")
    assert (await _state(http, ada, chat))["chat"]["lastReadNumber"] == 4
    bobs = await _state(http, bob, chat)
    assert (bobs["chat"]["lastReadNumber"], bobs["chat"]["unreadCount"]) == (3, 1)
    markers = {m["user"]["id"]: m for m in bobs["chat"]["readMarkers"]["nodes"]}
    assert {u: m["lastReadNumber"] for u, m in markers.items()} == {"ada": 4, "bob": 3}
    assert all(m["readAt"] is not None for m in markers.values())

    # Cy joins now: what was stored before is not news to him.
    await _gql(
        http,
        'mutation($c: Int!) { addChatMembers(input: {chatNumber: $c, userIds: ["cy"]}) '
        "{ userIds } }",
        ada,
        c=chat,
    )
    cys = await _state(http, cy, chat)
    assert (cys["chat"]["lastReadNumber"], cys["chat"]["unreadCount"]) == (4, 0)
    assert (
        next(m for m in cys["chat"]["readMarkers"]["nodes"] if m["user"]["id"] == "cy")["readAt"]
        is None
    )

    # The backend sees every marker, and has none of its own.
    backend = await _gql(
        http,
        "query($t: String!, $c: Int!) { application(token: $t) { chat(number: $c) { "
        "unreadCount lastReadNumber readMarkers { nodes { user { id } lastReadNumber } } } } }",
        t=app["token"],
        c=chat,
    )
    seen = backend["data"]["application"]["chat"]
    assert seen["unreadCount"] is None and seen["lastReadNumber"] is None
    assert [m["lastReadNumber"] for m in seen["readMarkers"]["nodes"]] == [4, 3, 4]


async def test_the_inbox_is_ordered_by_latest_activity(http: httpx.AsyncClient) -> None:
    app = await _application(http)
    ada, bob = _sign(app, "ada"), _sign(app, "bob")
    chats = [await _chat(http, ada, "bob") for _ in range(4)]  # 4 is the newest
    await _gql(http, SEND, bob, chat=chats[1], body="to the top")

    async def listed(first: int) -> list[dict[str, Any]]:
        nodes, after = [], None
        while True:
            answer = await _gql(http, INBOX, ada, first=first, after=after)
            assert "errors" not in answer, answer
            page = answer["data"]["viewer"]["chats"]
            nodes += page["nodes"]
            if not page["pageInfo"]["hasNextPage"]:
                return nodes
            after = page["pageInfo"]["endCursor"]

    inbox = await listed(first=3)
    assert [n["number"] for n in inbox] == [chats[1], chats[3], chats[2], chats[0]]
    top = inbox[0]
    assert top["unreadCount"] == 1 and top["lastMessage"] == {"body": "to the top"}
    assert [m["id"] for m in top["members"]["nodes"]] == ["ada", "bob"]
    await _gql(http, SEND, ada, chat=chats[0], body="now me")
    assert [n["number"] for n in await listed(first=1)] == [chats[0], chats[1], chats[3], chats[2]]
    joined = await _gql(http, "{ viewer { chats(orderBy: JOINED) { nodes { number } } } }", ada)
    assert [n["number"] for n in joined["data"]["viewer"]["chats"]["nodes"]] == chats


async def test_marks_refused_change_nothing(http: httpx.AsyncClient) -> None:
    app = await _application(http)
    ada, eve = _sign(app, "ada"), _sign(app, "eve")
    chat = await _chat(http, ada)
    await _gql(http, SEND, ada, chat=chat, body="hello")
    await _gql(http, UNMARK, ada, chat=chat, n=1)
    assert _codes(await _gql(http, MARK, eve, chat=chat, n=1)) == ["NOT_FOUND"]
    assert _codes(await _gql(http, MARK, eve, chat=999, n=1)) == ["NOT_FOUND"]
    for number in (0, -1, 2**53 + 1):
        assert _codes(await _gql(http, MARK, ada, chat=chat, n=number)) == ["BAD_USER_INPUT"]
    assert _codes(await _gql(http, MARK, None, chat=chat, n=1)) == ["UNAUTHENTICATED"]
    wrong = await http.post(
        "/graphql",
        json={"query": MARK, "variables": {"chat": chat, "n": "1"}},
        headers={"authorization": f"Bearer {ada}"},
    )
    assert wrong.json()["errors"] and wrong.json().get("data") is None
    state = await _state(http, ada, chat)
    assert (state["chat"]["lastReadNumber"], state["chat"]["unreadCount"]) == (0, 0)
    assert (await _gql(http, INBOX, eve))["data"]["viewer"]["chats"]["nodes"] == []


async def test_rest_marks_lists_the_inbox_and_counts(http: httpx.AsyncClient) -> None:
    app = await _application(http)
    ada, bob = _sign(app, "ada"), _sign(app, "bob")
    base = f"/api/v1/applications/{app['publicId']}"
    as_ada, as_bob = {"authorization": f"Bearer {ada}"}, {"authorization": f"Bearer {bob}"}
    first = await http.post(f"{base}/chats", json={"members": ["bob"]}, headers=as_ada)
    second = await http.post(f"{base}/chats", json={"members": ["bob"]}, headers=as_ada)
    one, two = first.json()["number"], second.json()["number"]
    for body in ("a", "b", "c"):
        sent = await http.post(f"{base}/chats/{one}/messages", json={"body": body}, headers=as_bob)
        assert sent.status_code == 201, sent.text

    listed = await http.get(f"{base}/inbox", params={"limit": 1}, headers=as_ada)
    assert listed.status_code == 200, listed.text
    (top,) = listed.json()
    assert (top["number"], top["unread_count"], top["last_read_number"]) == (one, 3, 0)
    assert top["last_message"]["body"] == "c" and top["last_message"]["author"] == "bob"
    rest = await http.get(listed.links["next"]["url"], headers=as_ada)
    assert [c["number"] for c in rest.json()] == [two] and rest.json()[0]["last_message"] is None
    totals = await http.get(f"{base}/unread", headers=as_ada)
    assert totals.json() == {"unread_chats_count": 1, "unread_count": 3}

    marked = await http.post(f"{base}/chats/{one}/read", json={"number": 2}, headers=as_ada)
    assert marked.json() == {"chat_number": one, "last_read_number": 2}
    assert (await http.get(f"{base}/unread", headers=as_ada)).json()["unread_count"] == 1
    unmarked = await http.post(f"{base}/chats/{one}/unread", json={"number": 1}, headers=as_ada)
    assert unmarked.json()["last_read_number"] == 0
    markers = await http.get(f"/api/v1/applications/{app['token']}/chats/{one}/read_markers")
    assert [(m["user_id"], m["last_read_number"]) for m in markers.json()] == [
        ("ada", 0),
        ("bob", 3),
    ]
    assert markers.json()[0]["read_at"] is not None

    # Refused: nothing changes.
    bad: list[dict[str, object]] = [{"number": 0}, {"number": -1}, {"number": "x"}, {}]
    for wrong in [*bad, {"number": 2**60}]:
        refused = await http.post(f"{base}/chats/{one}/read", json=wrong, headers=as_ada)
        assert refused.status_code == 422, (wrong, refused.text)
    eve = {"authorization": f"Bearer {_sign(app, 'eve')}"}
    assert (
        await http.post(f"{base}/chats/{one}/read", json={"number": 1}, headers=eve)
    ).status_code == 404
    assert (await http.get(f"{base}/chats/{one}/read_markers", headers=eve)).status_code == 404
    assert (await http.get(f"{base}/inbox", headers=eve)).json() == []
    backend = await http.get(f"/api/v1/applications/{app['token']}/inbox")
    assert backend.status_code == 403
    assert (await http.get(f"{base}/unread", headers=as_ada)).json()["unread_count"] == 3
