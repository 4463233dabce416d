"""Layers point one way: the notebook layer uses only the engine's public API (issue 11)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import pyworkflowy_nb

NOTEBOOK = Path(pyworkflowy_nb.__file__).parent / "notebook"

# (module file, private engine module) pairs allowed, each with its reason: none.
ALLOWED: set[tuple[str, str]] = set()


def _engine_imports(tree: ast.Module) -> list[str]:
    """The engine modules a notebook module imports (relative `..x` or absolute)."""
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 2:  # from ..x import y / from .. import y
                found.append(node.module or "")
            elif node.level == 0 and (node.module or "").startswith("pyworkflowy_nb."):
                found.append(node.module.removeprefix("pyworkflowy_nb."))  # type: ignore[union-attr]
        elif isinstance(node, ast.Import):
            found.extend(a.name.removeprefix("pyworkflowy_nb.") for a in node.names
                         if a.name.startswith("pyworkflowy_nb."))
    return [m for m in found if not m.startswith("notebook")]


def test_no_notebook_module_imports_a_private_engine_module() -> None:
    files = sorted(NOTEBOOK.glob("*.py"))
    assert len(files) > 10  # the walk found the layer
    offending = []
    for path in files:
        for module in _engine_imports(ast.parse(path.read_text(), filename=str(path))):
            first = module.split(".")[0]
            if first.startswith("_") and (path.name, first) not in ALLOWED:
                offending.append(f"{path.name}: {module}")
    assert offending == []


def test_the_walk_sees_private_imports() -> None:
    # The check above must be able to fail: the same walk over a private import finds it.
    tree = ast.parse("from .._html import state_of\nimport pyworkflowy_nb._run\n"
                     "from .. import Task\nfrom pyworkflowy_nb.display import STATES\n")
    assert _engine_imports(tree) == ["_html", "_run", "", "display"]


@pytest.mark.parametrize("public", ["display", "resume", "validation"])
def test_public_submodules_export_what_they_claim(public: str) -> None:
    module = importlib.import_module(f"pyworkflowy_nb.{public}")
    assert module.__doc__
    names = module.__all__
    assert len(set(names)) == len(names)  # the order is ruff's (RUF022)
    for name in names:
        obj = getattr(module, name)
        origin = getattr(obj, "__module__", None)
        if callable(obj) and origin is not None:
            assert origin.startswith("pyworkflowy_nb._"), name
            assert obj.__doc__, name
