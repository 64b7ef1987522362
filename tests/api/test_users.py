"""End users on both modes: user tokens (minted by the backend itself with PyJWT, or asked
for), membership, authors, and what a user may reach, over GraphQL and REST."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt

JSON = {"content-type": "application/json"}


async def _gql(
    http: httpx.AsyncClient, query: str, token: str | None = None, **variables: Any
) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = await http.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


def _codes(answer: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in answer.get("errors", [])]


async def _application(http: httpx.AsyncClient) -> dict[str, str]:
    answer = await _gql(
        http,
        'mutation { createApplication(input: {name: "team"}) { application '
        "{ token publicId signingSecret } } }",
    )
    app: dict[str, str] = answer["data"]["createApplication"]["application"]
    assert app["publicId"].startswith("app_") and app["publicId"] != app["token"]
    assert len(app["signingSecret"]) >= 43 and app["signingSecret"] != app["token"]
    return app


def _sign(app: dict[str, str], user: str, lifetime: int = 600, **claims: Any) -> str:
    """What an application's backend does with PyJWT: no round trip."""
    now = int(time.time())
    payload = {"iss": app["publicId"], "sub": user, "iat": now, "exp": now + lifetime, **claims}
    return jwt.encode(payload, app["signingSecret"], algorithm="HS256")


CREATE_CHAT = "mutation { createChat(input: {}) { chat { number id } } }"
SEND = """mutation($chat: Int!, $body: String!) {
  createMessage(input: {chatNumber: $chat, body: $body}) { message { number author { id } } }
}"""
READ = """query($chat: Int!) { viewer { id chat(number: $chat) {
  number messages { nodes { number body author { id } } }
  searchMessages(query: "hello") { nodes { number author { id } } }
  members { nodes { id } }
} } }"""


async def test_a_user_creates_a_chat_adds_a_friend_and_they_talk(http: httpx.AsyncClient) -> None:
    app = await _application(http)
    ada, bob, eve = _sign(app, "ada"), _sign(app, "bob"), _sign(app, "eve")

    viewer = await _gql(http, "{ viewer { id chats { nodes { number } } } }", ada)
    assert viewer["data"]["viewer"] == {"id": "ada", "chats": {"nodes": []}}
    assert (await _gql(http, "{ viewer { id } }"))["data"]["viewer"] is None

    chat = (await _gql(http, CREATE_CHAT, ada))["data"]["createChat"]["chat"]
    assert chat["number"] == 1
    added = await _gql(
        http,
        'mutation { addChatMembers(input: {chatNumber: 1, userIds: ["bob", "bob"]}) '
        "{ chatNumber userIds } }",
        ada,
    )
    assert added["data"]["addChatMembers"] == {"chatNumber": 1, "userIds": ["bob"]}

    sent = await _gql(http, SEND, ada, chat=1, body="hello bob")
    assert sent["data"]["createMessage"]["message"] == {"number": 1, "author": {"id": "ada"}}
    await _gql(http, SEND, bob, chat=1, body="hello ada")
    backend = await _gql(
        http,
        "mutation($t: String!) { createMessage(input: {applicationToken: $t, chatNumber: 1, "
        'body: "hello from the backend"}) { message { author { id } } } }',
        t=app["token"],
    )
    assert backend["data"]["createMessage"]["message"]["author"] is None

    seen = (await _gql(http, READ, bob, chat=1))["data"]["viewer"]
    assert [(m["body"], m["author"]) for m in seen["chat"]["messages"]["nodes"]] == [
        ("hello bob", {"id": "ada"}),
        ("hello ada", {"id": "bob"}),
        ("hello from the backend", None),
    ]
    found = seen["chat"]["searchMessages"]["nodes"]
    assert [(m["number"], m["author"]) for m in found] == [
        (3, None),
        (2, {"id": "bob"}),
        (1, {"id": "ada"}),
    ]
    assert [m["id"] for m in seen["chat"]["members"]["nodes"]] == ["ada", "bob"]
    chats = await _gql(http, "{ viewer { chats { nodes { number } } } }", bob)
    assert chats["data"]["viewer"]["chats"]["nodes"] == [{"number": 1}]

    # Eve is in no chat: the chat answers as one that does not exist, on every path.
    assert (await _gql(http, READ, eve, chat=1))["data"]["viewer"]["chat"] is None
    assert _codes(await _gql(http, SEND, eve, chat=1, body="hi")) == ["NOT_FOUND"]
    refused = await _gql(http, SEND, eve, chat=1, body="hi")
    unknown = await _gql(http, SEND, eve, chat=99, body="hi")
    assert refused["errors"][0]["message"].replace("1", "N") == unknown["errors"][0][
        "message"
    ].replace("99", "N")
    node = await _gql(http, "query($id: ID!) { node(id: $id) { id } }", eve, id=chat["id"])
    assert node["data"]["node"] is None
    # Ada's id for the chat is a user-scope one: without a user token it names nothing.
    assert (await _gql(http, "query($id: ID!) { node(id: $id) { id } }", id=chat["id"]))["data"][
        "node"
    ] is None
    mine = await _gql(http, "query($id: ID!) { node(id: $id) { id } }", bob, id=chat["id"])
    assert mine["data"]["node"] == {"id": chat["id"]}


