"""Shared fixtures: settings on a fresh SQLite file, the running container, the ASGI app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from graphql_chat import migrations
from graphql_chat.app import create_app
from graphql_chat.bootstrap import Container, running
from graphql_chat.config import Settings
from tests.client.graphql_chat_client import GraphQLChatClient


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}"
    migrations.upgrade(url)
    return url


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, sqlite_synchronous="NORMAL")


@pytest.fixture
async def container(settings: Settings) -> AsyncIterator[Container]:
    async with running(settings) as started:
        yield started


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, migrate=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as client,
    ):
        client.app = app  # type: ignore[attr-defined]
        yield client


@pytest.fixture
def gql(http: httpx.AsyncClient) -> GraphQLChatClient:
    return GraphQLChatClient(url="http://testserver/graphql", http_client=http)  # type: ignore[arg-type]
