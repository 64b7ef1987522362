"""Redis groups on free loopback ports, real `redis-server` processes (installed by
`scripts/services.sh`), for the failover tests: a master, its replica and a Sentinel watching
them (`redis_group`); a Redis Cluster of three masters with a replica each
(`redis_cluster_group`)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
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


class _Servers:
    """What the tests do to a group's servers, by port."""

    processes: dict[int, subprocess.Popen[bytes]]

    def client(self, port: int) -> Redis:
        return Redis(host="127.0.0.1", port=port, socket_timeout=5)

    def pause(self, port: int) -> None:
        os.kill(self.processes[port].pid, signal.SIGSTOP)

    def resume(self, port: int) -> None:
        os.kill(self.processes[port].pid, signal.SIGCONT)

    def kill(self, port: int) -> None:
        self.processes[port].kill()
        self.processes[port].wait(timeout=10)

    def wait(self, what: str, condition: Callable[[], object], within: float = 30) -> None:
        wait_until(what, condition, within)

    def stop(self) -> None:
        """Every server of the group gone, stopped ones included."""
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
                process.wait(timeout=10)


@dataclass
class RedisGroup(_Servers):
    master: int
    replica: int
    sentinel: int
    folder: Path
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel}/{SERVICE}/0"

    def master_port(self) -> int:
        """The master's port as the Sentinel names it now."""
        with self.client(self.sentinel) as sentinel:
            _, port = sentinel.sentinel_get_master_addr_by_name(SERVICE)
            return int(port)

    def recorded_master_port(self) -> int:
        """The port of the master in the Sentinel's own record (switched once a failover
        has ended)."""
        with self.client(self.sentinel) as sentinel:
            return int(sentinel.sentinel_master(SERVICE)["port"])

    def restart_empty(self, port: int, following: int) -> None:
        """The server on `port` again, with no data, a replica of the one on `following` (as
        an operator brings a failed server back)."""
        _start(self, self.folder, port, "--replicaof", "127.0.0.1", str(following))

    def replicas_of(self, port: int) -> int:
        with self.client(port) as master:
            return int(master.info("replication").get("connected_slaves", 0))


def wait_until(what: str, condition: Callable[[], object], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while True:
        with suppress(OSError, RedisConnectionError, BusyLoadingError):  # still starting
            if condition():
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} within {within} s")
        time.sleep(0.1)


_COMMON = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no"]


def _start(group: _Servers, folder: Path, port: int, *extra: str) -> None:
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
        group.stop()


@dataclass
class ClusterGroup(_Servers):
    """Three masters and their replicas, as `redis-cli --cluster create` paired them."""

    ports: list[int]
    folder: Path
    processes: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports[:3])

    def replica_of(self, master: int) -> int:
        """The port of the replica following the master on `master`."""
        for port in self.ports:
            with suppress(OSError, RedisConnectionError), self.client(port) as node:
                info = node.info("replication")
                if info.get("role") == "slave" and int(info["master_port"]) == master:
                    return port
        raise LookupError(f"no replica follows {master}")

    def start(self, port: int, *extra: str) -> None:
        """A cluster node on `port`, with no data and no cluster of its own yet (a fresh
        `nodes.conf`)."""
        nodes = self.folder / f"redis-{port}" / "nodes.conf"
        nodes.unlink(missing_ok=True)
        _start(
            self,
            self.folder,
            port,
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            str(nodes),
            "--cluster-node-timeout",
            "2000",
            *extra,
        )
        wait_until(f"node {port} to start", lambda: self.client(port).ping())

    def node_id(self, port: int) -> str:
        with self.client(port) as node:
            return str(node.execute_command("CLUSTER", "MYID"), "ascii")

    def role(self, port: int) -> str:
        with self.client(port) as node:
            return str(node.info("replication").get("role"))


def _cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (10,000 higher, so at most 55,535) is free too."""
    ports: list[int] = []
    rng = random.Random()
    while len(ports) < count:
        port = rng.randrange(20_000, 55_535)
        with socket.socket() as one, socket.socket() as bus:
            try:
                one.bind(("127.0.0.1", port))
                bus.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        if port not in ports:
            ports.append(port)
    return ports


@contextmanager
def redis_cluster_group(folder: Path) -> Iterator[ClusterGroup]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed: `make test` installs it (scripts/services.sh)")
    group = ClusterGroup(_cluster_ports(6), folder)
    try:
        for port in group.ports:
            group.start(port)
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in group.ports),
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

        def formed() -> bool:
            for port in group.ports:
                with group.client(port) as node:
                    if b"cluster_state:ok" not in node.execute_command("CLUSTER", "INFO"):
                        return False
                    info = node.info("replication")
                    if info.get("role") == "slave" and info.get("master_link_status") != "up":
                        return False
            return True

        group.wait("the cluster to form, every replica following its master", formed)
        yield group
    finally:
        group.stop()
