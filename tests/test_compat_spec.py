"""A pyWorkflowy 0.1.0 user's code, run unchanged under ``import pyworkflowy_nb as pyworkflowy``.

``test_spec_examples.py`` checks each README sample on its own, importing our names. This module
instead reads like a program written for 0.1.0: module-qualified names, results looked up by
task name, the handle methods (``get_result``, ``exception()``, ``wait``), ``handles()``,
``sched.jobs()``, an epoch-seconds clock, and the README's sections chained into one workflow.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import HANG_GUARD

import pyworkflowy_nb as pyworkflowy
import pyworkflowy_nb.schedule as schedule

CALLS: list[str] = []


@pyworkflowy.task(name="load")
def load(path: str) -> list[int]:
    CALLS.append("load")
    return [int(x) for x in Path(path).read_text().split(",")]


@pyworkflowy.task(name="clean", backend="thread")
def clean(upstream: list[int]) -> list[int]:
    CALLS.append("clean")
    # A handle passed as an argument arrives as its result (issue 13; 0.1.0 passed the
    # handle itself and the body called upstream.result()).
    return sorted(x for x in upstream if x >= 0)


class Total(pyworkflowy.TaskBase):
    name = "total"
    retries = 2
    backoff = "linear"
    backoff_base = 0.001  # tiny waits: this is a test

    def run(self, upstream: list[int]) -> int:
        CALLS.append("total")
        return sum(upstream)


total = Total()


@pyworkflowy.task(name="publish", on_dep_failure="skip")
async def publish(upstream: int) -> str:
    await asyncio.sleep(0)
    return f"total={upstream}"


def test_a_dag_written_for_zero_one(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("3,-1,4,1,5")
    CALLS.clear()
    with pyworkflowy.TaskRunner(max_workers=4, on_task_error="continue") as runner:
        h_load = load.submit(str(data))
        h_clean = clean.submit(h_load, depends_on=[h_load])
        h_total = total.submit(h_clean, depends_on=[h_clean])
        h_pub = publish.submit(h_total, depends_on=[h_total])
        results = runner.run()
        assert runner.handles() == [h_load, h_clean, h_total, h_pub]
    assert CALLS == ["load", "clean", "total"]
    assert set(results) == {"load", "clean", "total", "publish"}
    assert results["total"].value == 13 and results["total"].ok
    assert results["publish"].value == "total=13"
    assert h_pub.get_result().status == pyworkflowy.TaskStatus.COMPLETED == "completed"
    assert h_total.exception() is None and h_total.wait(timeout=1)
    assert total.max_attempts == 3 and total.is_async is False and publish.is_async is True


def test_failure_policies_and_the_errors_table() -> None:
    @pyworkflowy.task(name="flaky", retries=2, backoff_base=0.001,
                      retry_on=(ConnectionError,))
    def flaky() -> None:
        raise ConnectionError("still down")

    @pyworkflowy.task(name="slow", timeout=0.05, retries=3)
    async def slow() -> None:
        await asyncio.sleep(HANG_GUARD)

    @pyworkflowy.task(name="needs-flaky")
    def needs_flaky() -> None: ...

    @pyworkflowy.task(name="skips", on_dep_failure="skip")
    def skips() -> None: ...

    @pyworkflowy.task(name="anyway", on_dep_failure="run-anyway")
    def anyway() -> str:
        return "ran"

    with pyworkflowy.TaskRunner(on_task_error="continue") as runner:
        h_flaky = flaky.submit()
        h_slow = slow.submit()
        h_fail = needs_flaky.submit(depends_on=[h_flaky])
        h_skip = skips.submit(depends_on=[h_flaky])
        h_any = anyway.submit(depends_on=[h_flaky])
        results = runner.run()

    exhausted = h_flaky.exception()
    assert isinstance(exhausted, pyworkflowy.RetryExhaustedError)
    assert exhausted.attempts == 3 and isinstance(exhausted.__cause__, ConnectionError)
    timed_out = results["slow"].error
    assert isinstance(timed_out, pyworkflowy.TaskTimeoutError) and h_slow.get_result().attempts == 1
    dep = h_fail.exception()
    assert isinstance(dep, pyworkflowy.DependencyFailedError) and dep.failed == ("flaky",)
    assert results["skips"].status == "skipped" and h_skip.done()
    assert h_any.result() == "ran"
    for error in (exhausted, timed_out, dep):
        assert isinstance(error, pyworkflowy.TaskError)
    with pytest.raises(pyworkflowy.CycleError):
        runner2 = pyworkflowy.TaskRunner()
        a = runner2.submit(lambda: 1)
        b = runner2.submit(lambda: 2, depends_on=[a])
        runner2.add_dependency(a, b)


def test_cancellation_and_current_task() -> None:
    started = threading.Event()

    @pyworkflowy.task(name="long-loop", backend="thread")
    def long_loop(n: int) -> str:
        ctx = pyworkflowy.current_task()
        assert ctx is not None and ctx.name == "long-loop" and ctx.attempt == 1
        started.set()
        for _ in range(n):
            if ctx.cancel_event.wait(0.01):
                return "stopped early"
        return "finished"

    runner = pyworkflowy.TaskRunner(on_task_error="continue")
    h = long_loop.submit(int(HANG_GUARD / 0.01), runner=runner)
    queued = runner.submit(lambda: "never", depends_on=[h])
    background = threading.Thread(target=runner.run)
    background.start()
    assert started.wait(HANG_GUARD)
    assert runner.cancel_all() == 2
    background.join(HANG_GUARD)
    assert h.status == "cancelled" and queued.status == "cancelled"
    assert isinstance(h.exception(), pyworkflowy.TaskCancelledError)
    runner.shutdown()
    runner.shutdown()  # idempotent


def test_persistence_and_resume_by_path(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    ran: list[int] = []

    @pyworkflowy.task(name="cube")
    def cube(x: int) -> int:
        ran.append(x)
        return x ** 3

    with pyworkflowy.TaskRunner(checkpoint_path=str(state), checkpoint_interval=5.0) as runner:
        for x in range(3):
            cube.submit(x)
        runner.run()
    assert ran == [0, 1, 2]
    resumed = pyworkflowy.TaskRunner.resume(str(state))
    with resumed:
        handles = [cube.submit(x) for x in range(4)]
        resumed.run()
    assert ran == [0, 1, 2, 3]  # only the new one ran
    assert [h.result() for h in handles] == [0, 1, 8, 27]
    with pytest.raises(pyworkflowy.CheckpointError):
        pyworkflowy.TaskRunner(checkpoint_path=str(tmp_path / "x.json")).submit(cube, object())


def test_async_usage() -> None:
    @pyworkflowy.task
    async def fetch(url: str) -> dict[str, str]:
        await asyncio.sleep(0)
        return {"url": url}

    async def main() -> Any:
        runner = pyworkflowy.TaskRunner()
        h = runner.submit(fetch, "https://example.com")
        await runner.arun()
        value = await h
        runner.shutdown()
        return value

    assert asyncio.run(main()) == {"url": "https://example.com"}


def test_scheduling_with_a_fake_epoch_clock() -> None:
    now = [datetime(2026, 12, 31, 23, 0).timestamp()]

    @pyworkflowy.task(name="cleanup")
    def cleanup() -> str:
        return "clean"

    with pyworkflowy.TaskRunner(on_task_error="continue") as runner:
        sched = schedule.Scheduler(runner=runner, tick_seconds=0.5, clock=lambda: now[0])
        every = sched.every(60).do(cleanup)
        hourly = sched.cron("0 * * * *").do(cleanup)
        once = sched.at(datetime(2026, 12, 31, 23, 59)).do(cleanup)
        assert sched.jobs() == [every, hourly, once]
        now[0] += 59 * 60  # 23:59: all three are due; missed minutes are not backfilled
        fired = sched.tick()
        assert len(fired) == 2 and once.cancelled and once.one_shot
        now[0] += 60  # midnight
        assert len(sched.tick()) == 2
        assert sched.cancel(every) and not sched.cancel(every)
        results = runner.run()
    assert results["cleanup"].value == "clean"
    assert isinstance(hourly.cron, schedule.CronExpression) and hourly.cron.minute == {0}
    with pytest.raises(ValueError, match="5 fields"):
        schedule.parse_cron("0 * * *")
