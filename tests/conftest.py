"""Shared test helpers: fixtures several test files need (pytest finds them here)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def key_file(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    path = tmp_path / "keys" / "wfy.key"
    monkeypatch.setenv("PYWORKFLOWY_NB_KEY_FILE", str(path))
    return path
