"""What the reliability tests share (not a test module)."""

from __future__ import annotations

import os
from pathlib import Path

import pyworkflowy_nb


def package_env() -> dict[str, str]:
    """The environment for a child process that must import the same pyworkflowy_nb as this
    one (the tree under test comes first, whatever the current folder is), and this folder's
    helper modules."""
    tree = str(Path(pyworkflowy_nb.__file__).resolve().parents[1])
    here = str(Path(__file__).resolve().parent)
    rest = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([tree, here] + ([rest] if rest else []))}
