"""Resume after a real restart: a process runs part of a DAG and is SIGKILLed mid-run; a new
process resumes from the checkpoint, submits the same tasks in another order, and only the
work that was not checkpointed runs again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import HANG_GUARD, wait_until

from pyworkflowy_nb import JSONCheckpointer
from pyworkflowy_nb.exceptions import CheckpointError

SCRIPT = Path(__file__).with_name("restart_dag.py")
ALL = {f"load({i})" for i in range(4)} | {f"clean({i})" for i in range(4)} | {
    "slow", "after-slow", "report"}
QUICK = {f"load({i})" for i in range(4)} | {f"clean({i})" for i in range(4)}

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


def _start(mode: str, checkpoint: Path, side: Path, release: Path,
           seed: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), mode, str(checkpoint), str(side), str(release),
         str(seed)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())


def _finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def _ran(side: Path, mode: str) -> list[str]:
    if not side.exists():
        return []
    return [line.split(" ", 1)[1] for line in side.read_text().splitlines()
            if line.startswith(mode + " ")]


def _checkpointed(path: Path) -> dict[str, dict[str, Any]]:
    try:
        state = JSONCheckpointer(path).load()  # the 0.1.0 shape: entries keyed by "id"
    except CheckpointError:  # caught mid-write by this reader
        return {}
    return {e["id"]: e for e in state["handles"]} if state is not None else {}


def test_resume_after_sigkill_runs_only_what_was_not_checkpointed(tmp_path: Path) -> None:
    checkpoint = tmp_path / "state.json"
    side = tmp_path / "ran.log"
    release = tmp_path / "release"

    first = _start("first", checkpoint, side, release, seed=1)
    try:
        # Sync on what the first process has provably done: the quick tasks are in the
        # checkpoint and the slow task is running (it blocks until `release` exists).
        def ready() -> bool:
            if first.poll() is not None:
                raise AssertionError(f"first run ended early: {first.communicate()}")
            done = {k for k, r in _checkpointed(checkpoint).items()
                    if r["status"] == "completed"}
            return done >= QUICK and "slow" in _ran(side, "first")

        wait_until(ready, "quick tasks checkpointed and the slow task running", 90)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(HANG_GUARD)
    assert first.returncode == -signal.SIGKILL

    on_disk = {k for k, r in _checkpointed(checkpoint).items() if r["status"] == "completed"}
    ran_first = _ran(side, "first")
    assert on_disk >= QUICK
    assert on_disk <= set(ran_first)
    assert "slow" not in on_disk and "report" not in ran_first

    release.touch()
    resumed = _finish(_start("resume", checkpoint, side, release, seed=2))
    ran_again = _ran(side, "resume")
    assert len(ran_again) == len(set(ran_again))
    assert set(ran_again) == ALL - on_disk  # completed ones did not run again, the rest did
    assert set(resumed["restored"]) == on_disk
    assert resumed["ok"] is True
    # The two processes submitted the same tasks in different orders; keys still matched.
    plain = _finish(_start("plain", tmp_path / "unused.json", tmp_path / "plain.log",
                           release, seed=3))
    assert resumed["order"] != _order_of_seed_1(tmp_path, release)
    assert resumed["keys"] == plain["keys"]
    assert resumed["values"] == plain["values"]  # same final results as an uninterrupted run

    # The resumed run wrote a final checkpoint covering everything.
    final = _checkpointed(checkpoint)
    assert {k for k, r in final.items() if r["status"] == "completed"} == ALL

    # A third process restores everything and runs nothing.
    third = _finish(_start("resume", checkpoint, tmp_path / "third.log", release, seed=4))
    assert set(third["restored"]) == ALL
    assert _ran(tmp_path / "third.log", "resume") == []
    assert third["values"] == plain["values"]


def _order_of_seed_1(tmp_path: Path, release: Path) -> list[str]:
    out = _finish(_start("plain", tmp_path / "unused1.json", tmp_path / "seed1.log", release,
                         seed=1))
    order: list[str] = out["order"]
    return order
