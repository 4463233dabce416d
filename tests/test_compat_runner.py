"""pyWorkflowy 0.1.0's TaskRunner, as its users call it."""

from __future__ import annotations

import asyncio
import inspect
import threading
from pathlib import Path

import pytest
from engine_helpers import HANG_GUARD

import pyworkflowy_nb as pyworkflowy
from pyworkflowy_nb import TaskStatus


@pyworkflowy.task(name="inc")
def inc(x: int) -> int:
    return x + 1


@pyworkflowy.task(name="boom")
def boom() -> None:
    raise RuntimeError("boom")


def test_constructor_defaults_are_the_zero_one_defaults() -> None:
    params = inspect.signature(pyworkflowy.TaskRunner).parameters
    defaults = {name: params[name].default for name in (
        "max_workers", "backend", "on_task_error", "checkpoint_path", "checkpoint_interval",
        "checkpointer")}
    assert defaults == {"max_workers": 8, "backend": "asyncio", "on_task_error": "raise",
                        "checkpoint_path": None, "checkpoint_interval": 5.0,
                        "checkpointer": None}
    runner = pyworkflowy.TaskRunner()
    assert (runner.max_workers, runner.checkpoint_interval) == (8, 5.0)


def test_keyword_construction_and_the_older_positional_form() -> None:
    by_keyword = pyworkflowy.TaskRunner(max_workers=2, backend="thread", on_task_error="log")
    by_position = pyworkflowy.TaskRunner(2, "thread", "log")
    for runner in (by_keyword, by_position):
        assert (runner.max_workers, runner.backend, runner.on_task_error) == (2, "thread", "log")


def test_checkpoint_path_and_checkpointer_together_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        pyworkflowy.TaskRunner(checkpoint_path=tmp_path / "a.json",
                               checkpointer=pyworkflowy.JSONCheckpointer(tmp_path / "b.json"))


def test_default_max_workers_caps_concurrency_at_eight() -> None:
    lock = threading.Lock()
    now = peak = 0

    @pyworkflowy.task
    async def body() -> None:
        nonlocal now, peak
        with lock:
            now += 1
            peak = max(peak, now)
        await asyncio.sleep(0.01)
        with lock:
            now -= 1

    with pyworkflowy.TaskRunner() as runner:
        for _ in range(20):
            runner.submit(body)
        runner.run()
    assert peak == 8


def test_submit_takes_a_task_or_a_plain_callable() -> None:
    with pyworkflowy.TaskRunner() as runner:
        from_task = runner.submit(inc, 1)
        from_callable = runner.submit(lambda a, b: a * b, 6, b=7)
        after = runner.submit(target=inc, depends_on=(from_task,), x=10)
        runner.run()
    assert (from_task.result(), from_callable.result(), after.result()) == (2, 42, 11)


def test_dependency_from_a_different_runner_is_a_value_error() -> None:
    one, two = pyworkflowy.TaskRunner(), pyworkflowy.TaskRunner()
    foreign = one.submit(inc, 1)
    with pytest.raises(ValueError, match="different runner") as info:
        two.submit(inc, 2, depends_on=[foreign])
    assert foreign.key in str(info.value) and "same TaskRunner" in str(info.value)


def test_submit_after_shutdown_is_a_runtime_error() -> None:
    with pyworkflowy.TaskRunner() as runner:
        runner.submit(inc, 1)
        runner.run()
    with pytest.raises(RuntimeError, match="shut down") as info:
        runner.submit(inc, 2)
    assert "new TaskRunner" in str(info.value)
    with pytest.raises(RuntimeError, match="shut down"):
        inc.submit(3, runner=runner)


def test_shutdown_is_idempotent_and_takes_wait_by_keyword() -> None:
    runner = pyworkflowy.TaskRunner()
    runner.submit(pyworkflowy.task(name="inc", backend="thread")(inc.fn), 1)
    runner.run()
    runner.shutdown()
    runner.shutdown(wait=True)
    runner.shutdown(wait=False)
    assert runner.results()["inc"].value == 2


def test_run_and_results_are_keyed_by_task_name_last_submission_wins() -> None:
    with pyworkflowy.TaskRunner(on_task_error="continue") as runner:
        first = inc.submit(1)
        last = inc.submit(41)
        bad = boom.submit()
        results = runner.run()
    assert list(results) == ["inc", "boom"]
    assert dict(results) == runner.results()
    assert results["inc"].value == 42 and results["inc"] == last.get_result()
    assert isinstance(results["boom"].error, RuntimeError)
    assert {name: r.status for name, r in results.items()} == {
        "inc": TaskStatus.COMPLETED, "boom": TaskStatus.FAILED}
    # Still a superset: every submission by its key.
    assert results[first.key].value == 2 and results[bad.key].status is TaskStatus.FAILED
    assert list(results.by_key()) == [first.key, last.key, bad.key]
    assert first.key in results and "nope" not in results
    with pytest.raises(KeyError, match="nope"):
        results["nope"]


def test_handles_is_a_method_and_still_reads_as_a_list() -> None:
    runner = pyworkflowy.TaskRunner()
    a = runner.submit(inc, 1)
    b = runner.submit(inc, 2)
    assert runner.handles() == [a, b]
    assert type(runner.handles()) is list
    assert runner.handles == [a, b] and runner.handles[1] is b and len(runner.handles) == 2


def test_arun_on_the_callers_loop() -> None:
    runner = pyworkflowy.TaskRunner()
    h = runner.submit(inc, 1)
    results = asyncio.run(runner.arun())
    assert results["inc"].value == 2 and h.result() == 2


def test_cancel_all_counts_the_newly_cancelled() -> None:
    gate = threading.Event()
    runner = pyworkflowy.TaskRunner(on_task_error="continue")
    started = threading.Event()
    runner.subscribe(lambda e: started.set() if e.kind == "started" else None)
    running = runner.submit(pyworkflowy.task(backend="thread")(gate.wait), HANG_GUARD)
    waiting = [runner.submit(inc, i, depends_on=[running]) for i in range(3)]
    future = runner.run_in_background()
    assert started.wait(HANG_GUARD)
    assert runner.cancel_all() == 4
    assert runner.cancel_all() == 0  # all of them already asked
    gate.set()
    future.result(HANG_GUARD)
    assert all(h.status is TaskStatus.CANCELLED for h in [running, *waiting])
    runner.shutdown()


def test_with_binds_the_runner_to_a_contextvar() -> None:
    assert pyworkflowy.get_current_runner() is None
    with pyworkflowy.TaskRunner() as outer:
        with pyworkflowy.TaskRunner() as inner:
            assert pyworkflowy.get_current_runner() is inner
        assert pyworkflowy.get_current_runner() is outer
    assert pyworkflowy.get_current_runner() is None
