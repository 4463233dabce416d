"""Cancellation on every backend, cancel_all, and timeouts per backend."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import engine_helpers
import pytest
from engine_helpers import HANG_GUARD, wait_until

from pyworkflowy_nb import TaskRunner, TaskStatus, current_task, task
from pyworkflowy_nb.exceptions import (
    DependencyFailedError,
    TaskCancelledError,
    TaskError,
    TaskTimeoutError,
)


@task
def square(x: int) -> int:
    return x * x


def test_cancel_a_pending_handle_before_the_run() -> None:
    ran: list[int] = []

    @task
    def body() -> None:
        ran.append(1)

    with TaskRunner() as runner:
        h = body.submit()
        assert h.cancel() is True
        assert h.status is TaskStatus.CANCELLED
        assert h.cancel() is False  # already ended
        results = runner.run()
    assert ran == []
    assert isinstance(h.exception, TaskCancelledError)
    assert isinstance(h.exception, TaskError)
    assert h.exception.task == h.key
    with pytest.raises(TaskCancelledError):
        h.result()
    assert not results.ok
    assert [r.key for r in results.failed] == [h.key]


def test_cancel_a_completed_handle_returns_false() -> None:
    with TaskRunner() as runner:
        h = square.submit(2)
        runner.run()
        assert h.cancel() is False
    assert h.status is TaskStatus.COMPLETED and h.result() == 4


def test_cancelling_a_running_asyncio_task_raises_cancelled_error_in_the_body() -> None:
    started = threading.Event()
    observed: list[str] = []

    @task
    async def long() -> str:
        started.set()
        try:
            await asyncio.sleep(HANG_GUARD)
        except asyncio.CancelledError:
            observed.append("CancelledError")
            raise
        return "finished"

    with TaskRunner() as runner:
        h = long.submit()
        future = runner.run_in_background()
        assert started.wait(HANG_GUARD)
        assert h.status is TaskStatus.RUNNING
        assert h.cancel() is True
        future.result(HANG_GUARD)
    assert observed == ["CancelledError"]
    assert h.status is TaskStatus.CANCELLED
    assert isinstance(h.exception, TaskCancelledError)


def test_cancel_from_inside_the_loop_cancels_a_sibling() -> None:
    started = asyncio.Event()
    observed: list[str] = []

    @task
    async def victim() -> None:
        started.set()
        try:
            await asyncio.sleep(HANG_GUARD)
        except asyncio.CancelledError:
            observed.append("cancelled")
            raise

    @task
    async def killer() -> bool:
        await started.wait()
        return h_victim.cancel()

    async def main() -> None:
        await runner.arun()

    runner = TaskRunner(on_task_error="continue")
    h_victim = runner.submit(victim)
    h_killer = runner.submit(killer)
    asyncio.run(main())
    runner.shutdown()
    assert h_killer.result() is True
    assert observed == ["cancelled"]
    assert h_victim.status is TaskStatus.CANCELLED


def test_a_body_that_swallows_cancellation_still_ends_cancelled() -> None:
    started = threading.Event()

    @task
    async def stubborn() -> str:
        started.set()
        try:
            await asyncio.sleep(HANG_GUARD)
        except asyncio.CancelledError:
            return "ignored the cancel"
        return "slept"

    with TaskRunner() as runner:
        h = stubborn.submit()
        future = runner.run_in_background()
        assert started.wait(HANG_GUARD)
        h.cancel()
        future.result(HANG_GUARD)
    assert h.status is TaskStatus.CANCELLED
    assert isinstance(h.exception, TaskCancelledError)


def test_thread_cancellation_is_cooperative_via_cancel_event() -> None:
    started = threading.Event()
    chunks: list[int] = []

    @task(backend="thread")
    def long_loop(n: int) -> str:
        ctx = current_task()
        assert ctx is not None
        for i in range(n):
            if ctx.cancel_event.is_set():
                return "stopped early"
            chunks.append(i)
            started.set()
            ctx.cancel_event.wait(0.01)
        return "ran to the end"

    with TaskRunner() as runner:
        h = long_loop.submit(100_000)
        future = runner.run_in_background()
        assert started.wait(HANG_GUARD)
        assert h.cancel() is True
        future.result(HANG_GUARD)
    assert h.status is TaskStatus.CANCELLED
    err = h.exception
    assert isinstance(err, TaskCancelledError)
    assert err.result == "stopped early"  # what the body returned after noticing
    assert 0 < len(chunks) < 100_000


def test_thread_body_that_ignores_the_flag_is_cancelled_when_it_returns() -> None:
    started = threading.Event()
    release = threading.Event()

    @task(backend="thread")
    def oblivious() -> str:
        started.set()
        release.wait(HANG_GUARD)
        return "done anyway"

    with TaskRunner() as runner:
        h = oblivious.submit()
        future = runner.run_in_background()
        assert started.wait(HANG_GUARD)
        h.cancel()
        assert h.status is TaskStatus.RUNNING  # cooperative: nothing can stop the thread
        release.set()
        future.result(HANG_GUARD)
    assert h.status is TaskStatus.CANCELLED
    assert isinstance(h.exception, TaskCancelledError)
    assert h.exception.result == "done anyway"


def test_cancel_event_is_set_for_a_task_cancelled_while_queued() -> None:
    gate = threading.Event()
    ran: list[str] = []

    @task(backend="thread")
    def holder() -> None:
        gate.wait(HANG_GUARD)

    @task(backend="thread")
    def queued() -> None:
        ran.append("queued")

    with TaskRunner(max_workers=1) as runner:
        runner.submit(holder)
        h = runner.submit(queued)
        future = runner.run_in_background()
        wait_until(lambda: runner.handles[0].status is TaskStatus.RUNNING, "holder to start")
        assert h.cancel()
        assert h.status is TaskStatus.CANCELLED
        gate.set()
        future.result(HANG_GUARD)
    assert ran == []


def test_cancel_during_retry_backoff_stops_further_attempts() -> None:
    attempts: list[int] = []

    @task(retries=5, backoff="linear", backoff_base=HANG_GUARD)
    def flaky() -> None:
        attempts.append(1)
        raise RuntimeError("again")

    with TaskRunner() as runner:
        h = flaky.submit()
        future = runner.run_in_background()
        wait_until(lambda: h.status is TaskStatus.RETRYING, "the first retry to be scheduled")
        assert h.cancel()
        future.result(HANG_GUARD)
    assert attempts == [1]
    assert h.status is TaskStatus.CANCELLED


def test_cancelled_parent_fails_its_dependants() -> None:
    with TaskRunner() as runner:
        parent = square.submit(1)
        child = square.submit(2, depends_on=[parent])
        parent.cancel()
        runner.run()  # dependency failures are not task failures: "raise" does not fire
    assert child.status is TaskStatus.FAILED
    assert isinstance(child.exception, DependencyFailedError)


def test_cancel_all_flags_every_unfinished_handle() -> None:
    started = threading.Event()
    async_started = threading.Event()
    flags: list[bool] = []

    @task(backend="thread")
    def cooperative() -> None:
        ctx = current_task()
        assert ctx is not None
        started.set()
        flags.append(ctx.cancel_event.wait(HANG_GUARD))

    @task
    async def sleeper() -> None:
        async_started.set()
        await asyncio.sleep(HANG_GUARD)

    gate_started = threading.Event()
    gate = threading.Event()

    @task(backend="thread")
    def gatekeeper() -> None:  # ignores its cancel flag until the test lets it go
        gate_started.set()
        gate.wait(HANG_GUARD)

    with TaskRunner() as runner:
        done = square.submit(3)
        runner.run()
        h_thread = cooperative.submit()
        h_async = sleeper.submit()
        h_gate = gatekeeper.submit()
        h_waiting = square.submit(4, depends_on=[h_gate])
        future = runner.run_in_background()
        assert started.wait(HANG_GUARD) and async_started.wait(HANG_GUARD)
        assert gate_started.wait(HANG_GUARD)
        assert runner.cancel_all() == 4
        assert h_waiting.status is TaskStatus.CANCELLED  # not started: settled at once
        gate.set()
        future.result(HANG_GUARD)
    assert flags == [True]
    assert done.status is TaskStatus.COMPLETED  # finished handles are left alone
    for h in (h_thread, h_async, h_gate, h_waiting):
        assert h.status is TaskStatus.CANCELLED, h
    assert runner.cancel_all() == 0


def test_cancel_all_from_another_thread_with_many_pending() -> None:
    gate = threading.Event()

    @task(backend="thread")
    def holder() -> None:
        gate.wait(HANG_GUARD)

    with TaskRunner(max_workers=1) as runner:
        first = holder.submit()
        rest = [square.submit(i) for i in range(50)]
        future = runner.run_in_background()
        wait_until(lambda: first.status is TaskStatus.RUNNING, "holder to start")
        t = threading.Thread(target=runner.cancel_all)
        t.start()
        t.join(HANG_GUARD)
        gate.set()
        future.result(HANG_GUARD)
    assert all(h.status is TaskStatus.CANCELLED for h in rest)
    assert first.status is TaskStatus.CANCELLED


def test_process_cancel_before_the_worker_picks_it_up(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    started = tmp_path / "started"
    release = tmp_path / "release"
    with TaskRunner(max_workers=1, backend="process") as runner:
        blocker = runner.submit(engine_helpers.wait_for_file, str(started), str(release))
        victim = runner.submit(engine_helpers.touch, str(marker))
        future = runner.run_in_background()
        wait_until(started.exists, "the blocker to occupy the only worker")
        assert victim.cancel()
        assert victim.status is TaskStatus.CANCELLED
        release.touch()
        future.result(HANG_GUARD)
    assert blocker.result() == "released"
    assert not marker.exists()


def test_process_cancel_while_running_settles_at_once(tmp_path: Path) -> None:
    started = tmp_path / "started"
    release = tmp_path / "release"
    with TaskRunner(backend="process") as runner:
        h = runner.submit(engine_helpers.wait_for_file, str(started), str(release))
        future = runner.run_in_background()
        wait_until(started.exists, "the process body to start")
        assert h.cancel()
        # Best effort: the worker cannot be interrupted, but the handle and the run are done.
        future.result(HANG_GUARD)
        assert h.status is TaskStatus.CANCELLED
        release.touch()
    assert isinstance(h.exception, TaskCancelledError)


# -- timeouts per backend ------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["asyncio", "thread"])
def test_timeout_frees_the_run_even_if_the_sync_body_keeps_going(backend: str) -> None:
    release = threading.Event()
    seen_cancel: list[bool] = []

    @task(timeout=0.05, backend=backend)
    def stuck() -> None:
        ctx = current_task()
        assert ctx is not None
        seen_cancel.append(ctx.cancel_event.wait(HANG_GUARD))
        release.wait(HANG_GUARD)

    with TaskRunner(on_task_error="continue") as runner:
        h = stuck.submit()
        follow = square.submit(5, depends_on=[h])
        runner.run()  # returns without waiting for the stuck thread
        assert h.status is TaskStatus.FAILED
        assert isinstance(h.exception, TaskTimeoutError)
        assert follow.status is TaskStatus.FAILED
        wait_until(lambda: seen_cancel == [True], "the body to see its cancel flag")
        release.set()


def test_timeout_on_the_process_backend(tmp_path: Path) -> None:
    started = tmp_path / "started"
    release = tmp_path / "release"
    with TaskRunner(on_task_error="continue", backend="process") as runner:
        t = task(timeout=0.1, retries=2, backend="process")(engine_helpers.wait_for_file)
        h = runner.submit(t, str(started), str(release))
        runner.run()
        release.touch()
    assert h.status is TaskStatus.FAILED
    assert isinstance(h.exception, TaskTimeoutError)
    assert h.attempts == 1


def test_timeout_under_raise_aborts_the_run() -> None:
    @task(timeout=0.05)
    async def slow() -> None:
        await asyncio.sleep(HANG_GUARD)

    with TaskRunner() as runner:
        h = slow.submit()
        with pytest.raises(TaskTimeoutError):
            runner.run()
    assert h.status is TaskStatus.FAILED


def test_fast_tasks_with_a_timeout_complete() -> None:
    @task(timeout=HANG_GUARD)
    def quick(x: int) -> int:
        return x + 1

    @task(timeout=HANG_GUARD)
    async def aquick(x: int) -> int:
        await asyncio.sleep(0)
        return x + 2

    with TaskRunner() as runner:
        hs = [quick.submit(i) for i in range(5)] + [aquick.submit(i) for i in range(5)]
        assert runner.run().ok
    assert [h.result() for h in hs] == [1, 2, 3, 4, 5, 2, 3, 4, 5, 6]