async def test_a_user_edits_only_their_own_messages_the_backend_any(
    http: httpx.AsyncClient,
) -> None:
    app = await _application(http)
    ada, bob = _sign(app, "ada"), _sign(app, "bob")
    await _gql(http, CREATE_CHAT, ada)
    await _gql(
        http,
        'mutation { addChatMembers(input: {chatNumber: 1, userIds: ["bob"]}) { chatNumber } }',
        ada,
    )
    await _gql(http, SEND, ada, chat=1, body="first")
    edit = """mutation($body: String!, $t: String) {
      updateMessage(input: {applicationToken: $t, chatNumber: 1, number: 1, body: $body})
      { message { body author { id } } } }"""
    assert _codes(await _gql(http, edit, bob, body="bob was here")) == ["FORBIDDEN"]
    own = await _gql(http, edit, ada, body="edited")
    assert own["data"]["updateMessage"]["message"] == {"body": "edited", "author": {"id": "ada"}}
    backend = await _gql(http, edit, body="moderated", t=app["token"])
    assert backend["data"]["updateMessage"]["message"]["body"] == "moderated"
    read = await http.get(
        f"/api/v1/applications/{app['publicId']}/chats/1/messages/1",
        headers={"authorization": f"Bearer {bob}"},
    )
    assert read.status_code == 200
    assert (read.json()["body"], read.json()["author"]) == ("moderated", "ada")


async def test_membership_by_the_backend_and_what_users_may_change(
    http: httpx.AsyncClient,
) -> None:
    app = await _application(http)
    token, ada, bob = app["token"], _sign(app, "ada"), _sign(app, "bob")
    base = f"/api/v1/applications/{token}"
    await http.post(f"{base}/chats", json={}, headers=JSON)
    changed = await http.post(
        f"{base}/chats/1/members", json={"add": ["ada", "bob", "ada"]}, headers=JSON
    )
    assert changed.json() == {"added": ["ada", "bob"], "removed": []}
    again = await http.post(f"{base}/chats/1/members", json={"add": ["ada"]}, headers=JSON)
    assert again.json() == {"added": [], "removed": []}
    listed = await http.get(f"{base}/chats/1/members")
    assert [m["user_id"] for m in listed.json()] == ["ada", "bob"]

    # A user removes only themselves.
    as_ada = {"authorization": f"Bearer {ada}", **JSON}
    public = f"/api/v1/applications/{app['publicId']}"
    kick = await http.post(f"{public}/chats/1/members", json={"remove": ["bob"]}, headers=as_ada)
    assert kick.status_code == 403
    leave = await http.post(f"{public}/chats/1/members", json={"remove": ["ada"]}, headers=as_ada)
    assert leave.json() == {"added": [], "removed": ["ada"]}
    gone = await http.get(f"{public}/chats/1/messages", headers=as_ada)
    assert gone.status_code == 404

    # The application lets only its backend manage chats: users cannot create or add.
    off = await _gql(
        http,
        "mutation($t: String!) { updateApplication(input: {token: $t, usersManageChats: false}) "
        "{ application { name usersManageChats } } }",
        t=token,
    )
    assert off["data"]["updateApplication"]["application"] == {
        "name": "team",
        "usersManageChats": False,
    }
    assert _codes(await _gql(http, CREATE_CHAT, bob)) == ["FORBIDDEN"]
    add = 'mutation { addChatMembers(input: {chatNumber: 1, userIds: ["eve"]}) { chatNumber } }'
    assert _codes(await _gql(http, add, bob)) == ["FORBIDDEN"]
    # Application-level operations need the application token.
    as_bob = {"authorization": f"Bearer {bob}"}
    assert (await http.get(public, headers=as_bob)).status_code == 403
    assert (await http.get(f"{public}/signing_secret", headers=as_bob)).status_code == 403
    assert (await http.get(f"{base}/chats/1/messages", headers=as_bob)).status_code == 200


