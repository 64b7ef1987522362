"""What every process's entry point does first (`graphql-chat ...`, `python -m workers`): the
settings, refused with exit status 2 when they cannot be right; logging; the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import typer

from graphql_chat import logs
from graphql_chat.config import Settings
from graphql_chat.errors import ConfigurationError


def refuse(message: str) -> typer.Exit:
    """Say why on standard error; the caller raises what this returns (exit status 2)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


def settings() -> Settings:
    try:
        loaded = Settings()
        loaded.check()
    except ConfigurationError as error:
        raise refuse(error.message) from None
    except ValueError as error:
        raise refuse(f"invalid configuration: {error}") from None
    return loaded


def configure_logging(settings: Settings) -> None:
    logs.configure(settings.log_level, settings.log_format)


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop where it is installed (uvicorn[standard] brings it; the API server
    uses it already): a worker's event loop is most of its CPU per message."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)
