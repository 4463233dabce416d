"""MockClock and the virtual-time loop: runs that wait minutes take milliseconds of real time.

Every assertion is on virtual time (the clock's readings, handle timestamps, event times);
real time only bounds waits so a broken build fails instead of hanging.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from engine_helpers import HANG_GUARD

from pyworkflowy_nb import EventLog, TaskRunner, TaskStatus, task
from pyworkflowy_nb.exceptions import TaskTimeoutError
from pyworkflowy_nb.schedule import Clock, Scheduler
from pyworkflowy_nb.testing import MockClock

T0 = 1_000_000.0


def jumping() -> MockClock:
    return MockClock(start=T0, autojump_threshold=0)


# -- the clock on its own ---------------------------------------------------------------------


def test_time_moves_only_when_told() -> None:
    clock = MockClock(start=T0)
    assert clock.time() == T0
    clock.advance(70)
    clock.advance(timedelta(seconds=0.5))
    assert clock.time() == T0 + 70.5
    clock.set(T0 + 100)
    assert clock.time() == T0 + 100
    assert isinstance(clock, Clock)


def test_default_start_is_a_fixed_instant() -> None:
    assert MockClock().now() == datetime(2024, 1, 1, tzinfo=UTC)


def test_now_keeps_the_kind_of_the_start() -> None:
    naive = MockClock(datetime(2024, 1, 1, 9, 0))
    naive.advance(90)
    assert naive.now() == datetime(2024, 1, 1, 9, 1, 30)
    assert naive.time() == datetime(2024, 1, 1, 9, 1, 30, tzinfo=UTC).timestamp()
    zone = ZoneInfo("America/New_York")
    aware = MockClock(datetime(2024, 3, 10, 1, 30, tzinfo=zone))
    aware.advance(3600)  # across the spring-forward gap: elapsed time, not wall time
    assert (aware.now().hour, aware.now().minute) == (3, 30)
    seconds = MockClock(start=0.0, tz=zone)
    assert seconds.now() == datetime(1969, 12, 31, 19, 0, tzinfo=zone)


def test_timers_fire_in_order_each_at_its_own_time() -> None:
    clock = MockClock(start=0.0)
    seen: list[tuple[str, float]] = []
    clock.call_later(2.0, lambda: seen.append(("b", clock.time())))
    clock.call_later(1.0, lambda: seen.append(("a", clock.time())))
    dropped = clock.call_later(1.5, lambda: seen.append(("x", clock.time())))
    dropped.cancel()
    assert [t.due for t in clock.timers()] == [1.0, 2.0]
    clock.advance(5)
    assert seen == [("a", 1.0), ("b", 2.0)]
    assert clock.time() == 5.0 and clock.timers() == []


def test_event_wait_counts_virtual_seconds() -> None:
    clock = MockClock(start=0.0)
    event = clock.event()
    outcome: list[bool] = []
    waiter = threading.Thread(target=lambda: outcome.append(event.wait(10)))
    waiter.start()
    clock.advance(9)
    assert waiter.is_alive() or outcome == [True]  # 9 s is not enough (unless woken early)
    clock.advance(1)
    waiter.join(HANG_GUARD)
    assert outcome == [False]  # timed out, at virtual 10 s
    event.set()
    assert event.wait(0) and event.is_set()


def test_an_autojumping_clock_wakes_a_lone_waiter_at_its_deadline() -> None:
    clock = jumping()
    assert clock.event().wait(3600) is False
    assert clock.time() == T0 + 3600


@pytest.mark.parametrize(("call", "error", "pattern"), [
    (lambda: MockClock(start="now"), TypeError, "epoch seconds or a datetime"),
    (lambda: MockClock(start=math.nan), TypeError, "epoch seconds"),
    (lambda: MockClock(autojump_threshold=-1), ValueError, "autojump_threshold"),
    (lambda: MockClock(tz="UTC"), TypeError, "tzinfo"),
    (lambda: MockClock(datetime(2024, 1, 1, tzinfo=UTC), tz=UTC), ValueError, "zone"),
    (lambda: MockClock().advance(-1), ValueError, "use set"),
    (lambda: MockClock().set("tomorrow"), TypeError, "datetime or epoch seconds"),
    (lambda: TaskRunner(clock="fast"), TypeError, r"TaskRunner\(clock=...\)"),
])
def test_bad_input_is_named(call: object, error: type[Exception], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        call()  # type: ignore[operator]


# -- runners on virtual time ------------------------------------------------------------------


def test_a_70_second_exponential_backoff_runs_on_virtual_time() -> None:
    clock = jumping()
    attempts: list[float] = []

    @task(retries=3, backoff="exponential", backoff_base=10.0, backoff_max=60.0)
    def flaky() -> int:
        attempts.append(clock.time())
        if len(attempts) < 4:
            raise ConnectionError("not yet")
        return len(attempts)

    with TaskRunner(clock=clock) as runner:
        log = EventLog(runner)
        h = runner.submit(flaky)
        runner.run()
    assert h.result() == 4
    assert [t - T0 for t in attempts] == [0.0, 10.0, 30.0, 70.0]  # waits of 10, 20, 40 s
    assert (h.started_at, h.finished_at) == (T0, T0 + 70.0)
    retrying = [e.time - T0 for e in log.events if e.kind == "retrying"]
    assert retrying == [0.0, 10.0, 30.0]
    assert [e.time - T0 for e in log.events if e.kind == "completed"] == [70.0]


def test_a_30_second_timeout_of_an_async_body_sleeping_60() -> None:
    clock = jumping()

    @task(timeout=30)
    async def stuck() -> str:
        await asyncio.sleep(60)
        return "late"

    @task
    async def patient() -> float:
        await asyncio.sleep(60)
        return clock.time()

    with TaskRunner(clock=clock, on_task_error="continue") as runner:
        slow, fine = runner.submit(stuck), runner.submit(patient)
        runner.run()
    assert slow.status is TaskStatus.FAILED
    error = slow.exception()
    assert isinstance(error, TaskTimeoutError) and error.timeout == 30
    assert slow.finished_at is not None and slow.started_at == T0
    assert slow.finished_at - slow.started_at == 30.0
    assert fine.result() == T0 + 60.0 and fine.finished_at == T0 + 60.0


def test_the_clock_does_not_jump_while_a_thread_runs_an_attempt() -> None:
    clock = jumping()
    release = threading.Event()
    seen_while_running: list[float] = []

    @task(backend="thread", timeout=5)
    def worker() -> str:
        assert release.wait(HANG_GUARD)
        seen_while_running.append(clock.time())
        return "done"

    @task
    async def sleeper() -> float:
        await asyncio.sleep(100)  # would be jumped to at once if the worker were forgotten
        return clock.time()

    with TaskRunner(clock=clock) as runner:
        w, s = runner.submit(worker), runner.submit(sleeper)
        future = runner.run_in_background()
        time.sleep(0.2)  # real time passes; virtual time must not, a real worker is busy
        assert clock.time() == T0
        release.set()
        future.result(HANG_GUARD)
    assert w.result() == "done" and seen_while_running == [T0]  # not timed out at T0 + 5
    assert s.result() == T0 + 100.0


def test_a_thread_attempt_past_its_virtual_timeout_fails() -> None:
    clock = MockClock(start=T0)  # no autojump: the test moves time itself
    started, release = threading.Event(), threading.Event()

    @task(backend="thread", timeout=5)
    def worker() -> None:
        started.set()
        release.wait(HANG_GUARD)

    with TaskRunner(clock=clock, on_task_error="continue") as runner:
        h = runner.submit(worker)
        future = runner.run_in_background()
        assert started.wait(HANG_GUARD)
        clock.advance(5)
        assert h.wait(HANG_GUARD)
        release.set()
        future.result(HANG_GUARD)
    assert isinstance(h.exception(), TaskTimeoutError)
    assert h.finished_at == T0 + 5


def test_advancing_by_hand_wakes_a_sleeping_task() -> None:
    clock = MockClock(start=T0)
    started = threading.Event()

    @task
    async def nap() -> float:
        started.set()
        await asyncio.sleep(10)
        return clock.time()

    with TaskRunner(clock=clock) as runner:
        h = runner.submit(nap)
        future = runner.run_in_background()
        assert started.wait(HANG_GUARD)
        clock.advance(4)
        assert not h.wait(0.05)  # 4 of 10 virtual seconds: still asleep
        clock.advance(6)
        future.result(HANG_GUARD)
    assert h.result() == T0 + 10


def test_arun_inside_a_running_loop_uses_the_virtual_loop_thread() -> None:
    clock = jumping()

    @task
    async def nap() -> tuple[float, int]:
        await asyncio.sleep(3600)
        return clock.time(), threading.get_ident()

    async def main() -> tuple[float, int, float]:
        outer = asyncio.get_running_loop().time()
        with TaskRunner(clock=clock) as runner:
            h = runner.submit(nap)
            await runner.arun()
        return *h.result(), asyncio.get_running_loop().time() - outer

    when, thread, outer_elapsed = asyncio.run(main())
    assert when == T0 + 3600 and thread != threading.get_ident()
    assert outer_elapsed < 3600  # the caller's loop kept real time


def test_a_scheduler_and_its_runner_share_one_clock() -> None:
    clock = jumping()
    fired: list[float] = []
    done = threading.Event()

    def job() -> None:
        fired.append(clock.time())
        if len(fired) == 3:
            done.set()  # the scheduler may fire once more before stop() lands

    runner = TaskRunner(clock=clock)
    sched = Scheduler(runner, clock=clock)
    sched.every(60).do(job)
    sched.start()
    try:
        assert done.wait(HANG_GUARD)
    finally:
        sched.stop()
    assert [t - T0 for t in fired[:3]] == [60.0, 120.0, 180.0]
    (job_,) = sched.jobs
    assert [h.started_at for h in job_.handles[:3]] == fired[:3]
    runner.shutdown()


def test_a_scheduler_arun_waits_on_virtual_time() -> None:
    clock = jumping()
    fired: list[float] = []

    async def main() -> None:
        runner = TaskRunner(clock=clock)
        sched = Scheduler(runner, clock=clock)
        sched.every(30).do(lambda: fired.append(clock.time()))
        loop_task = asyncio.create_task(sched.arun())
        while len(fired) < 2:
            await asyncio.sleep(0.01)
        sched.stop()
        await asyncio.wait_for(loop_task, HANG_GUARD)
        runner.shutdown()

    asyncio.run(asyncio.wait_for(main(), HANG_GUARD))
    assert [t - T0 for t in fired[:2]] == [30.0, 60.0]


def test_a_serving_runner_keeps_virtual_time_between_submissions() -> None:
    clock = jumping()

    @task
    async def nap(seconds: float) -> float:
        await asyncio.sleep(seconds)
        return clock.time()

    with TaskRunner(clock=clock) as runner:
        serving = runner.serve_in_background()
        assert runner.submit(nap, 10).result(timeout=HANG_GUARD) == T0 + 10
        assert runner.submit(nap, 5).result(timeout=HANG_GUARD) == T0 + 15
        runner.stop()
        serving.result(HANG_GUARD)


def test_aserve_under_a_mock_clock_serves_on_the_virtual_loop_thread() -> None:
    clock = jumping()

    @task
    async def nap() -> float:
        await asyncio.sleep(600)
        return clock.time()

    async def main() -> float:
        runner = TaskRunner(clock=clock)
        serving = asyncio.create_task(runner.aserve())
        h = runner.submit(nap)
        value = await asyncio.wait_for(h, HANG_GUARD)  # a handle is awaitable from any loop
        runner.stop()
        await asyncio.wait_for(serving, HANG_GUARD)
        runner.shutdown()
        return value

    assert asyncio.run(main()) == T0 + 600
