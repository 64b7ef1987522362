"""A Redis master, its replica and a Sentinel watching them, on free loopback ports: real
`redis-server` processes (installed by `scripts/services.sh`), for the failover tests."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis import Redis
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.system.conftest import free_port

SERVICE = "gc-test"


@dataclass
class RedisGroup:
    master: int
    replica: int
    sentinel: int
    folder: Path
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel}/{SERVICE}/0"

    def client(self, port: int) -> Redis:
        return Redis(host="127.0.0.1", port=port, socket_timeout=5)

    def master_port(self) -> int:
        """The master's port as the Sentinel names it now."""
        with self.client(self.sentinel) as sentinel:
            _, port = sentinel.sentinel_get_master_addr_by_name(SERVICE)
            return int(port)

    def pause(self, port: int) -> None:
        os.kill(self.processes[port].pid, signal.SIGSTOP)

    def resume(self, port: int) -> None:
        os.kill(self.processes[port].pid, signal.SIGCONT)

    def kill(self, port: int) -> None:
        self.processes[port].kill()
        self.processes[port].wait(timeout=10)

    def restart_empty(self, port: int, following: int) -> None:
        """The server on `port` again, with no data, a replica of the one on `following` (as
        an operator brings a failed server back)."""
        _start(self, self.folder, port, "--replicaof", "127.0.0.1", str(following))

    def replicas_of(self, port: int) -> int:
        with self.client(port) as master:
            return int(master.info("replication").get("connected_slaves", 0))

    def wait(self, what: str, condition: Callable[[], object], within: float = 30) -> None:
        deadline = time.monotonic() + within
        while True:
            with suppress(OSError, RedisConnectionError, BusyLoadingError):  # still starting
                if condition():
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} within {within} s")
            time.sleep(0.1)


_COMMON = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"]


def _start(group: RedisGroup, folder: Path, port: int, *extra: str) -> None:
    """A server on `port`, with no data (nothing is saved)."""
    directory = folder / f"redis-{port}"
    directory.mkdir(exist_ok=True)
    with (directory / "log").open("ab") as log:
        group.processes[port] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--dir", str(directory), *_COMMON, *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
        )


@contextmanager
def redis_group(folder: Path) -> Iterator[RedisGroup]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: `make test` installs it (scripts/services.sh)")
    group = RedisGroup(free_port(), free_port(), free_port(), folder)
    try:
        _start(group, folder, group.master)
        _start(group, folder, group.replica, "--replicaof", "127.0.0.1", str(group.master))
        config = folder / "sentinel.conf"
        config.write_text(
            f"port {group.sentinel}\nbind 127.0.0.1\ndir {folder}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {group.master} 1\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 10000\n"
        )
        with (folder / "sentinel.log").open("wb") as log:
            group.processes[group.sentinel] = subprocess.Popen(
                ["redis-server", str(config), "--sentinel"], stdout=log, stderr=subprocess.STDOUT
            )

        def replicating() -> bool:
            with group.client(group.replica) as replica:
                info = replica.info("replication")
                return bool(info.get("master_link_status") == "up")

        def watched() -> bool:
            with group.client(group.sentinel) as sentinel:
                replicas = sentinel.sentinel_slaves(SERVICE)
                return (
                    group.master_port() == group.master
                    and len(replicas) == 1
                    and replicas[0].get("is_slave") is True
                    and not replicas[0].get("is_sdown")
                    and replicas[0].get("master-link-status") == "ok"
                )

        group.wait("the replica to follow its master", replicating)
        group.wait("the Sentinel to know both", watched)
        yield group
    finally:
        for process in group.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
                process.wait(timeout=10)
