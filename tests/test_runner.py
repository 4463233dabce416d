"""The runner: binding, run/arun, results, on_task_error, live submissions, events, order."""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import HANG_GUARD, wait_until

from pyworkflowy_nb import (
    EventLog,
    RunResults,
    TaskEvent,
    TaskHandle,
    TaskResult,
    TaskRunner,
    TaskStatus,
    get_current_runner,
    task,
)
from pyworkflowy_nb.exceptions import DependencyFailedError, TaskCancelledError


class Boom(Exception):
    pass


@task
def square(x: int) -> int:
    return x * x


@task
def explode(label: str) -> None:
    raise Boom(label)


@task
async def async_square(x: int) -> int:
    await asyncio.sleep(0)
    return x * x


# -- binding -------------------------------------------------------------------------------------

def test_context_manager_binds_and_unbinds_the_runner() -> None:
    assert get_current_runner() is None
    with TaskRunner() as outer:
        assert get_current_runner() is outer
        with TaskRunner() as inner:
            assert get_current_runner() is inner
            h_inner = square.submit(2)
        assert get_current_runner() is outer
        h_outer = square.submit(3)
        inner.run()
        outer.run()
    assert get_current_runner() is None
    assert h_inner.runner is inner and h_outer.runner is outer
    assert (h_inner.result(), h_outer.result()) == (4, 9)


def test_submit_without_a_runner_explains_the_fix() -> None:
    with pytest.raises(RuntimeError, match=r"no runner is active.*with TaskRunner\(\)"):
        square.submit(1)


def test_runner_argument_and_runner_submit_work_outside_a_with() -> None:
    runner = TaskRunner()
    h1 = square.submit(4, runner=runner)
    h2 = runner.submit(square, 5)
    runner.run()
    runner.shutdown()
    assert (h1.result(), h2.result()) == (16, 25)


def test_plain_callables_are_wrapped_once() -> None:
    def plain(x: int) -> int:
        return x + 1

    with TaskRunner() as runner:
        a = runner.submit(plain, 1)
        b = runner.submit(plain, 2)
        runner.run()
    assert a.task is b.task
    assert a.name == f"{__name__}.test_plain_callables_are_wrapped_once.<locals>.plain"
    assert (a.result(), b.result()) == (2, 3)


def test_runner_backend_is_the_default_for_plain_callables() -> None:
    threads: list[str] = []

    def where() -> None:
        threads.append(threading.current_thread().name)

    @task(backend="asyncio")
    def pinned() -> None:
        threads.append(threading.current_thread().name)

    with TaskRunner(backend="thread") as runner:
        h = runner.submit(where)
        p = runner.submit(pinned)
        runner.run()
    assert h.backend == "thread" and p.backend == "asyncio"
    assert threads[0].startswith("wfy-worker")
    assert not threads[1].startswith("wfy-worker")


# -- results -------------------------------------------------------------------------------------

def test_run_returns_a_mapping_of_results() -> None:
    with TaskRunner(on_task_error="continue") as runner:
        ok = square.submit(3)
        bad = explode.submit("x")
        results = runner.run()
    assert isinstance(results, RunResults)
    assert list(results) == [ok.name, bad.name]  # by task name (0.1.0), in submission order
    assert list(results.by_key()) == [ok.key, bad.key]
    assert len(results) == 2
    good = results[ok.key]
    assert isinstance(good, TaskResult)
    assert (good.status, good.value, good.error, good.ok, good.attempts) == (
        TaskStatus.COMPLETED, 9, None, True, 1)
    assert good.duration is not None and good.duration >= 0
    assert results[bad.key].status is TaskStatus.FAILED
    assert isinstance(results[bad.key].error, Boom)
    assert not results.ok
    assert [r.key for r in results.failed] == [bad.key]
    assert results.values_by_key() == {ok.key: 9}
    assert "2 tasks" in repr(results)
    with pytest.raises(dataclasses.FrozenInstanceError):
        good.value = 1  # type: ignore[misc]


