"""The package's shape: no import cycle, and dev tooling depends on the app, never the reverse."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "citas"
DEV_TOOLING = (
    "citas.sandbox",
    "citas.testing",
    "citas.replay",
    "citas.evaluation",
    "aiohttp.test_utils",
)


def _module_names() -> dict[str, Path]:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


MODULES = _module_names()


def _imports(path: Path) -> set[str]:
    """The citas modules `path` imports, at any depth of its code (deferred imports count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
    return {name for name in found if name in MODULES}


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _cycle_from(start: str) -> list[str] | None:
    """A path of imports from `start` back to itself, if there is one."""
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        module, path = stack.pop()
        for imported in GRAPH[module]:
            if imported == start:
                return [*path, start]
            if imported not in seen:
                seen.add(imported)
                stack.append((imported, [*path, imported]))
    return None


def test_the_import_graph_has_no_cycle() -> None:
    cycles = [cycle for name in sorted(GRAPH) if (cycle := _cycle_from(name))]
    assert not cycles, " → ".join(cycles[0])


def _closure(module: str) -> set[str]:
    reached, todo = set(), [module]
    while todo:
        for imported in GRAPH[todo.pop()] - reached:
            reached.add(imported)
            todo.append(imported)
    return reached


def test_the_app_imports_no_dev_tooling() -> None:
    assert not {m for m in _closure("citas.app") if m.startswith(DEV_TOOLING)}


@pytest.mark.parametrize(
    ("module", "kept_out"),
    [
        ("citas.app", DEV_TOOLING),
        ("citas.cli", ("aiohttp.test_utils",)),  # serve, chat and doctor included
        ("citas.chat", ("aiohttp.test_utils",)),
    ],
)
def test_what_an_import_loads(module: str, kept_out: tuple[str, ...]) -> None:
    # A fresh interpreter: what importing the module really loads, third-party modules included.
    code = (
        f"import sys, {module}; print(sorted(m for m in sys.modules if m.startswith({kept_out!r})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
