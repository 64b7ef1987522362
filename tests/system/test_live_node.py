"""A subscription driven end to end from Node by the graphql-ws client, which nobody here
wrote, against a real server process."""

from __future__ import annotations

import json
import shutil
import subprocess

import httpx
import pytest

from tests.system.conftest import Server
from tests.system.test_http_audit import AUDIT

pytestmark = pytest.mark.system


def test_the_graphql_ws_client_replays_and_follows_a_chat(server: Server) -> None:
    node = shutil.which("node")
    assert node, "Node.js is needed for the graphql-ws client"
    assert (AUDIT / "node_modules" / "graphql-ws").is_dir(), (
        "the client's packages are missing: `make test` installs them (npm ci in tests/audit)"
    )
    token = httpx.post(f"{server.url}/api/v1/applications", json={"name": "node"}).json()["token"]
    assert httpx.post(f"{server.url}/api/v1/applications/{token}/chats", json={}).status_code == 201
    stored = httpx.post(
        f"{server.url}/api/v1/applications/{token}/chats/1/messages", json={"body": "stored"}
    )
    assert stored.status_code == 201
    run = subprocess.run(
        [node, "live.mjs", server.url, token, "0", "6"],
        cwd=AUDIT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    events = json.loads(run.stdout)
    assert events == [
        {"kind": "CREATED", "message": {"number": 1, "body": "stored"}},
        *(
            {"kind": "CREATED", "message": {"number": n + 2, "body": f"from node {n}"}}
            for n in range(5)
        ),
    ]
