"""The Scheduler against a real TaskRunner, driven by a MockClock (no wall-clock assertions)."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import pyworkflowy_nb.schedule as schedule_module
from pyworkflowy_nb import TaskEvent, TaskRunner, TaskStatus, task
from pyworkflowy_nb.exceptions import CheckpointError
from pyworkflowy_nb.schedule import (
    Clock,
    CronExpression,
    FakeClock,
    Job,
    Scheduler,
    SystemClock,
    parse_cron,
)
from pyworkflowy_nb.testing import MockClock

HANG_GUARD = 30.0  # seconds; reached only when something is broken
NEW_YORK = ZoneInfo("America/New_York")
START = datetime(2024, 1, 1, 9, 0, 0)


@task
def add(a: int, b: int = 0) -> int:
    return a + b


@task
def explode() -> None:
    raise ValueError("scheduled failure")


def noop() -> None:
    return None


class Signal:
    """A task body that records calls and lets a test wait for the n-th one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.calls = 0

    def __call__(self) -> int:
        with self._changed:
            self.calls += 1
            self._changed.notify_all()
            return self.calls

    def wait_for(self, count: int) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self.calls >= count, HANG_GUARD), (
                f"expected {count} calls, saw {self.calls}"
            )


def scheduler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("pyworkflowy-scheduler")]


@pytest.fixture
def clock() -> MockClock:
    return MockClock(START)


@pytest.fixture
def runner() -> Iterator[TaskRunner]:
    with TaskRunner(on_task_error="continue") as bound:
        yield bound


# -- construction ---------------------------------------------------------------------------


def test_public_names() -> None:
    assert set(schedule_module.__all__) >= {
        "Scheduler",
        "Job",
        "parse_cron",
        "CronExpression",
        "FakeClock",
        "Clock",
        "SystemClock",
    }
    for name in schedule_module.__all__:
        if name != "Job":  # Job is the older name of ScheduledJob
            assert getattr(schedule_module, name).__name__ == name
    assert schedule_module.Job is schedule_module.ScheduledJob


def test_without_a_runner_the_error_names_the_fix() -> None:
    sched = Scheduler(clock=MockClock(START))  # 0.1.0: the runner may come later
    with pytest.raises(RuntimeError, match=r"runner=.*with TaskRunner\(\) as runner:"):
        sched.tick()


def test_finds_the_bound_runner(clock: MockClock) -> None:
    with TaskRunner() as bound:
        assert Scheduler(clock=clock).runner is bound


def test_explicit_runner_wins(clock: MockClock) -> None:
    explicit = TaskRunner()
    with TaskRunner():
        assert Scheduler(explicit, clock=clock).runner is explicit


@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, "1"])
def test_poll_interval_is_validated(runner: TaskRunner, bad: Any) -> None:
    # A string is the wrong type (TypeError); the numbers are out of range (ValueError).
    with pytest.raises(TypeError if isinstance(bad, str) else ValueError, match="poll_interval"):
        Scheduler(runner, poll_interval=bad)


def test_clock_must_have_now(runner: TaskRunner) -> None:
    with pytest.raises(TypeError, match="now"):
        Scheduler(runner, clock=object())  # type: ignore[arg-type]


# -- every ----------------------------------------------------------------------------------


def test_every_fires_after_its_interval_and_passes_arguments(
    runner: TaskRunner, clock: MockClock
) -> None:
    sched = Scheduler(runner, clock=clock)
    job = sched.every(60).do(add, 2, b=3)
    assert job.kind == "every"
    assert job.next_fire == START + timedelta(seconds=60)
    clock.advance(59.9)
    assert sched.tick() == []
    clock.advance(0.1)
    handles = sched.tick()
    assert len(handles) == 1
    assert job.last_handle is handles[0]
    assert job.next_fire == START + timedelta(seconds=120)
    runner.run()
    assert handles[0].result() == 5
    assert handles[0].status is TaskStatus.COMPLETED


