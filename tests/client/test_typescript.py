"""The TypeScript client a frontend generates with graphql-codegen (npm) from schema.graphql
and its documents (tests/audit/documents), type-checked with tsc against a frontend's code
(tests/audit/frontend/app.ts): it compiles today, and a schema change that breaks the
frontend fails."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
AUDIT = ROOT / "tests" / "audit"
FRONTEND = AUDIT / "frontend"


def _generate_and_check(schema: Path) -> subprocess.CompletedProcess[str]:
    """Generate the client from `schema`, then type-check the frontend against it."""
    assert shutil.which("node"), "Node.js is needed for graphql-codegen and tsc"
    assert (AUDIT / "node_modules" / ".bin" / "graphql-codegen").exists(), (
        "graphql-codegen is missing: `make test` installs it (npm ci in tests/audit)"
    )
    config = FRONTEND / "codegen.check.json"
    config.write_text(
        json.dumps(
            {
                "schema": str(schema),
                "documents": ["../documents/*.graphql"],
                "generates": {
                    "generated/": {
                        "preset": "client",
                        # What the DateTime scalar is on the wire: an ISO 8601 string.
                        "config": {"useTypeImports": True, "scalars": {"DateTime": "string"}},
                    }
                },
            }
        )
    )
    shutil.rmtree(FRONTEND / "generated", ignore_errors=True)
    try:
        subprocess.run(
            [str(AUDIT / "node_modules" / ".bin" / "graphql-codegen"), "--config", config.name],
            cwd=FRONTEND,
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
        return subprocess.run(
            [str(AUDIT / "node_modules" / ".bin" / "tsc"), "-p", "tsconfig.json"],
            cwd=FRONTEND,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        config.unlink()


def test_the_frontend_type_checks_against_the_schema() -> None:
    checked = _generate_and_check(ROOT / "schema.graphql")
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # A message number that becomes a string: the frontend's arithmetic no longer fits.
        (
            (
                "  id: ID!\n  number: Int!\n  body: String!",
                "  id: ID!\n  number: String!\n  body: String!",
            ),
            "TS2345",
        ),
        # A create that may return no message: the frontend reads it unguarded.
        (
            (
                "type CreateMessagePayload {\n  message: Message!",
                "type CreateMessagePayload {\n  message: Message",
            ),
            "TS18047",
        ),
        # A message whose time may be missing: the frontend makes a Date of it unguarded.
        (
            (
                'within a chat."""\n  createdAt: DateTime!',
                'within a chat."""\n  createdAt: DateTime',
            ),
            "TS2769",
        ),
    ],
)
def test_a_schema_change_that_breaks_the_frontend_fails(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    schema = (ROOT / "schema.graphql").read_text()
    old, new = change
    assert old in schema, f"the schema no longer holds {old!r}: update this test"
    changed = tmp_path / "schema.graphql"
    changed.write_text(schema.replace(old, new, 1))
    checked = _generate_and_check(changed)
    assert checked.returncode != 0
    assert expected in checked.stdout, checked.stdout
