"""GraphQL end to end through the typed client generated from schema.graphql."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from graphql_chat.adapters.rabbitmq.consumer import Consumer
from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.app import create_app
from graphql_chat.bootstrap import Container
from graphql_chat.config import Settings
from graphql_chat.graphql.documents import Documents
from tests.client.graphql_chat_client import GraphQLChatClient
from tests.client.graphql_chat_client.exceptions import GraphQLClientGraphQLMultiError
from tests.conftest import distributed_settings


def _codes(error: GraphQLClientGraphQLMultiError) -> list[str]:
    return [str(e.extensions["code"]) for e in error.errors if e.extensions]


async def test_create_read_update_search(gql: GraphQLChatClient) -> None:
    app = (await gql.create_application("web")).create_application.application
    assert app.name == "web" and app.chats_count == 0
    chat = (await gql.create_chat(app.token)).create_chat.chat
    assert (chat.number, chat.messages_count) == (1, 0)
    for body in ["Hello there", "General Kenobi", "hello again"]:
        await gql.create_message(app.token, chat.number, body)
    updated = await gql.update_message(app.token, 1, 2, "General Grievous")
    assert updated.update_message.message.body == "General Grievous"

    tree = (await gql.application(app.token)).application
    assert tree is not None and tree.chats_count == 1
    [only_chat] = tree.chats.nodes
    assert only_chat.messages_count == 3
    assert [m.body for m in only_chat.messages.nodes] == [
        "Hello there",
        "General Grievous",
        "hello again",
    ]

    found = (await gql.search_messages(app.token, 1, "HELLO")).application
    assert found is not None and found.chat is not None
    assert [m.number for m in found.chat.search_messages.nodes] == [3, 1]

    one = (await gql.message(app.token, 1, 2)).application
    assert one is not None and one.chat is not None and one.chat.message is not None
    assert one.chat.message.body == "General Grievous"

    renamed = await gql.update_application(app.token, "mobile")
    assert renamed.update_application.application.name == "mobile"
    assert (await gql.application("no-such-token")).application is None


async def test_cursor_pagination(gql: GraphQLChatClient) -> None:
    token = (await gql.create_application("pages")).create_application.application.token
    await gql.create_chat(token)
    for n in range(1, 12):
        await gql.create_message(token, 1, f"m{n}")
    numbers: list[int] = []
    after: str | None = None
    while True:
        app = (await gql.chat_messages(token, 1, first=4, after=after)).application
        assert app is not None and app.chat is not None
        page = app.chat.messages
        numbers += [edge.node.number for edge in page.edges]
        if not page.page_info.has_next_page:
            break
        after = page.page_info.end_cursor
    assert numbers == list(range(1, 12))

    seen: list[int] = []
    after = None
    while True:
        app2 = (await gql.search_messages(token, 1, "m1", first=1, after=after)).application
        assert app2 is not None and app2.chat is not None
        seen += [m.number for m in app2.chat.search_messages.nodes]
        if not app2.chat.search_messages.page_info.has_next_page:
            break
        after = app2.chat.search_messages.page_info.end_cursor
    assert seen == [11, 10, 1]

    listed = await gql.applications(first=100)
    assert token in [a.token for a in listed.applications.nodes]


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda c: c.create_application(""), "BAD_USER_INPUT"),
        (lambda c: c.create_application("x" * 256), "BAD_USER_INPUT"),
        (lambda c: c.update_application("nope", "x"), "NOT_FOUND"),
        (lambda c: c.create_chat("nope"), "NOT_FOUND"),
        (lambda c: c.create_message("nope", 1, "x"), "NOT_FOUND"),
        (lambda c: c.applications(first=0), "BAD_USER_INPUT"),
        (lambda c: c.applications(after="!!"), "BAD_USER_INPUT"),
        (lambda c: c.applications(first=101), "BAD_USER_INPUT"),
        (lambda c: c.applications(after="bWVzc2FnZTox"), "BAD_USER_INPUT"),
    ],
)
async def test_errors_carry_codes(gql: GraphQLChatClient, call: Any, code: str) -> None:
    with pytest.raises(GraphQLClientGraphQLMultiError) as raised:
        await call(gql)
    assert _codes(raised.value) == [code]


async def test_message_errors_change_nothing(gql: GraphQLChatClient) -> None:
    token = (await gql.create_application("e")).create_application.application.token
    await gql.create_chat(token)
    await gql.create_message(token, 1, "kept")
    for call, code in [
        (gql.create_message(token, 2, "x"), "NOT_FOUND"),
        (gql.create_message(token, 1, " "), "BAD_USER_INPUT"),
        (gql.create_message(token, -1, "x"), "BAD_USER_INPUT"),
        (gql.update_message(token, 1, 2, "x"), "NOT_FOUND"),
        (gql.update_message(token, 1, 1, ""), "BAD_USER_INPUT"),
        (gql.search_messages(token, 1, "   "), "BAD_USER_INPUT"),
    ]:
        with pytest.raises(GraphQLClientGraphQLMultiError) as raised:
            await call
        assert _codes(raised.value) == [code]
    app = (await gql.application(token)).application
    assert app is not None
    assert [[m.body for m in c.messages.nodes] for c in app.chats.nodes] == [["kept"]]


async def _post(http: httpx.AsyncClient, query: str, variables: Any = None) -> dict[str, Any]:
    response = await http.post("/graphql", json={"query": query, "variables": variables})
    assert "Traceback" not in response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("{ applications { nodes { token ", "GRAPHQL_PARSE_FAILED"),
        ("{ applications { nodes { tokn } } }", "GRAPHQL_VALIDATION_FAILED"),
        (
            "{ " + " ".join(f"a{i}: __typename" for i in range(16)) + " }",
            "GRAPHQL_VALIDATION_FAILED",
        ),
        ("{ " + "__typename " * 3000 + "}", "GRAPHQL_PARSE_FAILED"),
        ("{ applications { nodes { chats { nodes { messages { nodes { number } } } } } } }", None),
    ],
)
async def test_limits_and_parse_errors(http: httpx.AsyncClient, query: str, code: str) -> None:
    result = await _post(http, query)
    if code is None:
        assert "errors" not in result
    else:
        assert [e["extensions"]["code"] for e in result["errors"]] == [code]


DEEPEST = (
    "{ applications { edges { node { chats { edges { node { messages { edges { node { number "
    "} } } } } } } } } }"
)


async def test_the_deepest_query_fits_the_default_depth(http: httpx.AsyncClient) -> None:
    assert "errors" not in await _post(http, DEEPEST)


async def test_too_deep_query_is_refused(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"max_query_depth": 6}), migrate=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        result = await _post(http, DEEPEST)
    assert [e["extensions"]["code"] for e in result["errors"]] == ["GRAPHQL_VALIDATION_FAILED"]
    assert "over the depth limit: 10 (at most 6, MAX_QUERY_DEPTH)" in result["errors"][0]["message"]


@pytest.mark.parametrize("value", ["one", 10**30, 2**31])
async def test_bad_variables_are_bad_user_input(http: httpx.AsyncClient, value: object) -> None:
    query = 'query($n: Int!) { application(token: "t") { chat(number: $n) { number } } }'
    result = await _post(http, query, {"n": value})
    assert [e["extensions"]["code"] for e in result["errors"]] == ["BAD_USER_INPUT"]


async def test_playground_is_served(http: httpx.AsyncClient) -> None:
    page = await http.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "/static/graphiql/graphiql.min.js" in page.text
    assert "unpkg" not in page.text and "jsdelivr" not in page.text
    script = await http.get("/static/graphiql/graphiql.min.js")
    assert script.status_code == 200 and len(script.content) > 100_000


async def test_nested_lists_cost_a_bounded_number_of_statements(
    http: httpx.AsyncClient, gql: GraphQLChatClient
) -> None:
    for a in range(4):
        token = (await gql.create_application(f"a{a}")).create_application.application.token
        for c in range(1, 5):
            await gql.create_chat(token)
            for m in range(3):
                await gql.create_message(token, c, f"message {m}")
    container: Container = http.app.state.container  # type: ignore[attr-defined]
    assert isinstance(container.store, SqlStore)  # statements are counted on its connections
    statements: list[str] = []

    def run(n: int) -> str:
        return (
            f"{{ applications(first: {n}) {{ nodes {{ name chats(first: {n}) {{ nodes {{ number "
            f"messages(first: {n}) {{ nodes {{ number body }} }} }} }} }} }} }}"
        )

    stop = container.store.on_statement(statements.append)
    try:
        small = await _post(http, run(2))
        small_count = len(statements)
        statements.clear()
        large = await _post(http, run(30))  # as large as the default cost limit allows
        large_count = len(statements)
    finally:
        stop()
    assert len(small["data"]["applications"]["nodes"]) == 2
    nodes = large["data"]["applications"]["nodes"]
    assert len(nodes) == 4 and all(len(a["chats"]["nodes"]) == 4 for a in nodes)
    assert small_count == large_count == 3


async def test_search_under_a_list_of_chats_is_one_search_request(
    http: httpx.AsyncClient, gql: GraphQLChatClient
) -> None:
    token = (await gql.create_application("search")).create_application.application.token
    for chat in range(1, 5):
        await gql.create_chat(token)
        for m in range(chat):
            await gql.create_message(token, chat, f"needle {m} in chat {chat}")
        await gql.create_message(token, chat, "hay")
    container: Container = http.app.state.container  # type: ignore[attr-defined]
    search = container.search
    calls: list[list[int]] = []
    original = search.search

    async def counted(chat_ids: Any, *args: Any) -> Any:
        calls.append(list(chat_ids))
        return await original(chat_ids, *args)

    search.search = counted  # type: ignore[method-assign,assignment]
    try:
        result = await _post(
            http,
            "query($t: String!) { application(token: $t) { chats(first: 10) { nodes { number "
            'searchMessages(query: "NEEDLE", first: 2) { nodes { number } '
            "pageInfo { hasNextPage } } } } } }",
            {"t": token},
        )
    finally:
        del search.search
    chats = result["data"]["application"]["chats"]["nodes"]
    found = {
        c["number"]: (
            [m["number"] for m in c["searchMessages"]["nodes"]],
            c["searchMessages"]["pageInfo"]["hasNextPage"],
        )
        for c in chats
    }
    assert found == {1: ([1], False), 2: ([2, 1], False), 3: ([3, 2], True), 4: ([4, 3], True)}
    assert len(calls) == 1 and len(calls[0]) == 4


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"nonsense", 400), (b"{}", 400), (b'{"query": 12}', 400)],
)
async def test_requests_that_are_not_graphql(
    http: httpx.AsyncClient, body: bytes, status: int
) -> None:
    response = await http.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST" and error["message"]


async def test_repeated_queries_skip_parsing_and_validation(http: httpx.AsyncClient) -> None:
    documents = _documents(http)
    query = "{ applications(first: 3) { nodes { name } } __typename }"
    await _post(http, query)
    hits, misses = documents.hits, documents.misses
    for _ in range(5):
        assert "errors" not in await _post(http, query)
    assert (documents.hits, documents.misses) == (hits + 5, misses)
    # An invalid query is validated once too, and answered the same each time.
    bad = "{ applications { nodes { nope } } }"
    first = await _post(http, bad)
    assert first == await _post(http, bad)
    assert first["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert documents.misses == misses + 1


def _documents(http: httpx.AsyncClient) -> Documents:
    schema = http.app.routes[0].endpoint.schema  # type: ignore[attr-defined]
    [factory] = schema.extensions
    documents: Documents = factory.args[0]
    return documents


PAGE_BACK = """query($t: String!, $last: Int, $before: String) {
  application(token: $t) {
    chats(last: 1) { totalCount nodes { number } pageInfo { hasPreviousPage hasNextPage } }
    chat(number: 1) {
      messages(last: $last, before: $before) {
        totalCount
        nodes { number body }
        pageInfo { hasPreviousPage hasNextPage startCursor endCursor }
      }
    }
  }
}"""


async def test_the_newest_page_then_scrolling_back(http: httpx.AsyncClient) -> None:
    token = (await http.post("/api/v1/applications", json={"name": "back"})).json()["token"]
    for _ in range(2):
        await http.post(f"/api/v1/applications/{token}/chats", json={})
    for n in range(1, 8):
        await http.post(f"/api/v1/applications/{token}/chats/1/messages", json={"body": f"m{n}"})
    seen: list[int] = []
    before: str | None = None
    pages = 0
    while True:
        result = await _post(http, PAGE_BACK, {"t": token, "last": 3, "before": before})
        assert "errors" not in result, result
        app = result["data"]["application"]
        assert app["chats"] == {
            "totalCount": 2,
            "nodes": [{"number": 2}],
            "pageInfo": {"hasPreviousPage": True, "hasNextPage": False},
        }
        messages = app["chat"]["messages"]
        assert messages["totalCount"] == 7
        numbers = [m["number"] for m in messages["nodes"]]
        assert numbers == sorted(numbers)  # each page ascending, the newest first
        assert messages["pageInfo"]["hasNextPage"] == (before is not None)
        seen = numbers + seen
        pages += 1
        if not messages["pageInfo"]["hasPreviousPage"]:
            break
        before = messages["pageInfo"]["startCursor"]
    assert seen == list(range(1, 8)) and pages == 3
    # Forward pages know a previous page exists once past a cursor.
    forward = await _post(
        http,
        "query($t: String!, $after: String) { application(token: $t) { chat(number: 1) { "
        "messages(first: 2, after: $after) { pageInfo { hasPreviousPage startCursor } } } } }",
        {"t": token, "after": before},
    )
    info = forward["data"]["application"]["chat"]["messages"]["pageInfo"]
    assert info["hasPreviousPage"] is True


async def test_paging_both_ways_at_once_and_over_the_cap_are_refused(
    http: httpx.AsyncClient,
) -> None:
    token = (await http.post("/api/v1/applications", json={"name": "both"})).json()["token"]
    await http.post(f"/api/v1/applications/{token}/chats", json={})
    for arguments, field in (("first: 2, last: 2", "last"), ("last: 101", "last")):
        query = (
            f'{{ application(token: "{token}") {{ chat(number: 1) {{ '
            f"messages({arguments}) {{ nodes {{ number }} }} }} }} }}"
        )
        result = await _post(http, query)
        assert result["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", result
        assert field in result["errors"][0]["message"]
    # `last` counts for the cost as `first` does.
    costly = (
        "{ applications(last: 100) { nodes { chats(last: 100) { nodes { "
        "messages(last: 100) { nodes { body } } } } } } }"
    )
    refused = await _post(http, costly)
    assert refused["errors"][0]["extensions"]["limit"] == "MAX_QUERY_COST"


async def test_the_typed_client_scrolls_back(gql: GraphQLChatClient) -> None:
    token = (await gql.create_application("typed")).create_application.application.token
    await gql.create_chat(token)
    for n in range(1, 6):
        await gql.create_message(token, 1, f"m{n}")
    newest = await gql.newest_messages(token, 1, last=2)
    assert newest.application and newest.application.chat
    page = newest.application.chat.messages
    assert [m.number for m in page.nodes] == [4, 5] and page.total_count == 5
    assert page.page_info.has_previous_page and not page.page_info.has_next_page
    older = await gql.newest_messages(token, 1, last=2, before=page.page_info.start_cursor)
    assert older.application and older.application.chat
    assert [m.number for m in older.application.chat.messages.nodes] == [2, 3]


NODE = """query($id: ID!) { node(id: $id) {
  __typename id
  ... on Application { name }
  ... on Chat { number messagesCount }
  ... on Message { number body }
} }"""


async def test_objects_are_refetched_by_their_global_id(http: httpx.AsyncClient) -> None:
    token = (await http.post("/api/v1/applications", json={"name": "relay"})).json()["token"]
    created = await _post(
        http,
        "mutation($t: String!) { createChat(input: {applicationToken: $t}) { chat { id } } }",
        {"t": token},
    )
    sent = await _post(
        http,
        "mutation($t: String!) { createMessage(input: {applicationToken: $t, chatNumber: 1, "
        'body: "hi"}) { message { id } } }',
        {"t": token},
    )
    listed = await _post(
        http,
        "query($t: String!) { application(token: $t) { id chat(number: 1) { id "
        "messages { nodes { id } } } } }",
        {"t": token},
    )
    app = listed["data"]["application"]
    chat_id, message_id = app["chat"]["id"], app["chat"]["messages"]["nodes"][0]["id"]
    assert created["data"]["createChat"]["chat"]["id"] == chat_id
    assert sent["data"]["createMessage"]["message"]["id"] == message_id
    expected = [
        {"__typename": "Application", "id": app["id"], "name": "relay"},
        {"__typename": "Chat", "id": chat_id, "number": 1, "messagesCount": 1},
        {"__typename": "Message", "id": message_id, "number": 1, "body": "hi"},
    ]
    for node_id, node in zip((app["id"], chat_id, message_id), expected, strict=True):
        assert (await _post(http, NODE, {"id": node_id}))["data"]["node"] == node
        assert token not in base64.urlsafe_b64decode(node_id + "==").decode()
    many = await _post(
        http,
        "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }",
        {"ids": [message_id, "nope", chat_id]},
    )
    assert many["data"]["nodes"] == [
        {"__typename": "Message", "id": message_id},
        None,
        {"__typename": "Chat", "id": chat_id},
    ]


async def test_an_id_not_made_from_the_application_s_token_names_nothing(
    http: httpx.AsyncClient,
) -> None:
    """Another application's objects cannot be reached by editing an id, or by signing one
    with one's own token."""
    victim = (await http.post("/api/v1/applications", json={"name": "victim"})).json()["token"]
    await http.post(f"/api/v1/applications/{victim}/chats", json={})
    await http.post(f"/api/v1/applications/{victim}/chats/1/messages", json={"body": "secret"})
    mine = (await http.post("/api/v1/applications", json={"name": "me"})).json()["token"]
    await http.post(f"/api/v1/applications/{mine}/chats", json={})
    await http.post(f"/api/v1/applications/{mine}/chats/1/messages", json={"body": "mine"})
    listed = await _post(
        http,
        "query($t: String!) { application(token: $t) { id chat(number: 1) { "
        "messages { nodes { id } } } } }",
        {"t": mine},
    )
    my_message = listed["data"]["application"]["chat"]["messages"]["nodes"][0]["id"]
    raw = base64.urlsafe_b64decode(my_message + "==").decode()
    kind, app_id, chat, number, mac = raw.split(":")
    victim_app = await _post(
        http, "query($t: String!) { application(token: $t) { id } }", {"t": victim}
    )
    victim_app_id = (
        base64.urlsafe_b64decode(victim_app["data"]["application"]["id"] + "==")
        .decode()
        .split(":")[1]
    )
    payload = f"{kind}:{victim_app_id}:{chat}:{number}"
    my_mac = hmac.new(mine.encode(), payload.encode(), hashlib.sha256).hexdigest()[:32]
    forged = [
        # my signature on the victim's application id
        f"{kind}:{victim_app_id}:{chat}:{number}:{mac}",
        # my message's id with another number
        f"{kind}:{app_id}:{chat}:{int(number) + 1}:{mac}",
        # signed with my token, for the victim's message
        f"{payload}:{my_mac}",
    ]
    for value in forged:
        encoded = base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")
        answer = await _post(http, NODE, {"id": encoded})
        assert answer == {"data": {"node": None}}, value
    too_many = await _post(
        http, "query($ids: [ID!]!) { nodes(ids: $ids) { id } }", {"ids": ["x"] * 101}
    )
    assert too_many["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_times_say_when_writes_were_accepted(gql: GraphQLChatClient) -> None:
    """`createdAt` is when the create was accepted (its response carries it, every read says
    the same, ordering by it or by number agrees, concurrent creates included); an update
    moves `updatedAt` only; a chat is older than its messages."""
    before = datetime.now(UTC)
    token = (await gql.create_application("times")).create_application.application.token
    chat = (await gql.create_chat(token)).create_chat.chat
    sent = await asyncio.gather(*[gql.create_message(token, 1, f"m{n}") for n in range(30)])
    after = datetime.now(UTC)
    created = {s.create_message.message.number: s.create_message.message for s in sent}
    assert before <= chat.created_at <= min(m.created_at for m in created.values()) <= after
    assert all(m.created_at == m.updated_at for m in created.values())

    page = (await gql.newest_messages(token, 1, last=50)).application
    assert page is not None and page.chat is not None
    stored = page.chat.messages.nodes
    assert [m.number for m in stored] == list(range(1, 31))
    assert [(m.created_at, m.updated_at) for m in stored] == [
        (created[m.number].created_at, created[m.number].updated_at) for m in stored
    ]
    assert [m.created_at for m in stored] == sorted(m.created_at for m in stored)

    edited = (await gql.update_message(token, 1, 2, "edited")).update_message.message
    assert edited.created_at == created[2].created_at  # read from the store
    assert edited.updated_at > created[30].created_at
    read = (await gql.message(token, 1, 2)).application
    assert read is not None and read.chat is not None and read.chat.message is not None
    assert (read.chat.message.created_at, read.chat.message.updated_at) == (
        edited.created_at,
        edited.updated_at,
    )
    found = (await gql.search_messages(token, 1, "edited")).application
    assert found is not None and found.chat is not None
    [hit] = found.chat.search_messages.nodes
    assert (hit.created_at, hit.updated_at) == (edited.created_at, edited.updated_at)


async def test_times_are_utc_to_the_microsecond(http: httpx.AsyncClient) -> None:
    """The DateTime scalar's one format, in GraphQL and REST alike."""
    token = (await http.post("/api/v1/applications", json={"name": "a"})).json()["token"]
    rest = (await http.post(f"/api/v1/applications/{token}/chats", json={})).json()
    answer = await http.post(
        "/graphql",
        json={
            "query": "query($t: String!) { application(token: $t) { "
            "chat(number: 1) { createdAt } } }",
            "variables": {"t": token},
        },
    )
    graphql_time = answer.json()["data"]["application"]["chat"]["createdAt"]
    assert graphql_time == rest["created_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", graphql_time)


async def test_an_update_of_a_message_still_queued_answers_its_create_time_once_stored() -> None:
    """Distributed: a create is acknowledged once queued. An update sent before a worker
    stored it answers the create's time anyway (read from the store once it is there, in
    GraphQL and REST), not a guess."""
    async with AsyncExitStack() as stack:
        settings = await stack.enter_async_context(distributed_settings())
        app = create_app(settings, migrate=False)
        await stack.enter_async_context(app.router.lifespan_context(app))
        http = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        )
        token = (await http.post("/api/v1/applications", json={"name": "a"})).json()["token"]
        await http.post(f"/api/v1/applications/{token}/chats", json={})
        base = f"/api/v1/applications/{token}/chats/1/messages"
        sent = (await http.post(base, json={"body": "first"})).json()  # queued, no worker yet
        update = (
            "mutation($t: String!) { updateMessage(input: {applicationToken: $t, chatNumber: 1, "
            'number: 1, body: "edited"}) { message { createdAt updatedAt } } }'
        )
        graphql = asyncio.create_task(
            http.post("/graphql", json={"query": update, "variables": {"t": token}})
        )
        rest = asyncio.create_task(http.put(f"{base}/1", json={"body": "again"}))
        await asyncio.sleep(0.5)
        assert not graphql.done() and not rest.done()  # waiting for the store
        container: Container = app.state.container
        worker = Consumer(settings.rabbitmq_url or "", container.writer, settings.queue_name)
        task = asyncio.create_task(worker.run())
        try:
            answer = (await asyncio.wait_for(graphql, 10)).json()
            assert answer["data"]["updateMessage"]["message"]["createdAt"] == sent["created_at"]
            assert (await asyncio.wait_for(rest, 10)).json()["created_at"] == sent["created_at"]
        finally:
            worker.stop()
            await asyncio.wait_for(task, 30)


