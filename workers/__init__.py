"""The worker process of the distributed mode: bootstrap, then the RabbitMQ consumer driving
the write side (`graphql_chat.writer.Writer`), until SIGTERM or SIGINT.

`graphql-chat worker` and `python -m workers` both run `workers.run`.
"""

from __future__ import annotations

import asyncio
import signal

from graphql_chat.adapters.rabbitmq.consumer import Consumer
from graphql_chat.bootstrap import running
from graphql_chat.config import Settings


async def run(settings: Settings, burst: bool = False) -> None:
    """Consume until stopped: on SIGTERM or SIGINT, stop consuming, finish the batch in hand,
    index and acknowledge it, close. With `burst`, return once the queue is empty."""
    assert settings.rabbitmq_url, "the embedded mode has no queue to consume"
    async with running(settings) as container:
        consumer = Consumer(
            settings.rabbitmq_url,
            container.writer,
            settings.queue_name,
            batch_size=settings.batch_max_events,
            batch_ms=settings.worker_batch_ms,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, consumer.stop)
        await consumer.run(burst=burst)
