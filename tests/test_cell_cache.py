"""``%%task NAME --cache``: a cell's result comes from the engine's disk cache when its code and
inputs are unchanged (in-process shell; the store lives in this test's folder)."""

from __future__ import annotations

from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell

pytestmark = pytest.mark.usefixtures("key_file")


def test_cached_cell_reruns_from_the_store(ip: InteractiveShell, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYWORKFLOWY_NB_CACHE_DIR", str(tmp_path / "cache"))
    ip.user_ns["hits"] = []
    ip.run_cell_magic("task", "a --cache", "hits.append('a')\n21")
    ip.run_cell_magic("task", "b --after a --cache", "hits.append('b')\na * 2")
    ip.run_line_magic("wfy_run", "--no-widget --force")
    ip.run_line_magic("wfy_run", "--no-widget --force")
    assert ip.user_ns["b"] == 42
    assert ip.user_ns["hits"] == ["a", "b"]  # the second run came from the cache
    assert (tmp_path / "cache" / "results.sqlite").exists()
    ip.run_cell_magic("task", "a --cache", "hits.append('a2')\n22")  # new code: a miss
    ip.run_line_magic("wfy_run", "--no-widget --force")
    assert ip.user_ns["b"] == 44
    assert ip.user_ns["hits"] == ["a", "b", "a2", "b"]  # b's input changed: a miss too


def test_cells_without_the_flag_always_run(ip: InteractiveShell) -> None:
    ip.user_ns["hits"] = []
    ip.run_cell_magic("task", "a", "hits.append(1)\n1")
    ip.run_line_magic("wfy_run", "--no-widget --force")
    ip.run_line_magic("wfy_run", "--no-widget --force")
    assert ip.user_ns["hits"] == [1, 1]
