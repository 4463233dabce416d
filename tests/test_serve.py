"""Serve mode: ``runner.serve()`` / ``await runner.aserve()`` / ``serve_in_background()`` idle
instead of ending, take submissions from any thread, and end at ``stop()`` once drained."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from engine_helpers import HANG_GUARD, add, wait_until

from pyworkflowy_nb import TaskRunner, TaskStatus, current_task, task
from pyworkflowy_nb._events import TaskEvent
from pyworkflowy_nb.exceptions import TaskCancelledError


def run_kinds(runner: TaskRunner) -> list[str]:
    kinds: list[str] = []

    def listen(event: TaskEvent) -> None:
        if event.kind.startswith("run-"):
            kinds.append(event.kind)

    runner.subscribe(listen)
    return kinds


def test_a_serve_idles_and_runs_submissions_from_other_threads() -> None:
    with TaskRunner(max_workers=2) as runner:
        kinds = run_kinds(runner)
        future = runner.serve_in_background()
        wait_until(lambda: kinds == ["run-started"], "the serve to start")
        first = runner.submit(add, 1, 2)
        assert first.result(timeout=HANG_GUARD) == 3
        assert runner.running and not future.done()  # idle, not ended
        handles: list[Any] = []

        def submitter(i: int) -> None:
            handles.append(runner.submit(add, i, 100))

        threads = [threading.Thread(target=submitter, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(HANG_GUARD)
        assert sorted(h.result(timeout=HANG_GUARD) for h in handles) == list(range(100, 108))
        assert runner.stop() is True
        results = future.result(timeout=HANG_GUARD)
        assert results.ok and len(results.by_key()) == 9
        assert kinds == ["run-started", "run-finished"]  # one run did it all
        assert not runner.running
        assert runner.stop() is False  # not serving any more


def test_stop_drains_what_was_submitted() -> None:
    release = threading.Event()

    @task(backend="thread")
    def slow(n: int) -> int:
        assert release.wait(HANG_GUARD)
        return n

    with TaskRunner(max_workers=1) as runner:
        future = runner.serve_in_background()
        handles = [runner.submit(slow, i) for i in range(3)]
        assert runner.stop()
        assert not future.done()  # stop() returns at once; the serve is still draining
        later = runner.submit(add, 2, 2)  # still taken: the serve has not ended
        release.set()
        results = future.result(timeout=HANG_GUARD)
        assert [h.result() for h in handles] == [0, 1, 2] and later.result() == 4
        assert results.ok


def test_stop_with_cancel_cancels_the_unfinished() -> None:
    started = threading.Event()

    @task(backend="thread")
    def cooperative() -> str:
        started.set()
        ctx = current_task()
        assert ctx is not None
        ctx.cancel_event.wait(HANG_GUARD)
        return "stopped early"

    with TaskRunner(on_task_error="continue") as runner:
        future = runner.serve_in_background()
        running = runner.submit(cooperative)
        waiting = runner.submit(add, 1, 1, depends_on=[running])
        assert started.wait(HANG_GUARD)
        assert runner.stop(cancel=True)
        future.result(timeout=HANG_GUARD)
        assert running.status is TaskStatus.CANCELLED
        assert waiting.status is TaskStatus.CANCELLED
        with pytest.raises(TaskCancelledError):
            waiting.result()


def test_stop_from_a_task_ends_the_serve() -> None:
    with TaskRunner() as runner:
        @task
        def last_one() -> str:
            runner.stop()
            return "bye"

        future = runner.serve_in_background()
        h = runner.submit(last_one)
        results = future.result(timeout=HANG_GUARD)
        assert h.result() == "bye" and results.ok


def test_aserve_on_the_callers_loop_with_a_task_failing() -> None:
    async def main(runner: TaskRunner) -> tuple[Any, ...]:
        serving = asyncio.create_task(runner.aserve())
        await asyncio.sleep(0)
        ok = runner.submit(add, 20, 22)
        value = await ok
        runner.submit(_fails)
        with pytest.raises(ValueError, match="boom"):
            await asyncio.wait_for(serving, HANG_GUARD)  # on_task_error='raise' ends it
        return value, runner.running

    with TaskRunner() as runner:
        assert asyncio.run(main(runner)) == (42, False)


def _fails() -> None:
    raise ValueError("boom")


def test_a_failure_under_continue_keeps_serving() -> None:
    with TaskRunner(on_task_error="continue") as runner:
        future = runner.serve_in_background()
        bad = runner.submit(_fails)
        assert isinstance(bad.exception(timeout=HANG_GUARD), ValueError)
        assert runner.running and not future.done()
        assert runner.submit(add, 1, 1).result(timeout=HANG_GUARD) == 2
        runner.stop()
        assert not future.result(timeout=HANG_GUARD).ok  # the failure is in the results


def test_serve_blocks_until_stop_from_another_thread() -> None:
    with TaskRunner() as runner:
        done: list[Any] = []

        def client() -> None:
            wait_until(lambda: runner.running, "the serve to start")
            done.append(runner.submit(add, 3, 4).result(timeout=HANG_GUARD))
            runner.stop()

        thread = threading.Thread(target=client)
        thread.start()
        results = runner.serve()
        thread.join(HANG_GUARD)
        assert done == [7] and results.ok


def test_run_while_serving_waits_for_what_was_submitted() -> None:
    with TaskRunner() as runner:
        future = runner.serve_in_background()
        h = runner.submit(add, 5, 5)
        results = runner.run()  # does not block until stop(): waits for h only
        assert results[h.key].value == 10
        assert runner.running
        assert runner.serve_in_background() is future  # the same serve
        runner.stop()
        future.result(timeout=HANG_GUARD)


def test_serving_twice_or_after_shutdown_is_refused() -> None:
    runner = TaskRunner()
    future = runner.serve_in_background()
    with pytest.raises(RuntimeError, match="already running"):
        asyncio.run(runner.aserve())
    runner.shutdown()  # stops the serve (it drains)
    future.result(timeout=HANG_GUARD)
    with pytest.raises(RuntimeError, match="shut down"):
        runner.serve_in_background()


def test_arun_while_serving_awaits_what_was_submitted_whatever_its_outcome() -> None:
    with TaskRunner(on_task_error="continue") as runner:
        future = runner.serve_in_background()
        good = runner.submit(add, 1, 2)
        bad = runner.submit(_fails)
        results = asyncio.run(runner.arun())  # on another loop than the serve's
        assert results[good.key].value == 3
        assert results[bad.key].status is TaskStatus.FAILED
        assert runner.running
        runner.stop()
        future.result(timeout=HANG_GUARD)