def test_every_does_not_backfill_and_drifts_from_the_firing_tick(
    runner: TaskRunner, clock: MockClock
) -> None:
    sched = Scheduler(runner, clock=clock)
    job = sched.every(timedelta(seconds=10)).do(noop)
    clock.advance(95)  # nine periods missed
    assert len(sched.tick()) == 1
    assert sched.tick() == []
    assert job.fired == 1
    # Next firing is measured from the tick that fired, not from the original grid.
    assert job.next_fire == START + timedelta(seconds=105)


@pytest.mark.parametrize(
    ("seconds", "error"),
    [
        (0, ValueError),
        (-5, ValueError),
        (math.nan, ValueError),
        (math.inf, ValueError),
        (timedelta(0), ValueError),
        ("60", TypeError),
        (True, TypeError),
        (None, TypeError),
    ],
)
def test_every_validates_its_interval(runner: TaskRunner, seconds: Any, error: type) -> None:
    sched = Scheduler(runner, clock=MockClock(START))
    with pytest.raises(error, match="every"):
        sched.every(seconds)


# -- cron -----------------------------------------------------------------------------------


def test_cron_fires_on_the_expression_and_never_backfills(
    runner: TaskRunner, clock: MockClock
) -> None:
    clock.set(datetime(2024, 1, 1, 10, 7, 30))
    sched = Scheduler(runner, clock=clock)
    job = sched.cron("*/15 * * * *").do(noop)
    assert job.kind == "cron"
    assert isinstance(job.expression, CronExpression)
    assert job.next_fire == datetime(2024, 1, 1, 10, 15)
    clock.set(datetime(2024, 1, 1, 10, 15, 0, 200))
    assert len(sched.tick()) == 1
    assert job.next_fire == datetime(2024, 1, 1, 10, 30)
    clock.set(datetime(2024, 1, 1, 12, 5))  # 10:30 .. 12:00 all missed
    assert len(sched.tick()) == 1
    assert job.next_fire == datetime(2024, 1, 1, 12, 15)
    assert job.fired == 2


def test_cron_accepts_aliases_and_parsed_expressions(runner: TaskRunner, clock: MockClock) -> None:
    sched = Scheduler(runner, clock=clock)
    hourly = sched.cron("@hourly").do(noop)
    parsed = sched.cron(parse_cron("30 9 * * *")).do(noop)
    assert hourly.next_fire == datetime(2024, 1, 1, 10, 0)
    assert parsed.next_fire == datetime(2024, 1, 1, 9, 30)


def test_cron_bad_expression_names_field_and_token(runner: TaskRunner) -> None:
    sched = Scheduler(runner, clock=MockClock(START))
    with pytest.raises(ValueError, match=r"cron field 'hour' token '25'"):
        sched.cron("0 25 * * *")


# -- at -------------------------------------------------------------------------------------


def test_at_fires_once_and_then_leaves_the_job_list(runner: TaskRunner, clock: MockClock) -> None:
    sched = Scheduler(runner, clock=clock)
    when = START + timedelta(hours=2)
    job = sched.at(when).do(add, 1)
    assert job.kind == "at" and job.next_fire == when and job.active
    assert sched.jobs == [job]
    clock.set(when - timedelta(seconds=1))
    assert sched.tick() == []
    clock.set(when)
    assert len(sched.tick()) == 1
    # 0.1.0: a fired one-shot reads cancelled
    assert job.next_fire is None and not job.active and job.cancelled
    assert sched.jobs == []
    clock.advance(3600)
    assert sched.tick() == []
    assert job.fired == 1
    assert job.last_fired == when


def test_at_in_the_past_fires_on_the_next_tick(runner: TaskRunner, clock: MockClock) -> None:
    sched = Scheduler(runner, clock=clock)
    job = sched.at(START - timedelta(days=1)).do(noop)
    assert len(sched.tick()) == 1
    assert job.fired == 1


def test_at_naive_time_is_read_in_the_clocks_zone(runner: TaskRunner) -> None:
    clock = MockClock(datetime(2024, 6, 1, 8, 0, tzinfo=NEW_YORK))
    sched = Scheduler(runner, clock=clock)
    job = sched.at(datetime(2024, 6, 1, 9, 0)).do(noop)
    assert job.next_fire is not None
    assert job.next_fire.astimezone(UTC) == datetime(2024, 6, 1, 13, 0, tzinfo=UTC)


