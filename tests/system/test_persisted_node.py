"""Apollo Client's persisted-queries link, which nobody here wrote, against a real server
process: the hash over GET, the document once on a miss, then the hash alone."""

from __future__ import annotations

import json
import shutil
import subprocess

import httpx
import pytest

from tests.system.conftest import Server
from tests.system.test_http_audit import AUDIT

pytestmark = pytest.mark.system


def test_apollo_client_persists_its_queries(server: Server) -> None:
    node = shutil.which("node")
    assert node, "Node.js is needed for Apollo Client"
    assert (AUDIT / "node_modules" / "@apollo" / "client").is_dir(), (
        "Apollo Client is missing: `make test` installs it (npm ci in tests/audit)"
    )
    token = httpx.post(f"{server.url}/api/v1/applications", json={"name": "apollo"}).json()
    run = subprocess.run(
        [node, "persisted.mjs", f"{server.url}/graphql", token["token"]],
        cwd=AUDIT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    # The first query: its hash over GET (unknown), then its document over POST. The second:
    # the hash over GET alone.
    assert report["sent"] == [
        {"method": "GET", "hasQuery": False, "status": 200},
        {"method": "POST", "hasQuery": True, "status": 200},
        {"method": "GET", "hasQuery": False, "status": 200},
    ]
    assert [(a["name"], a["chatsCount"]) for a in report["answers"]] == [("apollo", 0)] * 2