def test_skipped_counts_as_ok() -> None:
    @task(on_dep_failure="skip")
    def maybe() -> None:
        return None

    with TaskRunner(on_task_error="continue") as runner:
        bad = explode.submit("x")
        runner.run()
        # A later run with only a skipped task is ok, and the failed one still shows.
        skipped = maybe.submit(depends_on=[bad])
        results = runner.run()
    assert skipped.status is TaskStatus.SKIPPED
    assert not results.ok  # the earlier failure is still among the runner's handles
    assert [r.key for r in results.failed] == [bad.key]

    with TaskRunner(on_task_error="continue") as runner2:
        done = square.submit(1)
        assert runner2.run().ok
    assert done.to_result().ok


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


# -- on_task_error -------------------------------------------------------------------------------

def test_on_task_error_raise_aborts_with_the_first_failure() -> None:
    with TaskRunner(max_workers=1) as runner:
        bad = explode.submit("first")
        queued = square.submit(7)
        child = square.submit(8, depends_on=[bad])
        with pytest.raises(Boom, match="first"):
            runner.run()
    assert bad.status is TaskStatus.FAILED
    assert child.status is TaskStatus.FAILED  # its dependency failed before the abort
    assert isinstance(child.exception, DependencyFailedError)
    assert queued.status is TaskStatus.CANCELLED
    assert isinstance(queued.exception, TaskCancelledError)
    assert all(h.done() for h in runner.handles)


def test_after_a_raise_abort_running_thread_tasks_are_terminal_too() -> None:
    started = threading.Event()
    release = threading.Event()

    @task(backend="thread")
    def busy() -> str:
        started.set()
        release.wait(HANG_GUARD)
        return "busy"

    @task
    def fail_when_busy() -> None:
        raise Boom("late")

    with TaskRunner() as runner:
        h_busy = busy.submit()

        @task(backend="thread")
        def waiter() -> None:
            started.wait(HANG_GUARD)

        h_wait = waiter.submit()
        h_bad = fail_when_busy.submit(depends_on=[h_wait])
        with pytest.raises(Boom):
            runner.run()
        statuses = {h.key: h.status for h in runner.handles}
        release.set()
    assert all(s.terminal for s in statuses.values()), statuses
    assert statuses[h_busy.key] is TaskStatus.CANCELLED
    assert statuses[h_bad.key] is TaskStatus.FAILED