async def test_search_pages_backward_to_the_newer_matches(http: httpx.AsyncClient) -> None:
    """`last` alone: the oldest matches; `before` a page's start cursor: the matches newer
    than it; every page newest first, with the full page info."""
    token = (await http.post("/api/v1/applications", json={"name": "s"})).json()["token"]
    await http.post(f"/api/v1/applications/{token}/chats", json={})
    for n in range(1, 8):
        await http.post(f"/api/v1/applications/{token}/chats/1/messages", json={"body": f"m{n}"})
    query = """query($t: String!, $last: Int, $before: String) { application(token: $t) {
      chat(number: 1) { searchMessages(query: "M", last: $last, before: $before) {
        nodes { number } pageInfo { hasPreviousPage hasNextPage startCursor endCursor } } } } }"""

    async def page(before: str | None) -> dict[str, Any]:
        answer = await http.post(
            "/graphql",
            json={"query": query, "variables": {"t": token, "last": 3, "before": before}},
        )
        found: dict[str, Any] = answer.json()["data"]["application"]["chat"]["searchMessages"]
        return found

    oldest = await page(None)
    assert [n["number"] for n in oldest["nodes"]] == [3, 2, 1]
    assert (oldest["pageInfo"]["hasPreviousPage"], oldest["pageInfo"]["hasNextPage"]) == (
        True,
        False,
    )
    newer = await page(oldest["pageInfo"]["startCursor"])
    assert [n["number"] for n in newer["nodes"]] == [6, 5, 4]
    assert (newer["pageInfo"]["hasPreviousPage"], newer["pageInfo"]["hasNextPage"]) == (True, True)
    newest = await page(newer["pageInfo"]["startCursor"])
    assert [n["number"] for n in newest["nodes"]] == [7]
    assert newest["pageInfo"]["hasPreviousPage"] is False
