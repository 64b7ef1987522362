"""Stopping and restarting the engines `make services` started, for the fault tests."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.engines import engine_url

SERVICES_DIR = Path(os.environ.get("SERVICES_DIR", "/var/tmp/graphql-chat-services"))
_ROOT = Path(__file__).resolve().parent.parent


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(
        [
            "runuser",
            "-u",
            "rabbitmq",
            "--",
            "env",
            "HOME=/var/lib/rabbitmq",
            "rabbitmqctl",
            "-n",
            "graphql-chat@localhost",
            *args,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )


def stop_rabbitmq() -> None:
    """Stop the broker application (clients are disconnected; the node stays for restart)."""
    _rabbitmqctl("stop_app")


def start_rabbitmq() -> None:
    _rabbitmqctl("start_app")
    _rabbitmqctl("await_startup")


def _gone(pid: int, within: float) -> bool:
    """Whether process `pid` has exited, waiting up to `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def _kill_pid_file(path: Path) -> None:
    pid = int(path.read_text().strip())
    os.kill(pid, signal.SIGTERM)
    if not _gone(pid, 30):
        os.kill(pid, signal.SIGKILL)


def stop_elasticsearch() -> None:
    _kill_pid_file(SERVICES_DIR / "es-logs" / "es.pid")


def stop_mysql() -> None:
    _kill_pid_file(SERVICES_DIR / "mariadb" / "mariadb.pid")


def restart_services() -> None:
    """Start whatever is down again (scripts/services.sh leaves running engines alone)."""
    subprocess.run(
        [str(_ROOT / "scripts" / "services.sh")], check=True, capture_output=True, timeout=300
    )


def restart_redis_empty() -> None:
    """Redis dies and comes back without its data (a restart that lost its files)."""
    from redis import Redis

    client = Redis.from_url(engine_url("REDIS_URL"))
    pid = int(client.info("server")["process_id"])
    client.close()
    for path in (SERVICES_DIR / "redis").glob("appendonly*"):
        subprocess.run(["rm", "-rf", str(path)], check=True)
    os.kill(pid, signal.SIGKILL)
    _gone(pid, 5)
    restart_services()


def stop_redis() -> None:
    """Redis shuts down cleanly, its data on disk (`restart_services` brings it back)."""
    from redis import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    client = Redis.from_url(engine_url("REDIS_URL"))
    try:
        client.shutdown()
    except RedisConnectionError:
        pass  # the connection closes as the server exits
    finally:
        client.close()
