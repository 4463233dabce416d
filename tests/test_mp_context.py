"""The process backend's start method can be chosen per runner."""

from __future__ import annotations

import os

import engine_helpers
import pytest
from engine_helpers import process_origin, process_square

from pyworkflowy_nb import TaskRunner


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_process_tasks_run_under_a_chosen_start_method(
        method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Results alone would pass under the platform's default start method too: check how the
    # workers were started. Neither method copies this process's memory (fork would), and only
    # a spawned worker is this process's child (a forkserver worker is the fork server's).
    monkeypatch.setattr(engine_helpers, "INHERITED", "changed by the test process")
    with TaskRunner(max_workers=2, mp_context=method) as runner:
        handles = [runner.submit(process_square, i) for i in range(4)]
        origin = runner.submit(process_origin)
        runner.run()
    assert [h.result() for h in handles] == [0, 1, 4, 9]
    parent, inherited = origin.result()
    assert inherited == "fresh"
    assert (parent == os.getpid()) is (method == "spawn")
    assert runner._dispatch.pools.capacity("process") == 2


def test_unknown_start_method_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"unknown mp_context 'frok'.*'spawn'"):
        TaskRunner(mp_context="frok")


def test_resume_accepts_the_start_method(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(tmp_path, "state.json")
    with TaskRunner(checkpoint_path=path) as runner:
        runner.submit(process_square, 3)
        runner.run()
    resumed = TaskRunner.resume(path, mp_context="spawn")
    assert resumed.mp_context == "spawn"
    handle = resumed.submit(process_square, 3)
    assert handle.restored and handle.result() == 9