def test_at_aware_time_with_a_naive_clock_is_refused(runner: TaskRunner, clock: MockClock) -> None:
    sched = Scheduler(runner, clock=clock)
    with pytest.raises(ValueError, match="naive"):
        sched.at(datetime(2024, 6, 1, 9, 0, tzinfo=UTC)).do(noop)
    assert sched.jobs == []


def test_at_needs_a_datetime(runner: TaskRunner, clock: MockClock) -> None:
    sched = Scheduler(runner, clock=clock)
    with pytest.raises(TypeError, match="datetime"):
        sched.at("2024-06-01 09:00")  # type: ignore[arg-type]


# -- jobs as objects ------------------------------------------------------------------------


def test_jobs_are_listed_inspected_and_cancelled(runner: TaskRunner, clock: MockClock) -> None:
    sched = Scheduler(runner, clock=clock)
    first = sched.every(10).do(add, 1)
    second = sched.cron("* * * * *", name="minutely").do(noop)
    third = sched.at(START + timedelta(seconds=5)).do(noop)
    assert sched.jobs == [first, second, third]
    assert len(sched) == 3 and list(sched) == [first, second, third]
    assert first.name == add.name
    assert second.name == "minutely"
    assert third.name == "noop"
    assert sched.next_fire() == START + timedelta(seconds=5)
    assert "every 10s" in repr(first) and "minutely" in repr(second)
    assert first.cancel() is True
    assert first.cancel() is False
    assert first.cancelled and first.next_fire is None and not first.active
    assert sched.jobs == [second, third]
    clock.advance(60)
    fired = sched.tick()
    assert len(fired) == 2  # second and third; the cancelled first stays silent
    assert first.fired == 0
    assert fired == [third.last_handle, second.last_handle]  # in next_fire order


def test_tick_returns_handles_in_firing_order(runner: TaskRunner, clock: MockClock) -> None:
    sched = Scheduler(runner, clock=clock)
    late = sched.every(30).do(add, 30)
    early = sched.every(10).do(add, 10)
    clock.advance(30)
    handles = sched.tick()
    assert handles == [early.last_handle, late.last_handle]


def test_many_jobs_fire_exactly_when_due(runner: TaskRunner, clock: MockClock) -> None:
    sched = Scheduler(runner, clock=clock)
    jobs = [sched.every(i + 1).do(noop) for i in range(1000)]
    clock.advance(10)
    assert len(sched.tick()) == 10
    assert [job.fired for job in jobs[:11]] == [1] * 10 + [0]
    clock.advance(10)
    # Intervals 1-20 are due now (those that fired once are due again: next = 10 + interval).
    assert len(sched.tick()) == 20


def test_do_needs_a_callable(runner: TaskRunner, clock: MockClock) -> None:
    sched = Scheduler(runner, clock=clock)
    with pytest.raises(TypeError, match="not its result"):
        sched.every(5).do(add(1, 2))  # type: ignore[arg-type]


# -- failures -------------------------------------------------------------------------------


def test_a_failing_job_does_not_stop_the_others(runner: TaskRunner, clock: MockClock) -> None:
    sched = Scheduler(runner, clock=clock)
    bad = sched.every(10).do(explode)
    good = sched.every(10).do(add, 7)
    for _ in range(3):
        clock.advance(10)
        assert len(sched.tick()) == 2
        runner.run()
    assert bad.fired == good.fired == 3
    assert all(h.status is TaskStatus.FAILED for h in bad.handles)
    assert [h.result() for h in good.handles] == [7, 7, 7]


