"""Automatic persisted queries, as Apollo Client and urql send them: a hash instead of the
document, `PersistedQueryNotFound` on a miss, the document once with its hash, then the hash
alone, over POST or GET."""

from __future__ import annotations

import hashlib
import json

import httpx

from graphql_chat.app import create_app
from graphql_chat.config import Settings

QUERY = "query Chats($t: String!) { application(token: $t) { name chatsCount } }"
HASH = hashlib.sha256(QUERY.encode()).hexdigest()


def _persisted(digest: str = HASH, version: int = 1) -> dict[str, object]:
    return {"persistedQuery": {"version": version, "sha256Hash": digest}}


async def _token(http: httpx.AsyncClient) -> str:
    created = await http.post("/api/v1/applications", json={"name": "apq"})
    token: str = created.json()["token"]
    return token


async def test_a_hash_the_server_does_not_know_then_the_document_then_the_hash(
    http: httpx.AsyncClient,
) -> None:
    variables = {"t": await _token(http)}
    miss = await http.post("/graphql", json={"variables": variables, "extensions": _persisted()})
    assert miss.status_code == 200
    assert miss.json() == {
        "errors": [
            {
                "message": "PersistedQueryNotFound",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
            }
        ]
    }
    registered = await http.post(
        "/graphql", json={"query": QUERY, "variables": variables, "extensions": _persisted()}
    )
    expected = {"data": {"application": {"name": "apq", "chatsCount": 0}}}
    assert registered.json() == expected
    hit = await http.post("/graphql", json={"variables": variables, "extensions": _persisted()})
    assert hit.json() == expected
    # A read as a GET of a few hundred bytes, cacheable by a CDN.
    got = await http.get(
        "/graphql",
        params={"variables": json.dumps(variables), "extensions": json.dumps(_persisted())},
    )
    assert got.status_code == 200 and got.json() == expected


async def test_a_hash_that_does_not_match_its_document_is_refused_and_not_kept(
    http: httpx.AsyncClient,
) -> None:
    variables = {"t": await _token(http)}
    other = "query Other($t: String!) { application(token: $t) { token } }"
    forged = await http.post(
        "/graphql", json={"query": other, "variables": variables, "extensions": _persisted()}
    )
    assert forged.status_code == 400
    assert forged.json()["errors"][0]["message"] == "provided sha does not match query"
    miss = await http.post("/graphql", json={"variables": variables, "extensions": _persisted()})
    assert miss.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"


async def test_malformed_persisted_query_extensions_are_refused(http: httpx.AsyncClient) -> None:
    for extensions in (
        _persisted(version=2),
        _persisted(digest="A" * 64),
        _persisted(digest="abc"),
        {"persistedQuery": "yes"},
    ):
        answer = await http.post("/graphql", json={"extensions": extensions})
        assert answer.status_code == 400, extensions
        assert answer.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_a_persisted_mutation_is_not_run_over_get(http: httpx.AsyncClient) -> None:
    mutation = 'mutation { createApplication(input: {name: "by get"}) { application { name } } }'
    digest = hashlib.sha256(mutation.encode()).hexdigest()
    await http.post("/graphql", json={"query": mutation, "extensions": _persisted(digest)})
    before = len((await http.get("/api/v1/applications")).json())
    refused = await http.get("/graphql", params={"extensions": json.dumps(_persisted(digest))})
    assert refused.status_code in (400, 405)
    assert len((await http.get("/api/v1/applications")).json()) == before


async def test_get_answers_say_whether_a_cache_may_keep_them(
    http: httpx.AsyncClient, settings: Settings
) -> None:
    """By default no GET answer may be kept (a kept read would hide later writes); with
    GRAPHQL_GET_MAX_AGE, answers without errors may, privately when credentials were sent;
    answers with errors never."""
    variables = {"t": await _token(http)}
    params = {"variables": json.dumps(variables), "extensions": json.dumps(_persisted())}
    miss = await http.get("/graphql", params=params)
    assert miss.headers["cache-control"] == "no-store"
    await http.post(
        "/graphql", json={"query": QUERY, "variables": variables, "extensions": _persisted()}
    )
    hit = await http.get("/graphql", params=params)
    assert hit.json()["data"]["application"]["name"] == "apq"
    assert hit.headers["cache-control"] == "no-store"
    assert hit.headers["vary"] == "Accept, Authorization"

    app = create_app(settings.model_copy(update={"graphql_get_max_age": 30}), migrate=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as own,
    ):
        query = {"query": QUERY, "variables": json.dumps({"t": await _token(own)})}
        assert (await own.get("/graphql", params=query)).headers["cache-control"] == (
            "public, max-age=30"
        )
        private = await own.get("/graphql", params=query, headers={"authorization": "Bearer x"})
        assert private.headers["cache-control"] == "private, max-age=30"
        unknown = {"query": "{ nothing }"}
        assert (await own.get("/graphql", params=unknown)).headers["cache-control"] == "no-store"
        posted = await own.post("/graphql", json={"query": query["query"], "variables": {"t": "x"}})
        assert "cache-control" not in posted.headers
