"""pyWorkflowy 0.1.0's ``pyworkflowy.schedule``, as its users call it: cron and the Scheduler."""

from __future__ import annotations

import dataclasses
import inspect
import threading
from datetime import UTC, datetime, timedelta

import pytest
from engine_helpers import HANG_GUARD, wait_until

import pyworkflowy_nb as pyworkflowy
from pyworkflowy_nb.schedule import (
    CronExpression,
    EpochClock,
    ScheduledJob,
    Scheduler,
    parse_cron,
)

# -- cron ------------------------------------------------------------------------------------


def test_parse_cron_gives_frozenset_fields_and_the_source() -> None:
    expr = parse_cron("*/15 9-17 1,15 */3 1-5")
    assert isinstance(expr, CronExpression)
    assert expr.minute == frozenset({0, 15, 30, 45})
    assert expr.hour == frozenset(range(9, 18))
    assert expr.day_of_month == frozenset({1, 15})
    assert expr.month == frozenset({1, 4, 7, 10})
    assert expr.day_of_week == frozenset({1, 2, 3, 4, 5})
    assert all(isinstance(getattr(expr, f), frozenset)
               for f in ("minute", "hour", "day_of_month", "month", "day_of_week"))
    assert expr.source == "*/15 9-17 1,15 */3 1-5"
    with pytest.raises(dataclasses.FrozenInstanceError):
        expr.source = "* * * * *"  # type: ignore[misc]


def test_day_of_week_counts_from_sunday() -> None:
    assert parse_cron("0 0 * * 0").day_of_week == frozenset({0})
    assert parse_cron("0 0 * * 7").day_of_week == frozenset({0})  # 7 is Sunday too
    sunday = datetime(2024, 1, 7, 0, 0)
    assert parse_cron("0 0 * * 0").matches(sunday)
    assert not parse_cron("0 0 * * 1").matches(sunday)


def test_matches_and_next_after() -> None:
    expr = parse_cron("30 9 * * *")
    assert expr.matches(datetime(2024, 5, 1, 9, 30))
    assert not expr.matches(datetime(2024, 5, 1, 9, 31))
    assert expr.next_after(datetime(2024, 5, 1, 9, 30)) == datetime(2024, 5, 2, 9, 30)
    assert expr.next_after(datetime(2024, 5, 1, 8, 0)) == datetime(2024, 5, 1, 9, 30)


@pytest.mark.parametrize("expr", ["* * * *", "* * * * * *", "0"])
def test_a_wrong_field_count_is_a_value_error_saying_five_fields(expr: str) -> None:
    with pytest.raises(ValueError, match="5 fields") as info:
        parse_cron(expr)
    assert repr(expr) in str(info.value)


def test_restricted_day_fields_are_ored_as_in_standard_cron() -> None:
    # 0.1.0 required both; standard cron (and this package) fires when either matches.
    expr = parse_cron("0 12 13 * 5")  # the 13th, or any Friday
    friday_the_6th = datetime(2024, 9, 6, 12, 0)
    friday_the_13th = datetime(2024, 9, 13, 12, 0)
    sunday_the_13th = datetime(2024, 10, 13, 12, 0)
    assert expr.matches(friday_the_6th) and expr.matches(sunday_the_13th)
    assert expr.matches(friday_the_13th)
    assert expr.next_after(datetime(2024, 9, 1)) == friday_the_6th


# -- the Scheduler ---------------------------------------------------------------------------


class Ticker:
    """A 0.1.0-style clock: a zero-argument callable returning epoch seconds."""

    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


# Noon of the machine's zone: cron fields are matched on the local wall clock.
START = datetime(2024, 1, 1, 12, 0).timestamp()


@pyworkflowy.task(name="beat")
def beat(n: int = 0) -> int:
    return n


