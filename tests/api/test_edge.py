"""Who may list applications, and which origins may call from a browser."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from graphql_chat.app import create_app
from graphql_chat.config import Settings
from graphql_chat.graphql.view import wants_graphql_response


@asynccontextmanager
async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, migrate=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http,
    ):
        yield http


async def test_listing_is_refused_off_loopback_without_an_admin_token(settings: Settings) -> None:
    async with _client(settings.model_copy(update={"host": "0.0.0.0"})) as http:
        token = (await http.post("/api/v1/applications", json={"name": "x"})).json()["token"]
        refused = await http.get("/api/v1/applications")
        assert refused.status_code == 403 and token not in refused.text
        assert "ADMIN_TOKEN" in refused.json()["error"]["message"]
        query = {"query": "{ applications { nodes { token } } }"}
        answer = (await http.post("/graphql", json=query)).json()
        assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert (await http.get(f"/api/v1/applications/{token}")).status_code == 200


async def test_cors_is_off_by_default_and_follows_the_allow_list(settings: Settings) -> None:
    preflight = {"origin": "https://app.example", "access-control-request-method": "POST"}
    async with _client(settings) as http:
        answer = await http.options("/graphql", headers=preflight)
        assert "access-control-allow-origin" not in answer.headers
    allowed = settings.model_copy(update={"cors_allow_origins": "https://app.example"})
    async with _client(allowed) as http:
        answer = await http.options("/graphql", headers=preflight)
        assert answer.headers["access-control-allow-origin"] == "https://app.example"
        other = await http.options(
            "/graphql", headers={**preflight, "origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers


def test_accept_negotiation() -> None:
    assert wants_graphql_response("application/graphql-response+json")
    assert wants_graphql_response("application/graphql-response+json, application/json;q=0.9")
    assert not wants_graphql_response("application/json")
    assert not wants_graphql_response("application/json, application/graphql-response+json;q=0.5")
    assert not wants_graphql_response("*/*")
    assert not wants_graphql_response("")
