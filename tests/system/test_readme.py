"""The README's shell examples, run as written, in order, against a new embedded server.

Every block of the README that calls the API (`curl`) runs in one shell, as a reader pasting
them one after the other would (so `TOKEN` carries from one to the next). Each command must
succeed (curl's exit status 0, an HTTP status below 400) and, where the README shows an answer
(`# {...}` or `# [...]` after the command), answer that: the same keys and values, where `...`
stands for any value and a time for any time.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.system.conftest import Server

pytestmark = pytest.mark.system

README = Path(__file__).parents[2] / "README.md"
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
_TOKEN = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CURL = "command curl -sS -w '%{stderr}@@status %{http_code}\\n' \"$@\""


@dataclass
class Command:
    block: int  # the README line its block starts at
    text: str
    shown: list[str] = field(default_factory=list)  # the comment lines after it

    def expected(self) -> object | None:
        """The answer the README shows, if it shows one as JSON."""
        lines = [line[1:].strip() for line in self.shown]
        for end in range(len(lines), 0, -1):
            text = "".join(lines[:end])
            if text.startswith(("{", "[")):
                try:
                    shown: object = json.loads(text)
                    return shown
                except ValueError:
                    continue
        return None


def commands() -> list[Command]:
    """The commands of every `sh` block that calls the API, in the README's order."""
    found: list[Command] = []
    lines = README.read_text().splitlines()
    start = None
    block: list[str] = []
    for number, line in enumerate(lines, 1):
        if start is None:
            if line.strip() == "```sh":
                start, block = number, []
            continue
        if line.strip() != "```":
            block.append(line)
            continue
        if any(re.match(r"(\w+=\$\()?curl ", b.strip()) for b in block):
            found += _split(start, block)
        start = None
    return found


def _split(start: int, block: list[str]) -> list[Command]:
    out: list[Command] = []
    pending = ""
    for line in block:
        stripped = line.strip()
        if pending:
            pending += "\n" + line
            if not stripped.endswith("\\"):
                out.append(Command(start, pending))
                pending = ""
        elif stripped.startswith("#"):
            if out:
                out[-1].shown.append(stripped)
        elif stripped:
            if stripped.endswith("\\"):
                pending = line
            else:
                out.append(Command(start, line))
    assert not pending, f"README block at line {start} ends inside a command"
    return out


def matches(expected: object, actual: object) -> bool:
    if expected == "...":
        return True
    if isinstance(expected, str) and _TIME.fullmatch(expected):
        return isinstance(actual, str) and bool(_TIME.fullmatch(actual))
    if isinstance(expected, str) and _TOKEN.fullmatch(expected):
        return isinstance(actual, str) and bool(_TOKEN.fullmatch(actual))
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and expected.keys() == actual.keys()
            and all(matches(v, actual[k]) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return expected == actual


def test_the_examples_are_found() -> None:
    """The parser sees the examples (a README rewritten past it would test nothing)."""
    found = commands()
    assert len(found) >= 15
    assert sum(c.expected() is not None for c in found) >= 12
    assert any(c.text.startswith("TOKEN=$(curl") for c in found)


def test_matching_tells_answers_apart() -> None:
    assert matches(
        {"a": "...", "t": "2026-11-30T02:21:11.123456Z"}, {"a": 3, "t": "2027-01-01T00:00:00Z"}
    )
    assert not matches({"a": 1}, {"a": 1, "b": 2})
    assert not matches([{"n": 1}], [{"n": 1}, {"n": 2}])
    assert not matches({"t": "2026-11-30T02:21:11.123456Z"}, {"t": "soon"})


def test_the_readme_shell_examples_run_as_written(server: Server, tmp_path: Path) -> None:
    found = commands()
    script = [f"curl() {{ {_CURL}; }}", "set -o pipefail"]
    for index, command in enumerate(found):
        marker = f"printf '\\n@@command {index}\\n'; printf '\\n@@command {index}\\n' >&2"
        script += [marker, command.text.replace("localhost:3000", f"127.0.0.1:{server.port}")]
        script.append('echo "@@exit $?" >&2')
    run = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    outputs = _sections(run.stdout)
    statuses = _sections(run.stderr)
    assert len(statuses) == len(found), run.stderr[-2000:]
    for index, command in enumerate(found):
        where = f"README block at line {command.block}: {command.text.strip()}"
        errors = statuses[index]
        assert "@@exit 0" in errors, f"{where}\n{errors}"
        codes = [int(code) for code in re.findall(r"@@status (\d+)", errors)]
        assert all(code < 400 for code in codes), f"{where}\n{errors}"
        assert codes or "curl" not in command.text, f"{where}\n{errors}"
        expected = command.expected()
        if expected is None:
            continue
        answer = outputs[index].strip()
        assert matches(expected, json.loads(answer)), f"{where}\nexpected {expected}\ngot {answer}"


def _sections(text: str) -> list[str]:
    parts = re.split(r"^@@command \d+\n", text, flags=re.MULTILINE)
    return parts[1:]
