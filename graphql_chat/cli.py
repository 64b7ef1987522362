"""graphql-chat serve | worker | migrate | reindex | export-schema"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import shutil
import tempfile
from typing import Any

import typer
from tqdm import tqdm

import workers
from graphql_chat import migrations, process, tracing
from graphql_chat.config import Settings
from graphql_chat.errors import ConfigurationError

cli = typer.Typer(
    help="graphql-chat: a chat backend with GraphQL and REST APIs.",
    no_args_is_help=True,
    add_completion=False,
)


_settings = process.settings
_logging = process.configure_logging


@cli.command()
def serve(
    host: str | None = typer.Option(None, help="Address to bind (default: HOST or 127.0.0.1)."),
    port: int | None = typer.Option(None, help="Port to listen on (default: PORT or 3000)."),
    workers: int = typer.Option(1, min=1, help="API processes (distributed mode only)."),
) -> None:
    """Serve GraphQL at /graphql and REST at /api/v1; embedded mode also runs the pipeline."""
    import uvicorn

    from graphql_chat.app import create_app

    settings = _settings()
    if workers > 1 and not settings.distributed:
        typer.echo(
            "error: --workers needs the distributed mode (REDIS_URL, RABBITMQ_URL, a MySQL "
            "DATABASE_URL and ELASTICSEARCH_URL): the embedded mode is one process",
            err=True,
        )
        raise typer.Exit(2)
    if settings.persisted_queries_manifest:
        from graphql_chat.graphql.persisted import load_manifest

        try:
            load_manifest(settings.persisted_queries_manifest)
        except ConfigurationError as error:
            typer.echo(f"error: {error.message}", err=True)
            raise typer.Exit(2) from None
    _logging(settings)
    bind_host, bind_port = host or settings.host, port or settings.port
    # The app decides who may list applications from the address it listens on.
    settings = settings.model_copy(update={"host": bind_host})
    os.environ["HOST"] = bind_host
    if not settings.loopback and settings.admin_token is None:
        logging.getLogger("graphql_chat").warning(
            "listening on %s without ADMIN_TOKEN: listing applications is refused (set "
            "ADMIN_TOKEN to allow it with Authorization: Bearer <ADMIN_TOKEN>)",
            bind_host,
        )
    if workers == 1:
        tracing.configure("graphql-chat-api")  # (each of N processes does its own)
    if workers > 1:
        # The processes count into shared files, so that any of them answers /metrics for
        # all; set before they start (each reads it when it first imports the client).
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            shared = tempfile.mkdtemp(prefix="graphql-chat-metrics-")
            atexit.register(shutil.rmtree, shared, ignore_errors=True)
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = shared
        uvicorn.run(
            "graphql_chat.app:create_logging_app",
            factory=True,
            workers=workers,
            host=bind_host,
            port=bind_port,
            log_level=settings.log_level,
            log_config=None,  # ours (`_logging`): uvicorn's lines go the same way
            access_log=False,
            timeout_graceful_shutdown=10,
            **_websocket_options(settings),
            **_proxy_options(settings),
        )
    else:
        uvicorn.run(
            create_app(settings),
            host=bind_host,
            port=bind_port,
            log_level=settings.log_level,
            log_config=None,  # ours (`_logging`): uvicorn's lines go the same way
            access_log=False,
            timeout_graceful_shutdown=10,
            **_websocket_options(settings),
            **_proxy_options(settings),
        )


def _proxy_options(settings: Settings) -> dict[str, Any]:
    """X-Forwarded-For is believed from TRUSTED_PROXIES only, and from no one when it is
    unset (uvicorn would otherwise believe it from 127.0.0.1, or FORWARDED_ALLOW_IPS): a
    client's address is what the per-address rate limit counts."""
    trusted = [p.strip() for p in settings.trusted_proxies.split(",") if p.strip()]
    return {"proxy_headers": bool(trusted), "forwarded_allow_ips": trusted or None}


def _websocket_options(settings: Settings) -> dict[str, Any]:
    """No per-message compression (its zlib state costs hundreds of KB per connection, and
    it inflates what a client sends), and a frame no larger than a request body."""
    return {"ws_per_message_deflate": False, "ws_max_size": settings.max_request_bytes}


@cli.command()
def migrate() -> None:
    """Bring the database at DATABASE_URL up to the latest schema."""
    settings = _settings()
    migrations.upgrade(settings.database_url)
    typer.echo("database is up to date")


cli.command("worker")(workers.main)


@cli.command()
def reindex() -> None:
    """Rebuild the search index from the store."""
    from graphql_chat.bootstrap import running

    settings = _settings()

    async def run() -> int:
        async with running(settings, search=False) as container:
            with tqdm(unit="messages", desc="reindex") as bar:

                def advance(done: int) -> None:
                    bar.update(done)

                return await container.service.reads.reindex(advance)

    total = asyncio.run(run())
    typer.echo(f"reindexed {total} messages")


@cli.command("export-schema")
def export_schema(
    output: str | None = typer.Option(None, help="Write to this file instead of stdout."),
) -> None:
    """Print the GraphQL schema (SDL), as `schema.graphql` holds it."""
    from strawberry.printer import print_schema

    from graphql_chat.graphql.schema import build_schema

    text = print_schema(build_schema(Settings())) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        with open(output, "w", encoding="utf-8") as file:
            file.write(text)


def main() -> None:
    cli()
