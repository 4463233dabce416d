"""Task handles: attributes, statuses, and reading a result (timeouts, failures, before a run)."""

from __future__ import annotations

import threading

import pytest
from engine_helpers import HANG_GUARD, Boom, explode

from pyworkflowy_nb import TaskRunner, TaskStatus, task


@task
def square(x: int) -> int:
    return x * x


def test_handle_attributes() -> None:
    with TaskRunner() as runner:
        h = square.submit(6)
        assert h.status is TaskStatus.READY  # no dependencies: it waits for a run only
        assert not h.done()
        assert (h.started_at, h.finished_at, h.duration, h.exception) == (None, None, None, None)
        assert h.attempts == 0
        runner.run()
    assert h.done()
    assert h.id == h.key == f"{square.name}(6)"
    assert h.name == square.name
    assert h.task is square
    assert h.parents == ()
    assert h.attempts == 1
    assert h.restored is False
    assert h.started_at is not None and h.finished_at is not None
    assert h.finished_at >= h.started_at
    assert h.duration == h.finished_at - h.started_at
    assert isinstance(h.fingerprint, str) and len(h.fingerprint) >= 16
    r = h.to_result()
    assert (r.key, r.name, r.status, r.value) == (h.key, h.name, TaskStatus.COMPLETED, 36)
    assert repr(h) == f"<TaskHandle {h.key!r} completed>"
    assert runner.get(h.key) is h
    assert runner.handles == [h]
    with pytest.raises(KeyError, match="no task with key 'nope'"):
        runner.get("nope")


def test_status_enum_values_and_terminal_flags() -> None:
    values = {s.name: s.value for s in TaskStatus}
    assert values == {"PENDING": "pending", "READY": "ready", "RUNNING": "running",
                      "RETRYING": "retrying",
                      "COMPLETED": "completed", "FAILED": "failed", "SKIPPED": "skipped",
                      "CANCELLED": "cancelled"}
    assert {s for s in TaskStatus if s.terminal} == {
        TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELLED}
    assert str(TaskStatus.FAILED) == "failed"


def test_result_timeout_raises_while_the_task_still_runs() -> None:
    release = threading.Event()

    @task(backend="thread")
    def blocked() -> str:
        release.wait(HANG_GUARD)
        return "done"

    with TaskRunner() as runner:
        h = blocked.submit()
        future = runner.run_in_background()
        with pytest.raises(TimeoutError, match="still"):
            h.result(timeout=0.01)
        release.set()
        assert h.result(timeout=HANG_GUARD) == "done"
        future.result(HANG_GUARD)


def test_result_before_any_run_says_to_run() -> None:
    with TaskRunner():
        h = square.submit(1)
        with pytest.raises(RuntimeError, match=r"runner\.run\(\)"):
            h.result()


def test_result_raises_the_task_failure() -> None:
    with TaskRunner(on_task_error="continue") as runner:
        h = explode.submit("bad")
        runner.run()
    with pytest.raises(Boom, match="bad"):
        h.result()
    assert isinstance(h.exception, Boom)
