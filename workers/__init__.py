"""The worker process of the distributed mode: bootstrap, then the RabbitMQ consumer driving
the write side (`graphql_chat.writer.Writer`), until SIGTERM or SIGINT.

`graphql-chat worker` and `python -m workers` both run `workers.run`.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from prometheus_client import start_http_server

from graphql_chat import metrics
from graphql_chat.adapters.rabbitmq import queues
from graphql_chat.adapters.rabbitmq.consumer import Consumer
from graphql_chat.bootstrap import running
from graphql_chat.config import Settings

log = logging.getLogger(__name__)


def serve_metrics(host: str, port: int) -> None:
    """`/metrics` (any path, in fact) on `port`, from a thread. A port already taken is
    logged and the worker goes on without: its writes matter more than its metrics."""
    try:
        start_http_server(port, addr=host)
    except OSError as error:
        log.error("cannot serve metrics on %s:%d (%s): going on without", host, port, error)
        return
    log.info("metrics on http://%s:%d/metrics", host, port)


async def run(settings: Settings, burst: bool = False) -> None:
    """Consume until stopped: on SIGTERM or SIGINT, stop consuming, finish the batch in hand,
    index and acknowledge it, close. With `burst`, return once the queue is empty."""
    assert settings.rabbitmq_url, "the embedded mode has no queue to consume"
    async with running(settings) as container:
        # One consumer per write queue: the one taking new writes is consumed always, the
        # other while it holds anything (see graphql_chat.adapters.rabbitmq.queues).
        consumers = [
            Consumer(
                settings.rabbitmq_url,
                container.writer,
                settings.queue_name,
                batch_size=settings.batch_max_events,
                batch_ms=settings.worker_batch_ms,
                lane=lane,
            )
            for lane in range(queues.LANES)
        ]

        def stop() -> None:
            for consumer in consumers:
                consumer.stop()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        watcher = asyncio.create_task(metrics.watch_health(container.health), name="health")
        try:
            runs = [asyncio.ensure_future(c.run(burst=burst)) for c in consumers]
            try:
                await asyncio.gather(*runs)
            finally:  # one failed: the others stop too, and finish what they hold
                stop()
                await asyncio.gather(*runs, return_exceptions=True)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