def test_a_failed_submission_is_logged_and_recorded(
    tmp_path: Path, clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    # The JSON checkpointer refuses an unserialisable argument at submit time.
    with TaskRunner(on_task_error="continue", checkpoint_path=tmp_path / "state.json") as runner:
        sched = Scheduler(runner, clock=clock)
        broken = sched.every(10).do(add, object())
        fine = sched.every(10).do(add, 1)
        clock.advance(10)
        with caplog.at_level(logging.WARNING, logger="pyworkflowy_nb.schedule"):
            handles = sched.tick()
        assert handles == [fine.last_handle]
        assert isinstance(broken.last_error, CheckpointError)
        assert broken.fired == 0 and broken.active
        assert broken.next_fire == START + timedelta(seconds=20)
        assert any("could not be submitted" in r.getMessage() for r in caplog.records)
        runner.run()
        assert fine.last_handle is not None and fine.last_handle.result() == 1


def test_background_scheduler_survives_failing_jobs(runner: TaskRunner, clock: MockClock) -> None:
    signal = Signal()
    sched = Scheduler(runner, clock=clock, poll_interval=0.01)
    bad = sched.every(10).do(explode)
    sched.every(10).do(signal)
    sched.start()
    try:
        for round_number in (1, 2, 3):
            clock.advance(10)
            signal.wait_for(round_number)
    finally:
        sched.stop()
    assert bad.fired == 3
    for handle in bad.handles:
        with pytest.raises(ValueError, match="scheduled failure"):
            handle.result(timeout=HANG_GUARD)


def test_background_scheduler_survives_a_raising_runner(clock: MockClock) -> None:
    # With on_task_error="raise" a failure aborts that run; a later firing starts a new one.
    signal = Signal()
    failed = threading.Event()
    reported = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "ended with an error" in record.getMessage():
                reported.set()

    watch = Watch()
    schedule_logger = logging.getLogger("pyworkflowy_nb.schedule")
    schedule_logger.addHandler(watch)
    try:
        with TaskRunner(on_task_error="raise") as runner:
            runner.subscribe(lambda event: failed.set() if event.kind == "failed" else None)
            sched = Scheduler(runner, clock=clock, poll_interval=0.01)
            bad = sched.every(10).do(explode)
            clock.advance(10)
            sched.start()
            try:
                assert failed.wait(HANG_GUARD)
                # The aborted run's future reports through the log once that run has wound down.
                assert reported.wait(HANG_GUARD)
                bad.cancel()
                sched.every(10).do(signal)
                clock.advance(10)
                signal.wait_for(1)
            finally:
                sched.stop()
    finally:
        schedule_logger.removeHandler(watch)
    assert bad.fired == 1
    assert sched.jobs[0].fired == 1


class FlakyClock:
    """A MockClock whose next reading can be made to raise."""

    def __init__(self, inner: MockClock) -> None:
        self.inner = inner
        self.failures = 0

    def now(self) -> datetime:
        if self.failures:
            self.failures -= 1
            raise OSError("clock unavailable")
        return self.inner.now()


def test_background_loop_survives_a_broken_clock(runner: TaskRunner, clock: MockClock) -> None:
    signal = Signal()
    logged = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "scheduler tick failed" in record.getMessage():
                logged.set()

    watch = Watch()
    schedule_logger = logging.getLogger("pyworkflowy_nb.schedule")
    schedule_logger.addHandler(watch)
    flaky = FlakyClock(clock)
    sched = Scheduler(runner, clock=flaky, poll_interval=0.01)
    sched.every(10).do(signal)
    try:
        flaky.failures = 3
        sched.start()
        assert logged.wait(HANG_GUARD)
        clock.advance(10)
        signal.wait_for(1)
        assert sched.running
    finally:
        sched.stop()
        schedule_logger.removeHandler(watch)


# -- running in the background ---------------------------------------------------------------


def test_start_runs_fired_jobs_without_a_run_going(runner: TaskRunner, clock: MockClock) -> None:
    signal = Signal()
    sched = Scheduler(runner, clock=clock, poll_interval=0.01)
    job = sched.every(60).do(signal)
    with sched:
        sched.start()
        assert sched.running
        clock.advance(60)
        signal.wait_for(1)
    assert not sched.running
    assert job.last_handle is not None
    assert job.last_handle.result(timeout=HANG_GUARD) == 1


def test_stop_wakes_and_joins_the_thread(runner: TaskRunner, clock: MockClock) -> None:
    # An hour-long poll interval: stop() can only return promptly if it wakes the thread.
    sched = Scheduler(runner, clock=clock, poll_interval=3600)
    sched.every(60).do(noop)
    sched.start()
    assert len(scheduler_threads()) == 1
    thread = scheduler_threads()[0]
    assert thread.daemon
    sched.stop(timeout=HANG_GUARD)
    assert not thread.is_alive()
    assert scheduler_threads() == []
    assert not sched.running


def test_start_twice_is_refused_and_restart_after_stop_works(
    runner: TaskRunner, clock: MockClock
) -> None:
    signal = Signal()
    sched = Scheduler(runner, clock=clock, poll_interval=0.01)
    sched.every(10).do(signal)
    sched.start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            sched.start()
    finally:
        sched.stop()
    clock.advance(10)  # while stopped: nothing fires
    assert signal.calls == 0
    sched.start()
    try:
        signal.wait_for(1)
    finally:
        sched.stop()
    assert scheduler_threads() == []


def test_jobs_fired_during_a_run_are_executed_by_that_run(
    runner: TaskRunner, clock: MockClock
) -> None:
    release = threading.Event()
    started = threading.Event()
    runs: list[str] = []

    def on_event(event: TaskEvent) -> None:
        if event.kind in ("run-started", "run-finished"):
            runs.append(event.kind)

    # On the thread backend, so the run's loop stays free while it waits.
    @task(backend="thread")
    def slow() -> str:
        started.set()
        assert release.wait(HANG_GUARD)
        return "slow"

    runner.subscribe(on_event)
    runner.submit(slow)
    future = runner.run_in_background()
    assert started.wait(HANG_GUARD)
    sched = Scheduler(runner, clock=clock)
    sched.every(5).do(add, 40, b=2)
    clock.advance(5)
    (fired,) = sched.tick()
    assert runner.running
    release.set()
    results = future.result(timeout=HANG_GUARD)
    assert fired.key in results
    assert results[fired.key].status is TaskStatus.COMPLETED
    assert results[fired.key].value == 42
    assert runs == ["run-started", "run-finished"]  # one run did it all


def test_background_fires_into_the_current_run(runner: TaskRunner, clock: MockClock) -> None:
    release = threading.Event()
    started = threading.Event()
    signal = Signal()

    @task(backend="thread")
    def slow() -> None:
        started.set()
        assert release.wait(HANG_GUARD)

    runner.submit(slow)
    future = runner.run_in_background()
    assert started.wait(HANG_GUARD)
    sched = Scheduler(runner, clock=clock, poll_interval=0.01)
    job = sched.every(5).do(signal)
    sched.start()
    try:
        clock.advance(5)
        signal.wait_for(1)  # runs while the slow task still holds the run open
        assert runner.running
        assert job.last_handle is not None and job.last_handle.result(timeout=HANG_GUARD) == 1
        assert runner.running  # the slow task still holds the same run open
    finally:
        release.set()
        sched.stop()
    assert future.result(timeout=HANG_GUARD).ok


def test_arun_on_the_callers_loop(runner: TaskRunner, clock: MockClock) -> None:
    async def main() -> list[int]:
        sched = Scheduler(runner, clock=clock, poll_interval=0.01)
        job = sched.every(30).do(add, 1, b=1)
        ticking = asyncio.create_task(sched.arun())
        values = []
        for _ in range(2):
            before = job.fired
            clock.advance(30)
            while job.fired == before:
                await asyncio.sleep(0.01)
            assert job.last_handle is not None
            values.append(await job.last_handle)
        with pytest.raises(RuntimeError, match="already running"):
            sched.start()
        sched.stop()
        await asyncio.wait_for(ticking, HANG_GUARD)
        assert not sched.running
        return values

    assert asyncio.run(main()) == [2, 2]
    assert scheduler_threads() == []


def test_arun_stops_when_cancelled(runner: TaskRunner, clock: MockClock) -> None:
    async def main() -> bool:
        sched = Scheduler(runner, clock=clock, poll_interval=3600)
        ticking = asyncio.create_task(sched.arun())
        await asyncio.sleep(0)
        assert sched.running
        ticking.cancel()
        with pytest.raises(asyncio.CancelledError):
            await ticking
        return sched.running

    assert asyncio.run(main()) is False


# -- time zones -----------------------------------------------------------------------------


def test_cron_across_spring_forward_fires_once_at_the_gap_end(runner: TaskRunner) -> None:
    clock = MockClock(datetime(2024, 3, 9, 12, 0, tzinfo=NEW_YORK))
    sched = Scheduler(runner, clock=clock)
    job = sched.cron("30 2 * * *").do(noop)
    fired_at = []
    for _ in range(48 * 6):  # two days in ten-minute steps
        clock.advance(600)
        if sched.tick():
            fired_at.append(clock.now())
    assert [(d.day, d.hour, d.minute) for d in fired_at] == [(10, 3, 0), (11, 2, 30)]
    assert job.fired == 2


def test_cron_across_fall_back_fires_once(runner: TaskRunner) -> None:
    clock = MockClock(datetime(2024, 11, 2, 12, 0, tzinfo=NEW_YORK))
    sched = Scheduler(runner, clock=clock)
    sched.cron("30 1 * * *").do(noop)
    fired_at = []
    for _ in range(48 * 6):
        clock.advance(600)
        if sched.tick():
            fired_at.append(clock.now().astimezone(UTC))
    assert fired_at == [
        datetime(2024, 11, 3, 5, 30, tzinfo=UTC),  # 01:30 EDT; the 01:30 EST repeat is skipped
        datetime(2024, 11, 4, 6, 30, tzinfo=UTC),
    ]


def test_every_keeps_elapsed_time_across_fall_back(runner: TaskRunner) -> None:
    clock = MockClock(datetime(2024, 11, 3, 0, 0, tzinfo=NEW_YORK))
    sched = Scheduler(runner, clock=clock)
    job = sched.every(600).do(noop)
    for _ in range(18):  # three hours of elapsed time, across the repeated hour
        clock.advance(600)
        sched.tick()
    assert job.fired == 18


# -- clocks ---------------------------------------------------------------------------------


def test_mock_clock_moves_only_when_told() -> None:
    clock = MockClock(START)
    assert clock.now() == clock.now() == START
    clock.advance(1.5)
    clock.advance(timedelta(minutes=1))
    assert clock.now() == START + timedelta(seconds=61.5)
    clock.set(START - timedelta(days=1))
    assert clock.now() == START - timedelta(days=1)
    assert isinstance(clock, Clock)


def test_mock_clock_aware_advances_by_elapsed_time_across_dst() -> None:
    clock = MockClock(datetime(2024, 3, 10, 1, 30, tzinfo=NEW_YORK))
    clock.advance(timedelta(hours=1))
    assert (clock.now().hour, clock.now().minute) == (3, 30)  # 02:30 does not exist
    assert clock.now().tzinfo is NEW_YORK


@pytest.mark.parametrize(
    ("call", "error", "pattern"),
    [
        (lambda c: c.advance(-1), ValueError, "use set"),
        (lambda c: c.advance("1"), TypeError, "seconds"),
        (lambda c: c.set(datetime(2024, 1, 1, tzinfo=UTC)), ValueError, "naive"),
        (lambda c: c.set("2024-01-01"), TypeError, "datetime"),
    ],
)
def test_mock_clock_rejects_bad_input(call: Any, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        call(MockClock(START))


def test_fake_clock_is_a_deprecated_mock_clock() -> None:
    with pytest.warns(DeprecationWarning, match="MockClock"):
        old = FakeClock(START)
    assert isinstance(old, MockClock) and old.now() == START
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="datetime"):
        FakeClock(0)  # type: ignore[arg-type]


def test_system_clock_is_aware() -> None:
    assert SystemClock().now().tzinfo is not None
    pinned = SystemClock(NEW_YORK)
    assert pinned.tz is NEW_YORK
    assert pinned.now().tzinfo is NEW_YORK
    assert isinstance(pinned, Clock)


def test_default_clock_is_the_system_clock(runner: TaskRunner) -> None:
    sched = Scheduler(runner)
    assert isinstance(sched.clock, SystemClock)
    job = sched.every(3600).do(noop)
    assert job.next_fire is not None and job.next_fire.tzinfo is not None
    assert isinstance(job, Job)
