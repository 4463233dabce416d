"""Context variables: which runner is bound, and which task is executing.

``current_task()`` works in the asyncio and thread backends because the runner binds the
variable around each attempt. Process workers are separate interpreters, so there it is ``None``.

Progress reports (:meth:`TaskContext.update_progress`) are decided here:

- The latest report is stored on the context at once (``handle.progress`` reads it), but the
  ``progress`` *event* is throttled per task to :data:`PROGRESS_RATE` a second: a body that
  reports from a tight loop must not flood the listeners (the widget, a kernel's iopub). A
  report that arrives inside the window is held, and a timer delivers the latest one held when
  the window ends, so the last report always reaches the bus.
- The clock and the timer are module attributes (:data:`_clock`, :data:`_schedule`) so tests
  replace them and count events instead of measuring time.
"""

from __future__ import annotations

import contextvars
import math
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from ._run import TaskRunner

__all__ = ["PROGRESS_RATE", "Progress", "TaskContext", "current_task", "get_current_runner"]


_event_lock = threading.Lock()

#: At most this many ``progress`` events per second and task reach the event bus.
PROGRESS_RATE = 10.0


class Progress(NamedTuple):
    """One progress report of a task: a fraction in [0, 1], an optional message, when, attempt."""

    fraction: float
    message: str | None
    time: float
    attempt: int


def start_timer(delay: float, callback: Callable[[], None], name: str = "wfy-progress"
                ) -> threading.Timer:
    """Run ``callback`` once after ``delay`` seconds on a daemon thread; cancellable."""
    timer = threading.Timer(delay, callback)
    timer.name = name
    timer.daemon = True
    timer.start()
    return timer


_clock: Callable[[], float] = time.monotonic
_schedule: Callable[[float, Callable[[], None]], Any] = start_timer


def _check_fraction(fraction: object) -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)):
        raise TypeError(f"update_progress(fraction) needs a number from 0 to 1, got "
                        f"{fraction!r}; e.g. update_progress(done / total)")
    value = float(fraction)
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"update_progress(fraction) needs a number from 0 to 1, got "
                         f"{fraction!r}; e.g. update_progress(done / total)")
    return value


class TaskContext:
    """What a task body can learn about its own execution: name, key, attempt, cancel flag."""

    __slots__ = ("_cancelled", "_event", "_held", "_next_report", "_progress", "_seceded",
                 "attempt", "key", "name", "runner")

    def __init__(self, name: str, key: str, attempt: int,
                 runner: TaskRunner | None = None) -> None:
        self.name = name
        self.key = key
        self.attempt = attempt
        self.runner = runner  # the runner executing this task, for submissions from the body
        self._cancelled = False
        self._event: threading.Event | None = None  # made on first use: most tasks never ask
        self._seceded = 0  # waits on other handles going on in this body (slot given back)
        self._progress: Progress | None = None
        self._next_report = -math.inf  # when the next progress event may go out (_clock)
        self._held = False  # a report waits for the window to end (a timer is armed)

    @property
    def cancel_event(self) -> threading.Event:
        """Set once ``handle.cancel()`` or ``runner.cancel_all()`` asked this task to stop."""
        if self._event is None:
            with _event_lock:
                if self._event is None:
                    event = threading.Event()
                    if self._cancelled:
                        event.set()
                    self._event = event
        return self._event

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def request_cancel(self) -> None:
        with _event_lock:
            self._cancelled = True
            if self._event is not None:
                self._event.set()

    @property
    def progress(self) -> Progress | None:
        """The latest :meth:`update_progress` report, or ``None`` before the first one."""
        return self._progress

    def update_progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far this task has got: *fraction* from 0 to 1, and an optional *message*.

        ``handle.progress`` has the report at once; listeners get a ``progress`` event, at most
        :data:`PROGRESS_RATE` a second for this task (the last report is always delivered).
        """
        value = _check_fraction(fraction)
        if message is not None and not isinstance(message, str):
            raise TypeError(f"update_progress(message=...) must be a str or None, got "
                            f"{type(message).__name__}: pass str(...) of it")
        report = Progress(value, message, time.time(), self.attempt)
        with _event_lock:
            self._progress = report
            if self._held:
                return  # the armed timer delivers the latest report
            wait = self._next_report - _clock()
            if wait > 0:
                self._held = True
                _schedule(wait, self._deliver_held)
                return
            self._next_report = _clock() + 1.0 / PROGRESS_RATE
        self._emit(report)

    def _deliver_held(self) -> None:
        with _event_lock:
            self._held = False
            report = self._progress
            self._next_report = _clock() + 1.0 / PROGRESS_RATE
        if report is not None:
            self._emit(report)

    def _emit(self, report: Progress) -> None:
        runner = self.runner
        if runner is None:
            return
        bus = runner._bus
        if bus.active:
            try:
                handle = runner.get(self.key)
            except KeyError:
                return
            bus.emit("progress", handle, report.attempt, progress=report)

    def __repr__(self) -> str:
        return f"TaskContext(name={self.name!r}, key={self.key!r}, attempt={self.attempt})"


_current_task: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "pyworkflowy_nb_current_task", default=None
)
_current_runner: contextvars.ContextVar[TaskRunner | None] = contextvars.ContextVar(
    "pyworkflowy_nb_current_runner", default=None
)


def current_task() -> TaskContext | None:
    """The context of the task executing in this thread or coroutine, or ``None`` outside one."""
    return _current_task.get()


def get_current_runner() -> TaskRunner | None:
    """The runner bound by the innermost ``with TaskRunner() as runner:``, else the runner
    executing the current task (so ``task.submit()`` inside a body joins its run), or ``None``.
    """
    runner = _current_runner.get()
    if runner is None:
        # Worker threads do not inherit the submitter's context; the task's own does travel.
        ctx = _current_task.get()
        if ctx is not None:
            runner = ctx.runner
    return runner
