"""Progress reports from inside a task: validation, ``handle.progress`` and the throttled event.

The throttle's clock and timer are replaced (``_context._clock`` / ``_context._schedule``), so
"at most N events a second" is checked by counting against a fake clock, never by timing.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pyworkflowy_nb import EventLog, TaskRunner, _context, current_task, task


class FakeTime:
    """A settable clock and a timer list fired by hand."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def clock(self) -> float:
        return self.now

    def schedule(self, delay: float, callback: Callable[[], None]) -> object:
        self.timers.append((self.now + delay, callback))
        return object()

    def fire_due(self) -> int:
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, callback in due:
            callback()
        return len(due)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTime]:
    ft = FakeTime()
    monkeypatch.setattr(_context, "_clock", ft.clock)
    monkeypatch.setattr(_context, "_schedule", ft.schedule)
    yield ft


def _report(fraction: Any, message: Any = None) -> None:
    ctx = current_task()
    assert ctx is not None
    ctx.update_progress(fraction, message)


@pytest.mark.parametrize("backend", ["thread", "asyncio"])
def test_a_tight_loop_reaches_the_bus_throttled_and_the_last_report_is_delivered(
    fake: FakeTime, backend: str
) -> None:
    if backend == "asyncio":
        @task(backend="asyncio")
        async def loop() -> str:
            for i in range(1, 1001):
                _report(i / 1000, f"step {i}")
            await asyncio.sleep(0)
            return "done"
    else:
        @task(backend="thread")
        def loop() -> str:
            for i in range(1, 1001):
                _report(i / 1000, f"step {i}")
            return "done"

    with TaskRunner() as runner:
        log = EventLog(runner)
        h = runner.submit(loop)
        runner.run()
        # The handle has the latest report at once, throttled or not.
        assert h.progress is not None
        assert (h.progress.fraction, h.progress.message, h.progress.attempt) == (
            1.0, "step 1000", 1)
        progress = [e for e in log.events if e.kind == "progress"]
        assert len(progress) == 1  # the clock never moved: one event, the rest held
        assert progress[0].progress is not None and progress[0].progress.message == "step 1"
        assert len(fake.timers) == 1  # one timer for the held reports, not one per report
        fake.now = 1.0 / _context.PROGRESS_RATE
        assert fake.fire_due() == 1
        progress = [e for e in log.events if e.kind == "progress"]
        assert len(progress) == 2
        last = progress[-1]
        assert last.handle is h and last.progress is not None
        assert last.progress.message == "step 1000" and last.progress.fraction == 1.0
        assert last.as_dict()["progress"] == {"fraction": 1.0, "message": "step 1000"}
        log.close()


def test_reports_spaced_by_the_window_all_go_out(fake: FakeTime) -> None:
    sent: list[float] = []

    @task(backend="thread")
    def paced() -> None:
        for i in range(5):
            fake.now = i * (1.0 / _context.PROGRESS_RATE)
            _report(i / 4)

    with TaskRunner() as runner:
        runner.subscribe(lambda e: sent.append(e.progress.fraction)
                         if e.kind == "progress" and e.progress else None)
        runner.submit(paced)
        runner.run()
    assert sent == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert fake.timers == []


@pytest.mark.parametrize(
    ("fraction", "error"),
    [(1.5, ValueError), (-0.1, ValueError), (math.nan, ValueError), (math.inf, ValueError),
     (True, TypeError), ("0.5", TypeError), (None, TypeError)],
)
def test_bad_fractions_are_refused_with_the_value_named(fraction: Any, error: type) -> None:
    @task
    def bad() -> None:
        _report(fraction)

    with TaskRunner(on_task_error="continue") as runner:
        h = runner.submit(bad)
        runner.run()
    exc = h.exception
    assert isinstance(exc, error), exc
    assert repr(fraction) in str(exc) and "from 0 to 1" in str(exc)


def test_a_message_must_be_text() -> None:
    @task
    def bad() -> None:
        _report(0.5, 42)

    with TaskRunner(on_task_error="continue") as runner:
        h = runner.submit(bad)
        runner.run()
    assert isinstance(h.exception, TypeError) and "message" in str(h.exception)


def test_no_report_means_no_progress() -> None:
    @task
    def quiet() -> int:
        return 1

    with TaskRunner() as runner:
        h = runner.submit(quiet)
        assert h.progress is None
        runner.run()
    assert h.progress is None
