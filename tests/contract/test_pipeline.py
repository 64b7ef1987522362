"""The pipeline contract: `submit` returns once the write is durable; batches share commits."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from graphql_chat.adapters.memory_pipeline import MemoryPipeline
from graphql_chat.adapters.sql_store import SqlStore
from graphql_chat.domain import ChatCreated, Event, MessageWritten, new_token
from graphql_chat.errors import Unavailable
from graphql_chat.ports import Pipeline
from graphql_chat.writer import Writer


async def test_submit_returns_after_commit(store: SqlStore, pipeline: Pipeline) -> None:
    app = (await store.insert_application(new_token(), "a")).id
    await pipeline.submit(ChatCreated(app, 1))
    await pipeline.submit(MessageWritten(app, 1, 1, "durable", 1))
    fresh = SqlStore(store.url)
    try:
        chat = (await fresh.chats_by_number([(app, 1)]))[(app, 1)]
        assert (await fresh.messages_by_number([(chat.id, 1)]))[(chat.id, 1)].body == "durable"
    finally:
        await fresh.close()


async def test_concurrent_submits_share_commits(store: SqlStore, writer: Writer) -> None:
    pipeline = MemoryPipeline(writer, max_batch=1000)
    await pipeline.start()
    try:
        app = (await store.insert_application(new_token(), "a")).id
        await pipeline.submit(ChatCreated(app, 1))
        await asyncio.gather(
            *[pipeline.submit(MessageWritten(app, 1, n, "x", n)) for n in range(1, 501)]
        )
        assert pipeline.batches < 100
        chat = (await store.chats_by_number([(app, 1)]))[(app, 1)]
        assert chat.messages_count == 500
    finally:
        await pipeline.close()


class _BrokenWriter(Writer):
    async def apply(self, events: Sequence[Event]) -> None:
        raise RuntimeError("disk full")


async def test_failed_commit_is_reported_not_acknowledged(store: SqlStore, writer: Writer) -> None:
    pipeline = MemoryPipeline(_BrokenWriter(writer.store, writer.search))
    await pipeline.start()
    try:
        with pytest.raises(Unavailable):
            await pipeline.submit(ChatCreated(1, 1))
    finally:
        await pipeline.close()
