"""A write overtaken by a numbering reset learns its fate from the store, not a guess."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from graphql_chat.adapters.rabbitmq.consumer import Consumer
from graphql_chat.bootstrap import running
from graphql_chat.domain import Event
from graphql_chat.ports import Pipeline
from tests.conftest import distributed_settings
from tests.engines import engine_url


class _LossAfterConfirm:
    """The real pipeline; Redis loses its data right after the broker confirms one write."""

    def __init__(self, pipeline: Pipeline, redis: Redis, prefix: str) -> None:
        self._pipeline = pipeline
        self._redis = redis
        self._prefix = prefix
        self.armed = False

    async def submit(self, event: Event) -> None:
        await self._pipeline.submit(event)
        if self.armed:
            self.armed = False
            await self._redis.flushall()


async def test_a_create_confirmed_before_the_drain_is_acknowledged_after_recovery() -> None:
    async with distributed_settings() as settings, running(settings) as container:
        redis = Redis.from_url(engine_url("REDIS_URL"))
        worker = Consumer(
            engine_url("RABBITMQ_URL"),
            container.writer,
            settings.queue_name,
            ledger=container.ledger,
        )
        consuming = asyncio.create_task(worker.run())
        try:
            service = container.service
            token = (await service.applications.create("app")).token
            assert (await service.chats.create(token)).number == 1
            assert (await service.messages.create(token, 1, "before")).number == 1
            loss = _LossAfterConfirm(service.acceptance.pipeline, redis, settings.redis_key_prefix)
            service.acceptance.pipeline = loss  # type: ignore[assignment]
            loss.armed = True
            # Queued before the loss, so the recovery's drain stores it: acknowledged.
            overtaken = await asyncio.wait_for(service.messages.create(token, 1, "overtaken"), 10)
            assert overtaken.number == 2
            app = await service.directory.application_id(token)
            stored = await container.store.message_revisions(app, 1, 2)
            assert stored is not None
            assert (await service.messages.create(token, 1, "after")).number == 3
        finally:
            worker.stop()
            await asyncio.wait_for(consuming, 30)
            await redis.aclose()