async def test_rest_for_a_user_lists_their_chats_and_writes_with_an_author(
    http: httpx.AsyncClient,
) -> None:
    app = await _application(http)
    token = app["token"]
    minted = await http.post(
        f"/api/v1/applications/{token}/user_tokens",
        json={"user_id": "ada", "expires_in": 120},
        headers=JSON,
    )
    assert minted.status_code == 201
    ada = minted.json()["token"]
    claims = jwt.decode(ada, app["signingSecret"], algorithms=["HS256"])
    assert (claims["iss"], claims["sub"], claims["exp"] - claims["iat"]) == (
        app["publicId"],
        "ada",
        120,
    )
    as_ada = {"authorization": f"Bearer {ada}", **JSON}
    public = f"/api/v1/applications/{app['publicId']}"
    for _ in range(2):
        assert (await http.post(f"{public}/chats", json={}, headers=as_ada)).status_code == 201
    await http.post(f"/api/v1/applications/{token}/chats", json={}, headers=JSON)  # not hers
    listed = await http.get(f"{public}/chats", headers=as_ada)
    assert [c["number"] for c in listed.json()] == [1, 2]
    sent = await http.post(f"{public}/chats/2/messages", json={"body": "hi"}, headers=as_ada)
    assert sent.status_code == 201
    page = await http.get(f"/api/v1/applications/{token}/chats/2/messages")
    assert [(m["body"], m["author"]) for m in page.json()] == [("hi", "ada")]
    # Chat 3 is not hers: as unknown as chat 4.
    for path in ("", "/messages", "/messages/1", "/messages/search?q=x", "/members"):
        theirs = await http.get(f"{public}/chats/3{path}", headers=as_ada)
        nothing = await http.get(f"{public}/chats/4{path}", headers=as_ada)
        assert theirs.status_code == nothing.status_code == 404, path
        assert theirs.json()["error"]["code"] == nothing.json()["error"]["code"]
    # Another application's public id with her token: not found either.
    other = await _application(http)
    elsewhere = await http.get(f"/api/v1/applications/{other['publicId']}/chats", headers=as_ada)
    assert elsewhere.status_code == 404


async def test_rotation_keeps_old_tokens_for_the_overlap_and_revocation_ends_them(
    http: httpx.AsyncClient,
) -> None:
    app = await _application(http)
    before = _sign(app, "ada")
    rotate = """mutation($t: String!, $keep: Int) {
      rotateSigningSecret(input: {token: $t, previousValidFor: $keep}) { application {
        signingSecret previousSigningSecret previousSigningSecretValidUntil } } }"""
    rotated = (await _gql(http, rotate, t=app["token"]))["data"]["rotateSigningSecret"]
    keys = rotated["application"]
    assert keys["previousSigningSecret"] == app["signingSecret"]
    assert keys["signingSecret"] != app["signingSecret"]
    assert keys["previousSigningSecretValidUntil"] is not None
    after = _sign({**app, "signingSecret": keys["signingSecret"]}, "ada")
    for token in (before, after):
        assert (await _gql(http, "{ viewer { id } }", token))["data"]["viewer"] == {"id": "ada"}

    # Rotating again with no overlap (a leaked secret): only the newest verifies.
    newest = (await _gql(http, rotate, t=app["token"], keep=0))["data"]["rotateSigningSecret"]
    assert newest["application"]["previousSigningSecret"] is None
    for token in (before, after):
        assert _codes(await _gql(http, "{ viewer { id } }", token)) == ["UNAUTHENTICATED"]
    fresh = _sign({**app, "signingSecret": newest["application"]["signingSecret"]}, "ada")
    assert (await _gql(http, "{ viewer { id } }", fresh))["data"]["viewer"] == {"id": "ada"}

    revoke = """mutation($t: String!) {
      revokeUserTokens(input: {applicationToken: $t, userId: "ada"}) { userId issuedBefore } }"""
    revoked = (await _gql(http, revoke, t=app["token"]))["data"]["revokeUserTokens"]
    assert revoked["userId"] == "ada"
    assert _codes(await _gql(http, "{ viewer { id } }", fresh)) == ["UNAUTHENTICATED"]
    rest = await http.get(
        f"/api/v1/applications/{app['publicId']}/chats",
        headers={"authorization": f"Bearer {fresh}"},
    )
    assert rest.status_code == 401
    later = _sign(
        {**app, "signingSecret": newest["application"]["signingSecret"]},
        "ada",
        iat=int(time.time()) + 2,
    )
    assert (await _gql(http, "{ viewer { id } }", later))["data"]["viewer"] == {"id": "ada"}


async def test_a_chat_created_with_members_is_theirs_from_the_start(
    http: httpx.AsyncClient,
) -> None:
    app = await _application(http)
    token, ada, bob = app["token"], _sign(app, "ada"), _sign(app, "bob")
    made = await http.post(
        f"/api/v1/applications/{token}/chats", json={"members": ["ada", "bob"]}, headers=JSON
    )
    assert made.status_code == 201
    number = made.json()["number"]
    for user in (ada, bob):
        sent = await _gql(http, SEND, user, chat=number, body="here")
        assert "errors" not in sent, sent
    created = await _gql(
        http,
        'mutation($t: String!) { createChat(input: {applicationToken: $t, members: ["bob"]}) '
        "{ chat { number } } }",
        t=token,
    )
    other = created["data"]["createChat"]["chat"]["number"]
    assert _codes(await _gql(http, SEND, ada, chat=other, body="x")) == ["NOT_FOUND"]
    # A user's own create names others too (the application lets users manage chats).
    mine = await _gql(
        http, 'mutation { createChat(input: {members: ["bob"]}) { chat { number } } }', ada
    )
    theirs = mine["data"]["createChat"]["chat"]["number"]
    listed = await http.get(f"/api/v1/applications/{token}/chats/{theirs}/members")
    assert [m["user_id"] for m in listed.json()] == ["ada", "bob"]
    bad = await http.post(
        f"/api/v1/applications/{token}/chats", json={"members": ["ok", "bad\x00"]}, headers=JSON
    )
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "members"
