"""Shared fixtures: settings on a fresh SQLite file, the running container, the ASGI app."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from graphql_chat import migrations
from graphql_chat.adapters.elastic_search import ElasticSearch
from graphql_chat.adapters.rabbitmq.consumer import Consumer
from graphql_chat.adapters.rabbitmq.publisher import RabbitPipeline
from graphql_chat.app import create_app
from graphql_chat.bootstrap import Container, bootstrap, running
from graphql_chat.config import Settings
from tests.client.graphql_chat_client import GraphQLChatClient
from tests.engines import delete_queues, engine_url, mysql_database, unique_name
from tests.numbering import drop_keys


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


@pytest.fixture(params=["embedded", "distributed"])
async def http(
    request: pytest.FixtureRequest, settings: Settings
) -> AsyncIterator[httpx.AsyncClient]:
    """The ASGI app over the embedded adapters, or over MySQL, Redis, RabbitMQ, Elasticsearch
    with a worker consuming in the background.

    Reads show persisted state, so in the distributed mode every write request waits, before
    its response reaches the test, until the worker has applied what was published and search
    has refreshed: the tests then read as they would after the persistence lag.
    """
    async with AsyncExitStack() as stack:
        worker: Consumer | None = None
        if request.param == "distributed":
            settings = await stack.enter_async_context(distributed_settings())
        app = create_app(settings, migrate=False)
        await stack.enter_async_context(app.router.lifespan_context(app))
        container: Container = app.state.container
        hooks: dict[str, list[Any]] = {}
        if request.param == "distributed":
            worker = Consumer(
                engine_url("RABBITMQ_URL"), container.writer, settings.queue_name, batch_ms=2
            )
            task = asyncio.create_task(worker.run())
            stack.push_async_callback(_stop_worker, worker, task)
            hooks["response"] = [_settled(worker, container)]
        client = await stack.enter_async_context(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://testserver",
                event_hooks=hooks,
            )
        )
        client.app = app  # type: ignore[attr-defined]
        yield client


@asynccontextmanager
async def distributed_settings(redis: str = "REDIS_URL") -> AsyncIterator[Settings]:
    """The distributed mode on the engines, numbering on `redis` (or REDIS_CLUSTER_URL)."""
    async with mysql_database() as url:
        settings = Settings(
            database_url=url,
            redis_url=engine_url(redis),
            redis_key_prefix=unique_name("t"),
            rabbitmq_url=engine_url("RABBITMQ_URL"),
            queue_name=unique_name("test"),
            elasticsearch_url=engine_url("ELASTICSEARCH_URL"),
            elasticsearch_index=unique_name("test"),
        )
        try:
            yield settings
        finally:
            await _drop_engine_state(settings)


async def _drop_engine_state(settings: Settings) -> None:
    """Remove what a test left in the shared engines, with the adapters' own helpers."""
    container = bootstrap(settings)
    pipeline, search = container.pipeline, container.search
    assert isinstance(pipeline, RabbitPipeline) and isinstance(search, ElasticSearch)
    try:
        await drop_keys(str(settings.redis_url), settings.redis_key_prefix)
        await delete_queues(settings.queue_name)
        await search.drop()
    finally:
        await container.close()


async def _stop_worker(worker: Consumer, task: asyncio.Task[None]) -> None:
    worker.stop()
    await asyncio.wait_for(task, 30)


def _settled(worker: Consumer, container: Container) -> Any:
    async def hook(response: httpx.Response) -> None:
        if response.request.method not in ("POST", "PUT"):
            return
        pipeline = container.pipeline
        assert isinstance(pipeline, RabbitPipeline)
        deadline = time.monotonic() + 30
        while worker.applied + worker.rejected < pipeline.published:
            assert time.monotonic() < deadline, "the worker did not apply the writes in time"
            await asyncio.sleep(0.005)
        await container.search.refresh()

    return hook


@pytest.fixture
def gql(http: httpx.AsyncClient) -> GraphQLChatClient:
    return GraphQLChatClient(url="http://testserver/graphql", http_client=http)  # type: ignore[arg-type]
