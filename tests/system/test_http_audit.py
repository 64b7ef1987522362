"""The GraphQL-over-HTTP spec's server audit (the npm package graphql-http, which nobody
here wrote) against a real server process: every MUST and every SHOULD passes."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.system.conftest import Server

pytestmark = pytest.mark.system

AUDIT = Path(__file__).resolve().parent.parent / "audit"


def test_graphql_over_http_audit(server: Server) -> None:
    node = shutil.which("node")
    assert node, "Node.js is needed for the GraphQL-over-HTTP audit"
    assert (AUDIT / "node_modules" / "graphql-http").is_dir(), (
        "the audit's packages are missing: `make test` installs them (npm ci in tests/audit)"
    )
    run = subprocess.run(
        [node, "audit.mjs", f"{server.url}/graphql"],
        cwd=AUDIT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    results = json.loads(run.stdout)
    assert len(results) > 50, "the audit ran fewer checks than expected"
    failed = [
        f"{r['name']}: {r['reason']} ({r['body']})"
        for r in results
        if r["status"] != "ok" and r["name"].startswith(("MUST", "SHOULD"))
    ]
    assert failed == []
