"""Real server processes on loopback, each with its own database file and port."""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from graphql_chat.config import Settings
from tests.conftest import distributed_settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    database: Path
    port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None
    environment: dict[str, str] | None = None  # instead of the embedded database
    command: tuple[str, ...] = ("serve",)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": f"sqlite+aiosqlite:///{self.database}",
            "PORT": str(self.port),
            "SQLITE_SYNCHRONOUS": "FULL",
            "LOG_LEVEL": "warning",
            **(self.environment or {}),
        }
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "graphql_chat", *self.command],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if self.command[0] != "serve":
            return
        wait_healthy(self.url, self.process, self.log, timeout)

    def kill(self) -> None:
        """`kill -9`: no shutdown, no flush, no goodbye."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the process holds what it has and does nothing (a stalled worker)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused process cannot handle SIGTERM
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_healthy(
    url: str, process: subprocess.Popen[bytes], log: Path, within: float, every: float = 0.1
) -> None:
    """Until `url/health` answers 200; RuntimeError (with the log's end) if the process
    exits first or `within` seconds pass."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited {process.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(every)
    raise RuntimeError(f"not healthy within {within} s: {log.read_text()[-3000:]}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    started = Server(tmp_path / "chat.db", free_port(), tmp_path / "server.log")
    started.start()
    yield started
    started.stop()


def environment_of(settings: Settings) -> dict[str, str]:
    """The environment variables that give a process these distributed settings."""
    return {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": str(settings.redis_url),
        "REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "RABBITMQ_URL": str(settings.rabbitmq_url),
        "QUEUE_NAME": settings.queue_name,
        "ELASTICSEARCH_URL": str(settings.elasticsearch_url),
        "ELASTICSEARCH_INDEX": settings.elasticsearch_index,
    }


class Cluster:
    def __init__(self, settings: Settings, tmp: Path) -> None:
        self.settings = settings
        self.environment = environment_of(settings)
        self.tmp = tmp
        self.apis = [self._process(("serve",), f"api{i}") for i in range(2)]
        self.workers = [self._process(("worker",), f"worker{i}") for i in range(2)]

    def _process(self, command: tuple[str, ...], name: str) -> Server:
        port = free_port()  # an API's, or a worker's metrics
        environment = {**self.environment, "WORKER_METRICS_PORT": str(port)}
        return Server(
            self.tmp / "unused.db",
            port,
            self.tmp / f"{name}.log",
            environment=environment,
            command=command,
        )

    def start(self) -> None:
        for api in self.apis:
            api.start()
        for worker in self.workers:
            worker.start()

    def add_worker(self) -> Server:
        worker = self._process(("worker",), f"worker{len(self.workers)}")
        self.workers.append(worker)
        worker.start()
        return worker

    def stop(self) -> None:
        for process in [*self.apis, *self.workers]:
            process.stop()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with distributed_settings() as settings:
        started = Cluster(settings, tmp_path)
        started.start()
        try:
            yield started
        finally:
            started.stop()


CREATE = """mutation($t: String!, $c: Int!, $b: String!, $k: String) {
  createMessage(input: {applicationToken: $t, chatNumber: $c, body: $b, idempotencyKey: $k}) {
    message { number }
  }
}"""


async def create_message(
    http: httpx.AsyncClient, api: str, token: str, chat: int, body: str
) -> int:
    """Half over REST, half over GraphQL: both share the numbering. `api` prefixes the paths.

    As a careful client does, with an idempotency key, retried when the connection breaks
    before the answer came: the retry answers the same message, so the numbers the tests
    check stay exact."""
    key = secrets.token_hex(16)
    for attempt in range(3):
        try:
            return await _create_once(http, api, token, chat, body, key)
        except httpx.TransportError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def _create_once(
    http: httpx.AsyncClient, api: str, token: str, chat: int, body: str, key: str
) -> int:
    if random.random() < 0.5:
        response = await http.post(
            f"{api}/api/v1/applications/{token}/chats/{chat}/messages",
            json={"body": body},
            headers={"Idempotency-Key": key},
        )
        assert response.status_code == 201, f"{response.status_code} {response.text}"
        number: int = response.json()["number"]
        return number
    variables = {"t": token, "c": chat, "b": body, "k": key}
    result = (
        await http.post(f"{api}/graphql", json={"query": CREATE, "variables": variables})
    ).json()
    assert "errors" not in result, result
    number = result["data"]["createMessage"]["message"]["number"]
    return number


async def bounded(calls: list[Any], limit: int = 100) -> list[Any]:
    """Await `calls` concurrently, at most `limit` at a time."""
    gate = asyncio.Semaphore(limit)

    async def run(call: Any) -> Any:
        async with gate:
            return await call

    return await asyncio.gather(*[run(call) for call in calls])


async def all_messages(http: httpx.AsyncClient, api: str, token: str, chat: int) -> dict[int, str]:
    """Every stored message of a chat, following the REST `Link` pages."""
    found: dict[int, str] = {}
    url: str | None = f"{api}/api/v1/applications/{token}/chats/{chat}/messages?limit=100"
    while url:
        response = await http.get(url)
        found.update({m["number"]: m["body"] for m in response.json()})
        url = response.links["next"]["url"] if "next" in response.links else None
    return found


async def persisted(
    http: httpx.AsyncClient, api: str, token: str, expected: dict[int, int], within: float = 60
) -> None:
    """Wait until each chat's `messages_count` is as expected (what the workers stored)."""
    deadline = time.monotonic() + within
    while True:
        counts = {
            chat: (await http.get(f"{api}/api/v1/applications/{token}/chats/{chat}"))
            .json()
            .get("messages_count")
            for chat in expected
        }
        if counts == expected:
            return
        assert time.monotonic() < deadline, f"not persisted in time: {counts} != {expected}"
        await asyncio.sleep(0.2)


async def created_again(
    http: httpx.AsyncClient, api: str, token: str, body: str, within: float = 60
) -> int:
    """Create a message in chat 1, retrying until a create is accepted again; its number."""
    deadline = time.monotonic() + within
    while True:
        response = await http.post(
            f"{api}/api/v1/applications/{token}/chats/1/messages", json={"body": body}
        )
        if response.status_code == 201:
            number: int = response.json()["number"]
            return number
        assert time.monotonic() < deadline, f"creates did not resume: {response.text}"
        await asyncio.sleep(0.1)


async def indexed(settings: Settings, expected: int, within: float = 60) -> None:
    """Wait until the search index holds `expected` documents."""
    from elasticsearch import AsyncElasticsearch

    elastic = AsyncElasticsearch(str(settings.elasticsearch_url))
    try:
        index = settings.elasticsearch_index
        deadline = time.monotonic() + within
        while True:
            await elastic.indices.refresh(index=index)
            if (count := (await elastic.count(index=index))["count"]) == expected:
                return
            assert time.monotonic() < deadline, f"{count} documents indexed, not {expected}"
            await asyncio.sleep(0.5)
    finally:
        await elastic.close()


# A client socket of the test process (a WebSocket or HTTP client of a server process) that
# the garbage collector closes late raises its ResourceWarning in whichever test runs then,
# not in the one that left it: such a warning says nothing of the test it lands in, and the
# servers under test are other processes. Only those two messages are let through.
_LATE_SOCKETS = pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <(socket\.socket|function _SelectorTransport\.__del__)"
    ":pytest.PytestUnraisableExceptionWarning"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("system") is not None:
            item.add_marker(_LATE_SOCKETS)