def test_constructor_defaults_and_tick_seconds_check() -> None:
    params = inspect.signature(Scheduler).parameters
    assert {n: params[n].default for n in ("runner", "tick_seconds", "clock")} == {
        "runner": None, "tick_seconds": 0.5, "clock": None}
    assert params["tick_seconds"].kind is inspect.Parameter.KEYWORD_ONLY
    for bad in (0, -1.0):
        with pytest.raises(ValueError, match="tick_seconds"):
            Scheduler(runner=pyworkflowy.TaskRunner(), tick_seconds=bad)


def test_scheduler_without_a_runner_finds_one_at_tick_time() -> None:
    clock = Ticker(START)
    sched = Scheduler(clock=clock)  # no runner yet: fine
    job = sched.every(10).do(beat, 1)
    clock.now += 10
    with pytest.raises(RuntimeError, match="runner") as info:
        sched.tick()
    assert "Scheduler(runner=runner)" in str(info.value)
    assert job.next_fire == START + 10  # the failed tick did not consume the firing
    with pyworkflowy.TaskRunner() as runner:
        handles = sched.tick()
        runner.run()
    assert [h.result() for h in handles] == [1] and handles[0].runner is runner


def test_epoch_clock_drives_every_cron_and_at() -> None:
    clock = Ticker(START)
    runner = pyworkflowy.TaskRunner()
    sched = Scheduler(runner=runner, tick_seconds=0.1, clock=clock)
    every = sched.every(60).do(beat, 1)
    hourly = sched.cron("0 * * * *").do(beat, 2)
    once = sched.at(START + 90).do(beat, 3)
    by_date = sched.at(datetime(2024, 1, 1, 12, 30)).do(beat, 4)  # wall time, local zone
    assert every.next_fire == START + 60 and hourly.next_fire == START + 3600
    assert once.next_fire == START + 90 and by_date.next_fire == START + 1800
    assert sched.tick() == []
    clock.now = START + 90
    assert [h.args for h in sched.tick()] == [(1,), (3,)]
    clock.now = START + 3600
    assert sorted(h.args for h in sched.tick()) == [(1,), (2,), (4,)]
    results = runner.run()
    assert results["beat"].ok
    runner.shutdown()


def test_scheduled_job_fields() -> None:
    clock = Ticker(START)
    sched = Scheduler(runner=pyworkflowy.TaskRunner(), clock=clock)
    every = sched.every(timedelta(minutes=2)).do(beat, n=5)
    cron = sched.cron("*/5 * * * *").do(beat)
    once = sched.at(START + 30).do(beat)
    for job in (every, cron, once):
        assert isinstance(job, ScheduledJob)
        assert job.task is beat and isinstance(job.next_fire, float)
        assert job.last_handle is None and job.cancelled is False
    assert (every.args, every.kwargs, every.interval, every.cron, every.one_shot) == (
        (), {"n": 5}, 120.0, None, False)
    assert isinstance(cron.cron, CronExpression) and cron.cron.source == "*/5 * * * *"
    assert (cron.interval, cron.one_shot) == (None, False)
    assert (once.interval, once.cron, once.one_shot) == (None, None, True)
    clock.now = START + 120
    fired = sched.tick()
    assert every.last_handle in fired and once.last_handle in fired
    assert once.cancelled is True and once.next_fire is None  # a one-shot, once fired
    assert every.cancelled is False and every.next_fire == START + 240


def test_next_fire_is_epoch_seconds_and_still_reads_as_a_datetime() -> None:
    clock = Ticker(START)
    job = Scheduler(runner=pyworkflowy.TaskRunner(), clock=clock).every(60).do(beat)
    assert job.next_fire is not None
    assert job.next_fire - START == 60.0
    then = datetime.fromtimestamp(START + 60, UTC)
    assert job.next_fire == then  # the same instant, whatever the zone
    assert job.next_fire.astimezone(UTC).strftime("%H:%M") == then.strftime("%H:%M")
    assert job.next_fire.strftime("%H:%M") == "12:01"  # the clock's (local) wall time
    assert job.next_fire_at is not None and job.next_fire_at.timestamp() == START + 60


