"""The README's user-token examples, run as written: the Python function (PyJWT) and the
Node one (jsonwebtoken, from tests/audit) each sign a token that a real server accepts."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.system.conftest import Server
from tests.system.test_http_audit import AUDIT

pytestmark = pytest.mark.system

README = Path(__file__).parents[2] / "README.md"


def _block(language: str, holding: str) -> str:
    """The README's fenced `language` block that holds `holding`."""
    for found in re.finditer(rf"```{language}\n(.*?)```", README.read_text(), re.DOTALL):
        if holding in found.group(1):
            return found.group(1)
    raise AssertionError(f"the README has no {language} block with {holding!r}")


async def _keys(http: httpx.AsyncClient, url: str) -> dict[str, Any]:
    token = (await http.post(f"{url}/api/v1/applications", json={"name": "r"})).json()["token"]
    keys: dict[str, Any] = (
        await http.get(f"{url}/api/v1/applications/{token}/signing_secret")
    ).json()
    return keys


async def _viewer(http: httpx.AsyncClient, url: str, token: str) -> object:
    answer = await http.post(
        f"{url}/graphql",
        json={"query": "{ viewer { id } }"},
        headers={"authorization": f"Bearer {token}"},
    )
    return answer.json()


async def test_the_python_example_signs_a_token_the_server_accepts(server: Server) -> None:
    namespace: dict[str, Any] = {}
    exec(_block("python", "def user_token"), namespace)  # the README's own code
    async with httpx.AsyncClient(timeout=30) as http:
        keys = await _keys(http, server.url)
        token = namespace["user_token"](keys["public_id"], keys["signing_secret"], "ada")
        assert await _viewer(http, server.url, token) == {"data": {"viewer": {"id": "ada"}}}


async def test_the_node_example_signs_a_token_the_server_accepts(
    server: Server, tmp_path: Path
) -> None:
    node = shutil.which("node")
    assert node, "Node.js is needed for the README's Node example"
    assert (AUDIT / "node_modules" / "jsonwebtoken").is_dir(), (
        "jsonwebtoken is missing: `make test` installs it (npm ci in tests/audit)"
    )
    # Beside tests/audit's node_modules, so that its import resolves there.
    module = AUDIT / f"readme-token-{tmp_path.name}.mjs"
    module.write_text(_block("js", "export function userToken"))
    async with httpx.AsyncClient(timeout=30) as http:
        keys = await _keys(http, server.url)
        call = (
            f"import {{ userToken }} from {json.dumps(str(module))};"
            f"console.log(userToken({json.dumps(keys['public_id'])}, "
            f"{json.dumps(keys['signing_secret'])}, 'ada'));"
        )
        try:
            signed = await asyncio.to_thread(
                subprocess.run,
                [node, "--input-type=module", "-e", call],
                cwd=AUDIT,
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
        finally:
            module.unlink()
        token = signed.stdout.strip()
        assert await _viewer(http, server.url, token) == {"data": {"viewer": {"id": "ada"}}}
