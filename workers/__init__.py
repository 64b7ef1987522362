"""The worker process of the distributed mode: bootstrap, then the write queues' consumers
driving the write side (`graphql_chat.writer.Writer`), until SIGTERM or SIGINT.

`graphql-chat worker` and `python -m workers` both run `workers.main`.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import typer
from prometheus_client import start_http_server

from graphql_chat import health, process, tracing
from graphql_chat.bootstrap import running, write_consumers
from graphql_chat.config import Settings
from graphql_chat.errors import ConfigurationError

log = logging.getLogger(__name__)


def main(
    burst: bool = typer.Option(False, help="Exit once the queue is empty instead of waiting."),
    metrics_port: int | None = typer.Option(
        None,
        min=0,
        max=65535,
        help="Serve /metrics on this port (default: WORKER_METRICS_PORT or 9464; 0: none).",
    ),
) -> None:
    """Consume the RabbitMQ write queue and batch-write the store and search (distributed mode)."""
    settings = process.settings()
    if not settings.rabbitmq_url:
        raise process.refuse(
            "RABBITMQ_URL is not set: the embedded mode runs its pipeline inside "
            "`graphql-chat serve`, there is nothing for a worker to consume"
        )
    process.configure_logging(settings)
    tracing.configure("graphql-chat-worker")
    port = settings.worker_metrics_port if metrics_port is None else metrics_port
    if port:
        serve_metrics(settings.host, port)
    try:
        process.run(run(settings, burst))
    except ConfigurationError as error:
        raise process.refuse(error.message) from None


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
        consumers = write_consumers(container)

        def stop() -> None:
            for consumer in consumers:
                consumer.stop()

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop)
        watcher = asyncio.create_task(health.watch(container.ready), name="health")
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