def test_jobs_is_a_method_and_still_reads_as_a_list() -> None:
    sched = Scheduler(runner=pyworkflowy.TaskRunner(), clock=Ticker(START))
    a = sched.every(1).do(beat)
    b = sched.cron("@daily").do(beat)
    assert sched.jobs() == [a, b] and type(sched.jobs()) is list
    assert sched.jobs == [a, b] and len(sched.jobs) == 2


def test_cancel_job_returns_whether_it_was_registered() -> None:
    sched = Scheduler(runner=pyworkflowy.TaskRunner(), clock=Ticker(START))
    other = Scheduler(runner=pyworkflowy.TaskRunner(), clock=Ticker(START))
    job = sched.every(1).do(beat)
    foreign = other.every(1).do(beat)
    assert sched.cancel(foreign) is False and not foreign.cancelled
    assert sched.cancel(job) is True
    assert job.cancelled and sched.jobs() == []
    assert sched.cancel(job) is False  # no longer registered


def test_every_zero_is_a_value_error() -> None:
    sched = Scheduler(runner=pyworkflowy.TaskRunner())
    for bad in (0, timedelta(0)):
        with pytest.raises(ValueError, match="every"):
            sched.every(bad)


def test_start_and_stop_with_wait_and_timeout() -> None:
    with pyworkflowy.TaskRunner(on_task_error="continue") as runner:
        sched = Scheduler(runner=runner, tick_seconds=0.02)
        fired = threading.Event()

        @pyworkflowy.task(name="signal")
        def signal() -> None:
            fired.set()

        job = sched.every(0.05).do(signal)
        sched.start()
        try:
            assert fired.wait(HANG_GUARD)
        finally:
            sched.stop(wait=True, timeout=HANG_GUARD)
        assert not sched.running
        wait_until(lambda: job.last_handle is not None and job.last_handle.done(), "the run")
        sched.start()
        sched.stop(wait=False)  # returns without joining the thread
        sched.stop(timeout=None)  # and this one joins it
        assert not sched.running


def test_start_without_a_runner_uses_the_one_bound_around_start() -> None:
    fired = threading.Event()

    @pyworkflowy.task(name="ping")
    def ping() -> None:
        fired.set()

    sched = Scheduler(tick_seconds=0.02)  # made outside any runner
    job = sched.every(0.05).do(ping)
    with pyworkflowy.TaskRunner() as runner:
        sched.start()  # its thread sees the runner bound here
        try:
            assert fired.wait(HANG_GUARD)
        finally:
            sched.stop(timeout=HANG_GUARD)
        handle = job.last_handle
        assert handle is not None and handle.runner is runner
        assert handle.wait(HANG_GUARD)


def test_a_fire_time_survives_copy_and_pickle() -> None:
    import copy
    import pickle

    # A UTC clock: the machine's zone may be read from a file, and such zones do not pickle.
    clock = EpochClock(Ticker(START), tz=UTC)
    job = Scheduler(runner=pyworkflowy.TaskRunner(), clock=clock).every(5).do(beat)
    when = job.next_fire
    assert when is not None
    for clone in (copy.copy(when), copy.deepcopy(when), pickle.loads(pickle.dumps(when))):
        assert clone == when and clone.at == when.at == job.next_fire_at


def test_interval_is_seconds_and_still_reads_as_a_timedelta() -> None:
    sched = Scheduler(runner=pyworkflowy.TaskRunner(), clock=Ticker(START))
    job = sched.every(timedelta(minutes=1, seconds=30)).do(beat)
    interval = job.interval
    assert interval is not None
    assert interval == 90.0 and isinstance(interval, float) and interval * 2 == 180.0
    assert interval == timedelta(seconds=90) and interval.total_seconds() == 90.0
    assert interval < timedelta(minutes=2) and interval > 60
    assert job.every == timedelta(seconds=90)
    noon = datetime(2024, 1, 1, 12, 0)
    assert noon + interval == datetime(2024, 1, 1, 12, 1, 30)
    assert noon - interval == datetime(2024, 1, 1, 11, 58, 30)
