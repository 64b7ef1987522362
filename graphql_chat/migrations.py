"""Bringing a database up to date with the Alembic history in `alembic/`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

from graphql_chat.errors import ConfigurationError


def _root() -> Path:
    """The folder holding alembic.ini and alembic/: the source tree, or the working directory
    of an installed copy (the container image puts them in /app)."""
    for candidate in (Path(__file__).resolve().parent.parent, Path.cwd()):
        if (candidate / "alembic.ini").is_file() and (candidate / "alembic").is_dir():
            return candidate
    raise ConfigurationError("alembic.ini and alembic/ not found beside the package or here")


def alembic_config(database_url: str) -> Config:
    root = _root()
    config = Config(str(root / "alembic.ini"))
    config.set_main_option("script_location", str(root / "alembic"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Blocking: alembic/env.py runs its own event loop."""
    path = _sqlite_path(database_url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), revision)


async def upgrade_async(database_url: str) -> None:
    await asyncio.to_thread(upgrade, database_url)


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite"):
        return None
    _, _, path = url.partition(":///")
    return None if path in ("", ":memory:") else Path(path)
