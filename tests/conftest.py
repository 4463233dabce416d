"""Shared test fixtures (pytest finds them here); shared plain helpers are in engine_helpers.py.

A file whose every test should get a fixture says so once:
``pytestmark = pytest.mark.usefixtures("key_file")``.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HMAC key file (not created yet): pickle checkpoints never touch the user's key."""
    path = tmp_path / "keys" / "checkpoint.key"
    monkeypatch.setenv("PYWORKFLOWY_NB_KEY_FILE", str(path))
    return path
