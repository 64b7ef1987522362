"""A persisted query list: the manifest Apollo's generate-persisted-query-manifest writes from
a frontend's documents, given to a real server process, which then runs those operations and
nothing else, over HTTP and over WebSocket."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.system.conftest import Server, free_port
from tests.system.live_client import LiveClient, member_token, new_chat
from tests.system.test_http_audit import AUDIT

pytestmark = pytest.mark.system

UNLISTED = "query Other($token: String!) { application(token: $token) { name } }"


def _manifest(tmp: Path) -> dict[str, str]:
    """Generate the manifest from tests/audit/documents; its operations' hashes by name."""
    node = shutil.which("node")
    assert node, "Node.js is needed for Apollo's manifest generator"
    shutil.copytree(AUDIT / "documents", tmp / "documents")
    (tmp / "persisted-query-manifest.config.json").write_text(
        json.dumps({"documents": ["documents/*.graphql"], "output": "manifest.json"})
    )
    subprocess.run(
        [str(AUDIT / "node_modules" / ".bin" / "generate-persisted-query-manifest")],
        cwd=tmp,
        check=True,
        capture_output=True,
        timeout=120,
    )
    manifest = json.loads((tmp / "manifest.json").read_text())
    return {op["name"]: op["id"] for op in manifest["operations"]}


async def test_only_the_listed_operations_run(tmp_path: Path) -> None:
    ids = _manifest(tmp_path)
    bodies = {
        op["name"]: op["body"]
        for op in json.loads((tmp_path / "manifest.json").read_text())["operations"]
    }
    server = Server(
        tmp_path / "chat.db",
        free_port(),
        tmp_path / "server.log",
        environment={"PERSISTED_QUERIES_MANIFEST": str(tmp_path / "manifest.json")},
    )
    server.start()
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            token = await new_chat(http, server.url)
            # The frontend's documents are a user's: they run with a user token.
            user = await member_token(http, server.url, token)
            as_user = {"authorization": f"Bearer {user}"}
            graphql = f"{server.url}/graphql"

            def persisted(name: str) -> dict[str, object]:
                return {"persistedQuery": {"version": 1, "sha256Hash": ids[name]}}

            # Listed: by hash alone (never sent before), or as the document itself.
            sent = await http.post(
                graphql,
                json={
                    "variables": {"chat": 1, "body": "hello", "key": "send-1"},
                    "extensions": persisted("Send"),
                },
                headers=as_user,
            )
            message = sent.json()["data"]["createMessage"]["message"]
            assert (message["number"], message["author"]["id"]) == (1, "ada")
            page = await http.post(
                graphql,
                json={"query": bodies["ChatPage"], "variables": {"chat": 1}},
                headers=as_user,
            )
            assert page.json()["data"]["viewer"]["chat"]["messagesCount"] == 1

            # Anything else: refused, and nothing runs.
            for request in (
                {"query": UNLISTED, "variables": {"token": token}},
                {"query": "{ __schema { types { name } } }"},
                {
                    "variables": {"token": token},
                    "extensions": {"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}},
                },
                {  # a listed hash with another document
                    "query": UNLISTED,
                    "variables": {"token": token},
                    "extensions": persisted("ChatPage"),
                },
            ):
                refused = await http.post(graphql, json=request)
                error = refused.json()["errors"][0]
                assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_IN_LIST", request

        # Over WebSocket too.
        client = await LiveClient.open(server.url, init=False)
        await client.send(
            {"type": "connection_init", "payload": {"authorization": f"Bearer {user}"}}
        )
        assert (await client.receive())["type"] == "connection_ack"
        listed = await client.subscribe(bodies["Follow"], {"chat": 1, "after": 0})
        event = await client.receive()
        assert event["id"] == listed and event["type"] == "next"
        assert event["payload"]["data"]["messageEvents"]["message"]["body"] == "hello"
        other = await client.subscribe(
            "subscription($t: String!) { chatEvents(applicationToken: $t) { kind } }",
            {"t": token},
        )
        refused_ws = await client.receive()
        assert refused_ws["id"] == other
        assert "PERSISTED_QUERY_NOT_IN_LIST" in json.dumps(refused_ws)
        await client.close()
    finally:
        server.stop()


def test_a_file_that_is_not_a_manifest_is_refused_at_start(tmp_path: Path) -> None:
    broken = tmp_path / "manifest.json"
    broken.write_text(
        json.dumps(
            {
                "format": "apollo-persisted-query-manifest",
                "operations": [
                    {"id": "0" * 64, "body": "query A { __typename }", "name": "A", "type": "query"}
                ],
            }
        )
    )
    for content in (broken.read_text(), "not json", json.dumps({"format": "other"})):
        broken.write_text(content)
        run = subprocess.run(
            [sys.executable, "-m", "graphql_chat", "serve"],
            env={
                **os.environ,
                "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'chat.db'}",
                "PORT": str(free_port()),
                "PERSISTED_QUERIES_MANIFEST": str(broken),
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 2
        assert "PERSISTED_QUERIES_MANIFEST" in run.stderr
