"""The README's distributed steps, word for word, from a fresh clone of the repository; then
`make run-distributed` in it, stopped with Ctrl-C (SIGINT to its process group, as a terminal
sends it)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.system.conftest import free_port, wait_healthy

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parent.parent.parent


def _readme_steps() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Locally", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    steps: str = next(block for block in blocks if "graphql-chat serve" in block)
    assert steps.startswith("make services"), steps
    return steps


def _start(
    command: list[str], cwd: Path, log: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def _a_message_goes_through(url: str) -> None:
    """Created through the API, stored by a worker: the stack works end to end."""
    with httpx.Client(base_url=url, timeout=10) as http:
        token = http.post("/api/v1/applications", json={"name": "fresh"}).json()["token"]
        assert http.post(f"/api/v1/applications/{token}/chats", json={}).status_code == 201
        created = http.post(f"/api/v1/applications/{token}/chats/1/messages", json={"body": "hi"})
        assert created.status_code == 201, created.text
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listed = http.get(f"/api/v1/applications/{token}/chats/1/messages")
            if listed.status_code == 200 and [m["body"] for m in listed.json()] == ["hi"]:
                return
            time.sleep(0.2)
    raise AssertionError("the message was not stored by a worker")


def _stop(process: subprocess.Popen[bytes], sig: int, within: float = 30) -> None:
    os.killpg(process.pid, sig)
    try:
        process.wait(timeout=within)
    finally:
        # Whatever did not stop (a background job ignores SIGINT) is made to.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def test_the_readme_steps_and_make_run_distributed_from_a_fresh_clone(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith("_URL") and key not in ("VIRTUAL_ENV", "PORT")
    }

    port = free_port()
    steps = _start(
        ["bash", "-euc", _readme_steps()],
        clone,
        tmp_path / "steps.log",
        {**env, "PORT": str(port), "WORKER_METRICS_PORT": str(free_port())},
    )
    try:
        # The first step makes the virtual environment: minutes, from the package index.
        wait_healthy(f"http://127.0.0.1:{port}", steps, tmp_path / "steps.log", 900, every=0.5)
        _a_message_goes_through(f"http://127.0.0.1:{port}")
    finally:
        _stop(steps, signal.SIGTERM)

    port = free_port()
    log = tmp_path / "run.log"
    run = _start(
        ["make", "run-distributed", f"PORT={port}", "API_PROCESSES=2", "WORKERS=2"],
        clone,
        log,
        {**env, "WORKER_METRICS_PORT": str(free_port())},
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}", run, log, 300, every=0.5)
        _a_message_goes_through(f"http://127.0.0.1:{port}")
        os.killpg(run.pid, signal.SIGINT)  # Ctrl-C
        assert run.wait(timeout=60) is not None
    finally:
        if run.poll() is None:
            _stop(run, signal.SIGKILL)
    # Every process stops on Ctrl-C, none left behind (the last lines may still be printing
    # as make returns); the logs were theirs, interleaved.
    deadline = time.monotonic() + 30
    while True:
        left = subprocess.run(
            ["ps", "-o", "pid=,args=", "-s", str(run.pid)], capture_output=True, text=True
        ).stdout.strip()
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert left == "", left
    output = log.read_text()
    assert "[api]" in output and "[worker 1]" in output and "[worker 2]" in output, output[-3000:]
    assert "Application shutdown complete" in output, output[-3000:]
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
