"""Configuration: documented defaults, and combinations refused with a clear message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from graphql_chat.config import Settings
from graphql_chat.errors import ConfigurationError


def test_defaults() -> None:
    settings = Settings()
    assert settings.port == 3000
    assert settings.database_url.startswith("sqlite+aiosqlite:///")
    assert settings.max_body_length >= 65_535


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "8080")
    monkeypatch.setenv("MAX_PAGE_SIZE", "50")
    settings = Settings()
    assert (settings.port, settings.max_page_size) == (8080, 50)


@pytest.mark.parametrize(
    "changes",
    [
        {"database_url": "postgresql://x"},
        {"default_page_size": 200, "max_page_size": 100},
        {"rabbitmq_url": "amqp://127.0.0.1"},
    ],
)
def test_impossible_combinations_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        Settings(**changes).check()  # type: ignore[arg-type]


def test_cli_refuses_with_a_message_not_a_traceback() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "graphql_chat", "serve"],
        env={"PATH": "", "RABBITMQ_URL": "amqp://127.0.0.1:1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "needs REDIS_URL" in result.stderr and "Traceback" not in result.stderr


def test_the_worker_process_refuses_the_embedded_mode() -> None:
    """`python -m workers` is `graphql-chat worker`: without a queue it says why and exits."""
    result = subprocess.run(
        [sys.executable, "-m", "workers", "--burst"],
        env={"PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "RABBITMQ_URL is not set" in result.stderr and "Traceback" not in result.stderr


def test_export_schema_prints_the_checked_in_schema(tmp_path: Path) -> None:
    out = tmp_path / "schema.graphql"
    result = subprocess.run(
        [sys.executable, "-m", "graphql_chat", "export-schema", "--output", str(out)],
        env={"PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    checked_in = Path(__file__).resolve().parent.parent.parent / "schema.graphql"
    assert out.read_text() == checked_in.read_text()


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:6379", "REDIS_URL must be"),
        ("redis+sentinel://127.0.0.1:26379", "names its service"),
        ("redis+sentinel://127.0.0.1:26379/mymaster/zero", "names its service"),
        ("redis+cluster://127.0.0.1:7000/3", "one database"),
    ],
)
def test_a_redis_url_no_client_can_use_is_refused(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        Settings(redis_url=url).check()


def test_redis_urls_of_one_server_of_sentinels_or_of_a_cluster_are_accepted() -> None:
    for url in (
        "redis://127.0.0.1:6379/0",
        "rediss://:secret@redis.example:6380/1",
        "redis+sentinel://:secret@10.0.0.1:26379,10.0.0.2:26379/mymaster/0",
        "redis+cluster://10.0.0.1:7000,10.0.0.2:7000",
        "rediss+cluster://:secret@10.0.0.1:7000/0",
    ):
        Settings(redis_url=url).check()


def test_waiting_for_replicas_is_accepted_with_sentinel_and_a_cluster() -> None:
    for url in ("redis+sentinel://h:26379/m", "redis+cluster://h:7000"):
        Settings(redis_url=url, redis_wait_replicas=1).check()
