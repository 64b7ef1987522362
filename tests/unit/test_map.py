"""The map names the territory: every module of the product is named in the README's layout
and in docs/architecture.md, so that neither leaves a module out as the code grows."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).parents[2]


def _modules() -> list[str]:
    found = []
    for package in ("graphql_chat", "workers"):
        for path in (ROOT / package).rglob("*.py"):
            if path.stem not in ("__init__", "__main__"):
                found.append(path.stem)
    return sorted(set(found))


def _layout() -> str:
    readme = (ROOT / "README.md").read_text()
    development = readme[readme.index("## Development") :]
    return development[: development.index("```", development.index("```") + 3)]


def test_every_module_is_on_the_map() -> None:
    modules = _modules()
    assert len(modules) > 40  # the walk found the product
    layout = _layout()
    architecture = (ROOT / "docs" / "architecture.md").read_text()
    for text, where in ((layout, "the README's layout"), (architecture, "docs/architecture.md")):
        missing = [m for m in modules if not re.search(rf"\b{m}\b", text)]
        assert not missing, f"{where} does not name {missing}"