def test_on_task_error_log_logs_and_continues(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="pyworkflowy_nb")
    with TaskRunner(on_task_error="log") as runner:
        bad = explode.submit("logged")
        good = square.submit(2)
        results = runner.run()
    assert good.result() == 4
    assert bad.status is TaskStatus.FAILED
    assert not results.ok
    records = [r for r in caplog.records if r.name == "pyworkflowy_nb"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert bad.key in records[0].getMessage()
    assert records[0].exc_info is not None and records[0].exc_info[1] is bad.exception()


def test_on_task_error_log_does_not_log_dependency_failures(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="pyworkflowy_nb")
    with TaskRunner(on_task_error="log") as runner:
        bad = explode.submit("root")
        square.submit(1, depends_on=[bad])
        runner.run()
    assert len([r for r in caplog.records if r.name == "pyworkflowy_nb"]) == 1


def test_on_task_error_continue_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with TaskRunner(on_task_error="continue") as runner:
        bad = explode.submit("quiet")
        good = square.submit(3)
        results = runner.run()
    assert [r for r in caplog.records if r.name.startswith("pyworkflowy_nb")] == []
    assert isinstance(bad.exception, Boom)
    assert good.result() == 9
    assert not results.ok


# -- arun, background runs, running loops -------------------------------------------------------

@pytest.mark.anyio
async def test_arun_then_await_handles() -> None:
    runner = TaskRunner()
    h = runner.submit(async_square, 7)
    s = runner.submit(square, 3)
    results = await runner.arun()
    assert await h == 49
    assert await s == 9
    assert results.ok
    runner.shutdown()


@pytest.mark.anyio
async def test_await_a_handle_while_it_runs_in_the_background() -> None:
    release = threading.Event()

    @task(backend="thread")
    def blocked() -> int:
        release.wait(HANG_GUARD)
        return 5

    with TaskRunner() as runner:
        h = blocked.submit()
        future = runner.run_in_background()
        waiter = asyncio.ensure_future(_await(h))
        await asyncio.sleep(0)
        assert not waiter.done()
        release.set()
        assert await asyncio.wait_for(waiter, HANG_GUARD) == 5
        await asyncio.wrap_future(future)


async def _await(h: TaskHandle[Any]) -> Any:
    return await h


@pytest.mark.anyio
async def test_awaiting_a_failed_handle_raises() -> None:
    runner = TaskRunner(on_task_error="continue")
    h = runner.submit(explode, "awaited")
    await runner.arun()
    with pytest.raises(Boom, match="awaited"):
        await h


@pytest.mark.anyio
async def test_run_called_inside_a_running_loop_works() -> None:
    # A Jupyter cell calls runner.run() while the kernel's loop is running.
    asyncio.get_running_loop()
    with TaskRunner() as runner:
        a = square.submit(4)
        b = async_square.submit(5)
        c = square.submit(2, depends_on=[a, b])
        results = runner.run()
    assert results.ok
    assert (a.result(), b.result(), c.result()) == (16, 25, 4)


@pytest.mark.anyio
async def test_result_on_the_loop_thread_while_running_is_refused() -> None:
    errors: list[BaseException] = []

    @task
    async def waits_wrongly() -> None:
        try:
            other.result()
        except RuntimeError as exc:
            errors.append(exc)

    @task
    async def other_body() -> None:
        await asyncio.sleep(0)

    runner = TaskRunner()
    other = runner.submit(other_body)
    runner.submit(waits_wrongly)
    await runner.arun()
    assert len(errors) == 1 and "await handle" in str(errors[0])


def test_run_in_background_returns_one_future_per_run() -> None:
    release = threading.Event()

    @task(backend="thread")
    def blocked() -> int:
        release.wait(HANG_GUARD)
        return 1

    with TaskRunner() as runner:
        h = blocked.submit()
        f1 = runner.run_in_background()
        f2 = runner.run_in_background()
        assert f1 is f2
        assert isinstance(f1, concurrent.futures.Future)
        assert runner.running
        release.set()
        results = f1.result(HANG_GUARD)
        assert results.ok and h.result() == 1
        wait_until(lambda: not runner.running, "the run to end")


@pytest.mark.anyio
async def test_second_arun_while_running_is_refused() -> None:
    release = threading.Event()

    @task(backend="thread")
    def blocked() -> int:
        release.wait(HANG_GUARD)
        return 1

    with TaskRunner() as runner:
        blocked.submit()
        first = asyncio.ensure_future(runner.arun())
        await asyncio.sleep(0)
        wait_until(lambda: runner.running, "the first run to start")
        with pytest.raises(RuntimeError, match="already running"):
            await runner.arun()
        with pytest.raises(RuntimeError, match="already running"):
            runner.run_in_background()
        release.set()
        assert (await first).ok


def test_nest_asyncio_patched_loop_uses_run_until_complete() -> None:
    # nest_asyncio patches asyncio globally, so this runs in its own interpreter.
    import subprocess
    import sys

    code = (
        "import asyncio, threading, nest_asyncio\n"
        "nest_asyncio.apply()\n"
        "from pyworkflowy_nb import TaskRunner, task\n"
        "threads = []\n"
        "@task\n"
        "def where():\n"
        "    threads.append(threading.current_thread().name)\n"
        "    return 3\n"
        "async def main():\n"
        "    r = TaskRunner()\n"
        "    h = r.submit(where)\n"
        "    r.run()\n"
        "    return h.result()\n"
        "assert asyncio.run(main()) == 3\n"
        "assert threads == [threading.main_thread().name], threads\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# -- live submissions ----------------------------------------------------------------------------

def test_submissions_from_another_thread_join_the_current_run() -> None:
    release = threading.Event()

    @task(backend="thread")
    def blocker() -> str:
        release.wait(HANG_GUARD)
        return "blocker"

    with TaskRunner() as runner:
        first = blocker.submit()
        future = runner.run_in_background()
        wait_until(lambda: first.status is TaskStatus.RUNNING, "the blocker to start")
        added: list[TaskHandle[Any]] = []

        def submit_from_thread() -> None:
            for i in range(20):
                added.append(runner.submit(square, i))

        t = threading.Thread(target=submit_from_thread)
        t.start()
        t.join(HANG_GUARD)
        # They run while the blocker is still blocked: the run picked them up.
        wait_until(lambda: all(h.done() for h in added), "live submissions to run")
        assert first.status is TaskStatus.RUNNING
        release.set()
        results = future.result(HANG_GUARD)
    assert [h.result() for h in added] == [i * i for i in range(20)]
    assert len(results.by_key()) == 21 and results.ok


def test_submissions_from_inside_a_task_are_executed_by_the_same_run() -> None:
    children: list[TaskHandle[Any]] = []

    @task
    def fan_out(n: int) -> int:
        for i in range(n):
            children.append(square.submit(i))  # bound runner travels with the context
        return n

    @task(backend="thread")
    def fan_out_in_thread(n: int) -> int:
        for i in range(n):
            children.append(square.submit(100 + i))
        return n

    with TaskRunner() as runner:
        fan_out.submit(3)
        fan_out_in_thread.submit(2)
        results = runner.run()
    assert len(results.by_key()) == 7
    assert all(h.done() for h in children)
    assert sorted(h.result() for h in children) == [0, 1, 4, 10000, 10201]


@pytest.mark.parametrize("backend", ["asyncio", "thread"])
def test_inside_a_body_the_executing_runner_is_current_without_a_with(backend: str) -> None:
    seen: list[Any] = []

    def body() -> None:
        seen.append(get_current_runner())
        seen.append(square.submit(6))

    runner = TaskRunner(backend=backend)
    runner.submit(body)
    assert get_current_runner() is None
    runner.run()
    runner.shutdown()
    assert seen[0] is runner
    assert seen[1].result() == 36


def test_a_task_can_submit_a_child_and_make_a_later_task_wait_on_it() -> None:
    order: list[str] = []

    @task
    def leaf() -> str:
        order.append("leaf")
        return "leaf"

    @task
    def spawner() -> str:
        runner = get_current_runner()
        assert runner is not None
        child = leaf.submit()
        runner.submit(lambda: order.append("after-leaf"), depends_on=[child])
        order.append("spawner")
        return "spawner"

    with TaskRunner() as runner:
        spawner.submit()
        runner.run()
    assert order == ["spawner", "leaf", "after-leaf"]


# -- events --------------------------------------------------------------------------------------

def test_event_log_records_kinds_in_order_for_a_small_dag(tmp_path: Path) -> None:
    @task
    def a() -> int:
        return 1

    @task
    def b() -> int:
        raise Boom("b")

    @task
    def c() -> int:
        return 3

    @task(on_dep_failure="skip")
    def d() -> int:
        return 4

    path = tmp_path / "events.jsonl"
    with TaskRunner(on_task_error="continue", max_workers=1) as runner:
        log = EventLog(runner, str(path))
        ha = a.submit()
        hb = b.submit(depends_on=[ha])
        hc = c.submit(depends_on=[ha])
        hd = d.submit(depends_on=[hb, hc])
        runner.run()
        log.close()
    assert log.kinds(ha.key) == ["submitted", "started", "completed"]
    assert log.kinds(hb.key) == ["submitted", "started", "failed"]
    assert log.kinds(hc.key) == ["submitted", "started", "completed"]
    assert log.kinds(hd.key) == ["submitted", "skipped"]
    kinds = log.kinds()
    assert kinds[:4] == ["submitted"] * 4
    assert kinds[4] == "run-started" and kinds[-1] == "run-finished"
    # Parents end before their children start.
    keyed = [(e.kind, e.key) for e in log.events]
    assert keyed.index(("completed", ha.key)) < keyed.index(("started", hb.key))
    assert keyed.index(("failed", hb.key)) < keyed.index(("skipped", hd.key))
    failed = next(e for e in log.events if e.kind == "failed")
    assert isinstance(failed.error, Boom) and failed.attempt == 1 and failed.handle is hb
    times = [e.time for e in log.events]
    assert times == sorted(times)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [x["kind"] for x in lines] == kinds
    assert lines[0]["key"] == ha.key
    # After close() nothing more is recorded.
    with TaskRunner() as r2:
        log2 = EventLog(r2)
        log2.close()
        square.submit(1)
        r2.run()
    assert log2.events == []


def test_subscribe_and_unsubscribe(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[TaskEvent] = []

    def broken(event: TaskEvent) -> None:
        raise RuntimeError("listener bug")

    with TaskRunner() as runner:
        unsubscribe = runner.subscribe(seen.append)
        runner.subscribe(broken)
        h = square.submit(2)
        with caplog.at_level(logging.ERROR, logger="pyworkflowy_nb"):
            runner.run()  # a failing listener never breaks the run
        assert h.result() == 4
        assert any("listener" in r.getMessage() for r in caplog.records)
        count = len(seen)
        unsubscribe()
        square.submit(3)
        runner.run()
    assert len(seen) == count
    assert [e.kind for e in seen] == ["submitted", "run-started", "started", "completed",
                                      "run-finished"]
    assert seen[0].handle is h and seen[1].handle is None
    assert seen[2].attempt == 1
    with pytest.raises(TypeError, match="callable"):
        runner.subscribe(42)  # type: ignore[arg-type]


def test_event_kinds_include_retrying_and_cancelled_and_restored(tmp_path: Path) -> None:
    attempts: list[int] = []

    @task(retries=1, backoff="none")
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise Boom("once")
        return "ok"

    path = tmp_path / "state.json"
    with TaskRunner(checkpoint_path=path, checkpoint_interval=0) as runner:
        log = EventLog(runner)
        h = flaky.submit()
        gone = square.submit(1)
        gone.cancel()
        runner.run()
    assert log.kinds(h.key) == ["submitted", "started", "retrying", "started", "completed"]
    assert log.kinds(gone.key) == ["submitted", "cancelled"]
    with TaskRunner.resume(path) as again:
        log2 = EventLog(again)
        h2 = again.submit(flaky)
        again.run()
    assert h2.restored and log2.kinds(h2.key) == ["submitted", "restored"]


# -- ordering ------------------------------------------------------------------------------------

def test_priorities_order_ready_tasks_ties_in_submission_order() -> None:
    order: list[str] = []

    def make(label: str, priority: int) -> Any:
        return task(name=label, priority=priority)(lambda: order.append(label))

    with TaskRunner(max_workers=1) as runner:
        for label, prio in [("a", 0), ("b", 5), ("c", 1), ("d", 5), ("e", -1), ("f", 1)]:
            make(label, prio).submit()
        runner.run()
    assert order == ["b", "d", "c", "f", "a", "e"]


def test_priorities_order_ready_tasks_on_threads() -> None:
    order: list[str] = []

    def make(label: str, priority: int) -> Any:
        return task(name=label, priority=priority, backend="thread")(
            lambda: order.append(label))

    with TaskRunner(max_workers=1) as runner:
        for label, prio in [("low", -3), ("mid", 0), ("high", 9), ("mid2", 0)]:
            make(label, prio).submit()
        runner.run()
    assert order == ["high", "mid", "mid2", "low"]


def test_priority_applies_only_among_ready_tasks() -> None:
    order: list[str] = []
    with TaskRunner(max_workers=1) as runner:
        low = task(name="low", priority=0)(lambda: order.append("low")).submit()
        task(name="urgent-child", priority=100)(lambda: order.append("urgent")).submit(
            depends_on=[low])
        task(name="mid", priority=5)(lambda: order.append("mid")).submit()
        runner.run()
    assert order == ["mid", "low", "urgent"]


def test_runner_repr_counts_statuses() -> None:
    with TaskRunner(on_task_error="continue") as runner:
        square.submit(1)
        explode.submit("x")
        assert repr(runner) == "<TaskRunner backend=asyncio 2 ready>"
        runner.run()
    assert repr(runner) == "<TaskRunner backend=asyncio 1 completed, 1 failed>"


def test_running_turns_false_as_soon_as_the_run_stops_taking_work() -> None:
    # The end of a run can take a while (the final checkpoint is written). A submission that
    # sees `running` still True must be executed by that run; otherwise `running` must already
    # be False, so the submitter knows to start another (the scheduler relies on this).
    from collections.abc import Mapping

    from pyworkflowy_nb import Checkpointer

    saving = threading.Event()
    release = threading.Event()

    class SlowDisk(Checkpointer):
        def save(self, records: Mapping[str, dict[str, Any]]) -> None:
            saving.set()
            release.wait(HANG_GUARD)

        def load(self) -> dict[str, dict[str, Any]]:
            return {}

    runner = TaskRunner(checkpointer=SlowDisk(), checkpoint_interval=0)
    first = runner.submit(square, 1)
    future = runner.run_in_background()
    assert saving.wait(HANG_GUARD)
    wait_until(first.done, "the only task to finish")
    try:
        wait_until(lambda: not runner.running, "the run to stop taking work", timeout=5.0)
        late = runner.submit(square, 2)
        assert not runner.running
        second = runner.run_in_background()
        assert second is not future
    finally:
        release.set()
    assert future.result(HANG_GUARD).ok
    assert second.result(HANG_GUARD).ok
    assert late.result() == 4
    runner.shutdown()


def test_run_joins_a_background_run_outside_any_loop() -> None:
    # Inside a running loop run() already joins the background run; plain Python must too.
    release = threading.Event()

    @task(backend="thread")
    def blocked() -> int:
        release.wait(HANG_GUARD)
        return 1

    with TaskRunner() as runner:
        h = blocked.submit()
        future = runner.run_in_background()
        later = square.submit(5)
        threading.Timer(0.05, release.set).start()
        results = runner.run()  # blocks until the background run is over
    assert results.ok and len(results) == 2
    assert h.result() == 1 and later.result() == 25
    assert future.done()


@pytest.mark.anyio
async def test_cancelling_arun_from_outside_leaves_every_handle_terminal() -> None:
    started = asyncio.Event()

    @task
    async def forever() -> None:
        started.set()
        await asyncio.sleep(HANG_GUARD)

    runner = TaskRunner()
    a = runner.submit(forever)
    b = runner.submit(square, 2, depends_on=[a])
    c = runner.submit(square, 3, depends_on=[a])
    driving = asyncio.ensure_future(runner.arun())
    await asyncio.wait_for(started.wait(), HANG_GUARD)
    driving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await driving
    assert all(h.done() for h in (a, b, c))
    assert a.status is TaskStatus.CANCELLED
    assert not runner.running
    # The runner is still usable afterwards.
    d = runner.submit(square, 4)
    assert (await runner.arun())[d.key].value == 16
    runner.shutdown()


def test_many_threads_submitting_dependent_tasks_into_one_run() -> None:
    import random

    release = threading.Event()

    @task(backend="thread")
    def keeper() -> str:  # keeps the run alive until every submitter is done
        release.wait(HANG_GUARD)
        return "kept"

    @task
    def add_one(x: int) -> int:
        return x + 1

    lock = threading.Lock()
    made: list[tuple[TaskHandle[Any], int]] = []

    def submitter(seed: int) -> None:
        rng = random.Random(seed)
        for i in range(150):
            with lock:
                parents = rng.sample(made, k=min(len(made), rng.randint(0, 2)))
            h = runner.submit(add_one, seed * 1000 + i,
                              depends_on=[p for p, _ in parents])
            with lock:
                made.append((h, seed * 1000 + i + 1))

    with TaskRunner() as runner:
        runner.submit(keeper)
        future = runner.run_in_background()
        threads = [threading.Thread(target=submitter, args=(s,)) for s in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(HANG_GUARD)
        release.set()
        results = future.result(HANG_GUARD)
    assert results.ok
    assert len(results.by_key()) == 601
    for h, expected in made:
        assert h.result() == expected
        for p in h.parents:
            assert p.finished_at is not None and h.started_at is not None
            assert p.finished_at <= h.started_at
