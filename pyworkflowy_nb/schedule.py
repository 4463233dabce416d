"""Run tasks on a timetable: every N seconds, on a cron expression, or once at a given time.

>>> sched = Scheduler(runner=runner)                     # doctest: +SKIP
>>> sched.every(60).do(cleanup)                           # doctest: +SKIP
>>> sched.cron("0 * * * *").do(report, "hourly")          # doctest: +SKIP
>>> sched.start(); ...; sched.stop()                      # doctest: +SKIP

Design decisions
----------------
* **One firing per due job per tick, no backfill.** ``tick()`` submits each job whose
  ``next_fire`` has passed exactly once, however many periods were missed while the scheduler
  was stopped or busy, and then plans the next firing from *now*.
* **Interval drift.** An ``every(s)`` job's next firing is ``now + s``, measured from the tick
  that fired it. Late ticks therefore push later firings back (drift) instead of producing a
  burst of catch-up firings; cron jobs have no drift, they land on the expression's next minute.
* **First firing.** ``every(s)`` first fires ``s`` seconds after it is registered; ``cron``
  fires at the expression's next match after registration; ``at(dt)`` fires at ``dt``, or on the
  next tick if ``dt`` is already past, and is then finished.
* **Time.** All time comes from the injected clock (:class:`SystemClock` by default, aware in the
  local zone; :class:`pyworkflowy_nb.testing.MockClock` for tests, the same one the runner under
  test is given; :class:`FakeClock` is its deprecated older name). Naive datetimes given to
  ``at()`` are read as wall time in the clock's zone; times are compared as instants, never as
  wall-clock readings.
* **Daylight saving.** Cron expressions are matched against the wall clock of the zone of the
  clock's ``now()`` (naive clocks have no DST). A matching time that does not exist because the
  clock springs forward fires once, at the first instant after the gap (``30 2 * * *`` fires at
  03:00 on that day); a matching time that occurs twice because the clock falls back fires
  once, at its first occurrence (``fold=0``). ``every`` jobs count elapsed time, so they neither
  pause nor double up across a change.
* **Failures stay on handles.** A task that raises is the runner's business (use
  ``on_task_error="continue"`` or ``"log"`` for scheduled work); the scheduler keeps going.
  If submitting itself fails, the error is logged on the ``pyworkflowy_nb.schedule`` logger and
  recorded on the job (``job.last_error``), and the job stays scheduled.
* **Executing what fired.** ``tick()`` only submits: the scheduler is a timetable. The loops
  behind ``start()`` and ``arun()`` hand execution to the runner's serve mode: a run already
  going picks the handles up (the engine guarantees that); otherwise the loop starts
  ``runner.serve_in_background()``, a run that idles between firings instead of ending, so the
  scheduler tracks no handles and restarts nothing. ``arun()`` does the same rather than running
  the engine on the caller's loop, so a slow synchronous task can never stall the loop that the
  scheduler (and a notebook) share. ``stop()`` stops the serves it started; they drain (what
  was submitted still runs to its end).
* **Waking.** The background loop waits on an ``Event`` (``arun()`` on an ``asyncio.Event``) with
  a timeout of at most ``tick_seconds``; ``stop()`` and new jobs set it, so ``stop()`` returns
  promptly and a job added to an idle scheduler is considered at once.
  Under a :class:`~pyworkflowy_nb.testing.MockClock` the event is the clock's, its waits count
  virtual seconds, and they last exactly until the next firing (no ``tick_seconds`` cap: virtual
  time never moves behind the scheduler's back), so an autojumping clock goes from firing to
  firing in one step.
* Due jobs are kept in a heap ordered by next firing, so a tick costs O(fired * log jobs), not a
  scan of every job.

pyWorkflowy 0.1.0 compatibility
-------------------------------
* ``Scheduler(*, runner=None, tick_seconds=0.5, clock=None)``: ``tick_seconds`` is the longest
  sleep between looks at the clock (``poll_interval`` is our older name for it). With no runner
  given or bound at construction, the runner bound when a tick happens is used; a tick with none
  raises RuntimeError. ``clock`` may be a :class:`Clock` (``now() -> datetime``) or, as in 0.1.0,
  a zero-argument callable returning epoch seconds (read as instants in the local zone).
* :class:`ScheduledJob` (``Job`` is the same class) carries 0.1.0's fields: ``next_fire`` (epoch
  seconds), ``interval`` (seconds), ``cron``, ``one_shot``, ``last_handle``, ``cancelled`` (a
  one-shot is cancelled once it fired). ``next_fire`` and ``interval`` were a datetime and a
  timedelta here. They are now floats that still read as those objects: a :class:`FireTime`
  answers the datetime's attributes (``strftime``, ``tzinfo``...) and equals a datetime of the
  same instant; an :class:`Interval` answers ``total_seconds()`` and equals the timedelta. The
  plain objects are ``next_fire_at`` and ``every``.
* ``at()`` takes a datetime or epoch seconds; ``jobs`` reads as a list and is callable
  (``sched.jobs()``); ``sched.cancel(job)`` is ``job.cancel()`` for a job of this scheduler.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import heapq
import itertools
import logging
import operator
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from ._arguments import (
    MIN_INTERVAL,
    check_interval,
    check_label,
    check_optional_seconds,
    check_runner,
    check_seconds,
)
from ._clock import Clock, EpochClock, SystemClock, as_clock
from ._cron import CronExpression, parse_cron
from ._mockclock import FakeClock, MockClock
from ._views import CallableList

if TYPE_CHECKING:
    from ._handle import RunResults, TaskHandle
    from ._run import TaskRunner

__all__ = [
    "Clock",
    "CronExpression",
    "EpochClock",
    "FakeClock",
    "FireTime",
    "Interval",
    "Job",
    "JobBuilder",
    "ScheduledJob",
    "Scheduler",
    "SystemClock",
    "parse_cron",
]

logger = logging.getLogger("pyworkflowy_nb.schedule")

JobKind = Literal["every", "cron", "at"]

_THREAD_NAME = "pyworkflowy-scheduler"


class _NumberView(float):
    """A float (what pyWorkflowy 0.1.0 gave) that also reads as the richer object it was made
    from (what this package gave): attributes the float lacks go to that object, and comparing
    with an object of its kind compares the objects (see :meth:`_versus`)."""

    __slots__ = ("_of",)
    _of: Any

    def __new__(cls, of: Any, number: float) -> Any:
        self = super().__new__(cls, number)
        self._of = of
        return self

    def __getattr__(self, name: str) -> Any:
        if name == "_of":  # not set yet (mid-copy): never recurse
            raise AttributeError(name)
        return getattr(self._of, name)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._of,))

    def _versus(self, other: object) -> tuple[Any, Any] | None:
        """The pair to compare when ``other`` is of the wrapped kind, else None."""
        raise NotImplementedError

    def _compare(self, other: object, op: Callable[[Any, Any], bool]) -> bool:
        pair = self._versus(other)
        if pair is not None:
            return op(*pair)
        if isinstance(other, int | float):
            return op(float(self), other)
        return NotImplemented  # type: ignore[no-any-return]  # a dunder passes it on

    def __eq__(self, other: object) -> bool:
        return self._compare(other, operator.eq)

    def __ne__(self, other: object) -> bool:
        return self._compare(other, operator.ne)

    __hash__ = float.__hash__

    def __lt__(self, other: object) -> bool:
        return self._compare(other, operator.lt)

    def __le__(self, other: object) -> bool:
        return self._compare(other, operator.le)

    def __gt__(self, other: object) -> bool:
        return self._compare(other, operator.gt)

    def __ge__(self, other: object) -> bool:
        return self._compare(other, operator.ge)


class FireTime(_NumberView):
    """A firing time: epoch seconds (pyWorkflowy 0.1.0's ``next_fire``) that also stands for
    the datetime it came from, in the clock's zone.

    Arithmetic, ``repr`` and hashing are the float's. Attribute access the float lacks goes to
    the datetime (``job.next_fire.strftime("%H:%M")``), ``.at`` is the datetime itself, and
    comparing with a datetime compares instants (naive ones as wall times, as the clock does).
    """

    __slots__ = ()

    def __new__(cls, when: datetime) -> FireTime:
        made: FireTime = super().__new__(cls, when, when.timestamp())
        return made

    @property
    def at(self) -> datetime:
        when: datetime = self._of
        return when

    def _versus(self, other: object) -> tuple[Any, Any] | None:
        if not isinstance(other, datetime):
            return None
        if (self.at.tzinfo is None) != (other.tzinfo is None):
            return self.at, other  # as datetimes do: unequal, and ordering them is a TypeError
        return _instant(self.at), _instant(other)


class Interval(_NumberView):
    """The period of an ``every`` job: seconds (pyWorkflowy 0.1.0's reading) that also stand
    for the timedelta this package stored before.

    Float arithmetic, ``repr`` and hashing are the float's; ``total_seconds()``, ``days`` and
    the other timedelta attributes answer as the timedelta (``.delta``) would; it compares
    with a timedelta as a duration, and adding it to a datetime adds the timedelta.
    """

    __slots__ = ()

    def __new__(cls, delta: timedelta) -> Interval:
        made: Interval = super().__new__(cls, delta, delta.total_seconds())
        return made

    @property
    def delta(self) -> timedelta:
        delta: timedelta = self._of
        return delta

    def _versus(self, other: object) -> tuple[Any, Any] | None:
        return (self.delta, other) if isinstance(other, timedelta) else None

    def __radd__(self, other: Any) -> Any:
        if isinstance(other, datetime | timedelta):
            return other + self.delta
        return float(self) + other

    def __rsub__(self, other: Any) -> Any:
        if isinstance(other, datetime | timedelta):
            return other - self.delta
        return other - float(self)


def _instant(dt: datetime) -> datetime:
    """A key that orders datetimes by the instant they denote.

    Aware datetimes sharing a tzinfo compare by wall time and ignore ``fold``, which would put
    the second pass of a DST overlap *before* the first; converting to UTC avoids that.
    """
    return dt if dt.tzinfo is None else dt.astimezone(UTC)


class ScheduledJob:
    """One scheduled task. Made by ``Scheduler.every/cron/at(...).do(...)``; not built directly.

    Times in 0.1.0's terms: ``next_fire`` in epoch seconds, ``interval`` in seconds. The same as
    objects: ``next_fire_at`` (a datetime in the clock's zone) and ``every`` (a timedelta).
    """

    def __init__(
        self,
        scheduler: Scheduler,
        *,
        name: str,
        kind: JobKind,
        task: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        interval: timedelta | None = None,
        expression: CronExpression | None = None,
        next_fire: datetime,
    ) -> None:
        self._scheduler = scheduler
        self.name = name
        self.kind: JobKind = kind
        self.task = task
        self.args = args
        self.kwargs = kwargs
        self.every = interval
        self.expression = expression
        self._next_fire: datetime | None = next_fire
        self._handles: list[TaskHandle[Any]] = []
        self._last_fired: datetime | None = None
        self._last_error: BaseException | None = None
        self._cancelled = False
        # Identifies this job's live heap entry; stale entries (after a reschedule or cancel) are
        # skipped when popped instead of being searched for and removed.
        self._entry = -1

    @property
    def next_fire(self) -> FireTime | None:
        """When the job fires next, in epoch seconds that also read as the datetime (see
        :class:`FireTime`); None once it fired (a one-shot) or was cancelled."""
        when = self._next_fire
        return None if when is None else FireTime(when)

    @property
    def next_fire_at(self) -> datetime | None:
        """When the job fires next, as a datetime in the clock's zone (naive for naive clocks)."""
        return self._next_fire

    @property
    def interval(self) -> Interval | None:
        """Seconds between firings of an ``every`` job (an :class:`Interval`, which also reads
        as the timedelta); None for cron and one-shot jobs."""
        return None if self.every is None else Interval(self.every)

    @property
    def cron(self) -> CronExpression | None:
        """The expression of a cron job (the same as ``expression``); None otherwise."""
        return self.expression

    @property
    def one_shot(self) -> bool:
        """True for an ``at()`` job, which fires once and is then cancelled."""
        return self.kind == "at"

    @property
    def last_fired(self) -> datetime | None:
        """The clock reading of the tick that last fired this job."""
        return self._last_fired

    @property
    def last_handle(self) -> TaskHandle[Any] | None:
        return self._handles[-1] if self._handles else None

    @property
    def handles(self) -> tuple[TaskHandle[Any], ...]:
        """Every handle this job has produced, oldest first."""
        return tuple(self._handles)

    @property
    def fired(self) -> int:
        """How many times the job was submitted successfully."""
        return len(self._handles)

    @property
    def last_error(self) -> BaseException | None:
        """The error of the most recent failed *submission* (task failures live on handles)."""
        return self._last_error

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    @property
    def active(self) -> bool:
        """True while the job is still scheduled to fire."""
        return not self._cancelled and self._next_fire is not None

    def cancel(self) -> bool:
        """Stop this job from firing again; True if it was still scheduled."""
        return self._scheduler._cancel(self)

    def describe(self) -> str:
        """The trigger in words, e.g. ``every 60s`` or ``cron '0 * * * *'``."""
        if self.kind == "every" and self.every is not None:
            return f"every {self.every.total_seconds():g}s"
        if self.kind == "cron" and self.expression is not None:
            return f"cron {self.expression.source!r}"
        return "at " + (self._last_fired or self._next_fire or datetime.min).isoformat()

    def __repr__(self) -> str:
        state = "cancelled" if self._cancelled else "finished" if self._next_fire is None else ""
        when = f"next_fire={self._next_fire.isoformat()}" if self._next_fire else state
        return f"<ScheduledJob {self.name!r} {self.describe()} {when} fired={self.fired}>"


#: The name this class had before it took pyWorkflowy 0.1.0's.
Job = ScheduledJob


class JobBuilder:
    """Returned by ``every``/``cron``/``at``; call :meth:`do` to register the job."""

    def __init__(
        self,
        scheduler: Scheduler,
        kind: JobKind,
        name: str | None,
        *,
        interval: timedelta | None = None,
        expression: CronExpression | None = None,
        when: datetime | None = None,
    ) -> None:
        self._scheduler = scheduler
        self._kind: JobKind = kind
        self._name = check_label(f"{kind}(name=...)", name)
        self._interval = interval
        self._expression = expression
        self._when = when

    def do(self, task: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Job:
        """Schedule ``runner.submit(task, *args, **kwargs)`` and return the :class:`Job`."""
        if not callable(task):
            raise TypeError(
                f"do() needs a task or a callable, got {task!r}; pass the function, not its result"
            )
        name = self._name or str(getattr(task, "name", None) or getattr(task, "__name__", task))
        return self._scheduler._register(
            name=name,
            kind=self._kind,
            task=task,
            args=args,
            kwargs=kwargs,
            interval=self._interval,
            expression=self._expression,
            when=self._when,
        )


_RUNNER_FIX = ("pass the TaskRunner itself, Scheduler(runner=runner), or leave it out inside "
               "`with TaskRunner() as runner:`")
_EVERY_FIX = "pass seconds or a timedelta; for firings rarer than yearly use cron(...) or at(...)"


def _bound_runner() -> TaskRunner | None:
    from ._context import get_current_runner

    return get_current_runner()


def _from_epoch(seconds: float, now: datetime) -> datetime:
    """Epoch seconds as a datetime of the same kind as the clock's ``now``."""
    try:
        if now.tzinfo is None:
            return datetime.fromtimestamp(seconds)  # naive clocks read local wall time
        return datetime.fromtimestamp(seconds, tz=now.tzinfo)
    except (OverflowError, OSError, ValueError):  # NaN, infinities, years past 9999
        raise ValueError(
            f"at() got {seconds!r} epoch seconds, which is no time a clock can reach: pass "
            "time.time() plus a delay, or a datetime") from None


def _log_run_outcome(future: concurrent.futures.Future[RunResults]) -> None:
    if future.cancelled():
        return
    error = future.exception()
    if error is not None:
        logger.warning("a run started by the scheduler ended with an error: %r", error)


class Scheduler:
    """Fires tasks into a :class:`~pyworkflowy_nb.TaskRunner` on a timetable.

    ``runner`` defaults to the runner bound by ``with TaskRunner() as runner:``, at construction
    or, failing that, when a tick happens. ``clock`` defaults to :class:`SystemClock`; a
    zero-argument callable returning epoch seconds is accepted too (see :class:`EpochClock`).
    ``tick_seconds`` caps how long the background loop sleeps between looks at the clock (it
    wakes earlier when a job is due or ``stop()`` is called); ``poll_interval`` is an older name.
    """

    def __init__(
        self,
        runner: TaskRunner | None = None,
        *,
        tick_seconds: float = 0.5,
        clock: Clock | Callable[[], float] | None = None,
        poll_interval: float | None = None,
    ) -> None:
        clock = as_clock(clock, "Scheduler(clock=...)")
        if runner is not None:
            check_runner("Scheduler(runner=...)", runner, fix=_RUNNER_FIX)
        knob = "tick_seconds"
        if poll_interval is not None:
            if tick_seconds != 0.5:
                raise ValueError("pass tick_seconds= or poll_interval= (its older name), not both")
            knob, tick_seconds = "poll_interval", poll_interval
        tick_seconds = check_seconds(knob, tick_seconds, minimum=MIN_INTERVAL)
        self._runner: TaskRunner | None = runner if runner is not None else _bound_runner()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._poll_interval = float(tick_seconds)
        self._lock = threading.RLock()
        self._jobs: dict[int, Job] = {}
        self._heap: list[tuple[datetime, int, Job]] = []
        self._counter = itertools.count()
        self._mode: Literal["thread", "async"] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        # Waits of the background loop count the clock's seconds (a MockClock's are virtual).
        self._wake = self._clock.event()
        self._async_wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._served: dict[int, TaskRunner] = {}  # runners whose serve this scheduler started

    # -- inspection ---------------------------------------------------------------------------

    @property
    def runner(self) -> TaskRunner:
        """The runner jobs are submitted to; RuntimeError when none was given or is bound."""
        runner = self._runner
        if runner is None:
            runner = _bound_runner()
            if runner is None:
                raise RuntimeError(
                    "this Scheduler has no runner: pass one with Scheduler(runner=runner), or "
                    "tick it inside `with TaskRunner() as runner:`")
        return runner

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def jobs(self) -> CallableList[ScheduledJob]:
        """The scheduled jobs, in registration order (cancelled and finished ones drop out);
        ``sched.jobs`` or ``sched.jobs()``."""
        with self._lock:
            return CallableList(self._jobs.values())

    @property
    def running(self) -> bool:
        """True while ``start()``'s thread or ``arun()`` is driving the scheduler."""
        return self._mode is not None

    def next_fire(self) -> datetime | None:
        """The earliest ``next_fire`` over all jobs, or None when nothing is scheduled."""
        with self._lock:
            entry = self._peek()
            return entry[2].next_fire_at if entry else None

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs)

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def __repr__(self) -> str:
        state = self._mode or "idle"
        return f"<Scheduler {state} jobs={len(self)} clock={self._clock!r}>"

    # -- registering jobs ---------------------------------------------------------------------

    def every(self, seconds: float | timedelta, *, name: str | None = None) -> JobBuilder:
        """Fire every ``seconds`` (a number or a timedelta), first ``seconds`` from now.

        The interval is from 1 ms to one year; for rarer firings use ``cron`` or ``at``.
        """
        interval = check_interval("every(seconds)", seconds, fix=_EVERY_FIX)
        return JobBuilder(self, "every", name, interval=interval)

    def cron(self, expr: str | CronExpression, *, name: str | None = None) -> JobBuilder:
        """Fire on a five-field cron expression or an alias such as ``@hourly``."""
        expression = expr if isinstance(expr, CronExpression) else parse_cron(expr)
        return JobBuilder(self, "cron", name, expression=expression)

    def at(self, when: datetime | float, *, name: str | None = None) -> JobBuilder:
        """Fire once at ``when``: a datetime (naive means wall time in the clock's zone) or
        epoch seconds."""
        if isinstance(when, int | float) and not isinstance(when, bool):
            when = _from_epoch(when, self._clock.now())
        if not isinstance(when, datetime):
            raise TypeError(
                f"at() needs a datetime or epoch seconds, got {type(when).__name__} {when!r}; "
                "for a date write datetime(year, month, day, hour, minute)"
            )
        return JobBuilder(self, "at", name, when=when)

    def _align(self, when: datetime, now: datetime) -> datetime:
        if now.tzinfo is not None and when.tzinfo is None:
            return when.replace(tzinfo=now.tzinfo)
        if now.tzinfo is None and when.tzinfo is not None:
            raise ValueError(
                f"at({when.isoformat()}) is timezone-aware but the scheduler's clock gives naive "
                "times; pass a naive datetime or a clock with a zone, e.g. MockClock(aware start)"
            )
        return when

    def _register(
        self,
        *,
        name: str,
        kind: JobKind,
        task: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        interval: timedelta | None,
        expression: CronExpression | None,
        when: datetime | None,
    ) -> Job:
        now = self._clock.now()
        if kind == "at":
            assert when is not None
            first = self._align(when, now)
        else:
            first = self._following(kind, interval, expression, now)
        job = Job(
            self,
            name=name,
            kind=kind,
            task=task,
            args=args,
            kwargs=kwargs,
            interval=interval,
            expression=expression,
            next_fire=first,
        )
        with self._lock:
            self._jobs[id(job)] = job
            self._push(job, first)
        self._notify()
        return job

    @staticmethod
    def _following(
        kind: JobKind,
        interval: timedelta | None,
        expression: CronExpression | None,
        now: datetime,
    ) -> datetime:
        if kind == "cron":
            assert expression is not None
            return expression.next_after(now)
        assert interval is not None
        if now.tzinfo is None:
            return now + interval
        # Elapsed time, not wall time: across a DST change wall-clock addition would be off.
        return (now.astimezone(UTC) + interval).astimezone(now.tzinfo)

    # -- the heap -----------------------------------------------------------------------------

    def _push(self, job: Job, when: datetime) -> None:
        entry = next(self._counter)
        job._entry = entry
        job._next_fire = when
        heapq.heappush(self._heap, (_instant(when), entry, job))

    def _peek(self) -> tuple[datetime, int, Job] | None:
        heap = self._heap
        while heap and (heap[0][2]._entry != heap[0][1] or heap[0][2]._cancelled):
            heapq.heappop(heap)
        return heap[0] if heap else None

    def cancel(self, job: ScheduledJob) -> bool:
        """Stop ``job`` from firing again; False if it is not (or no longer) scheduled here."""
        if not isinstance(job, ScheduledJob):
            raise TypeError(f"cancel() takes a job that every/cron/at(...).do() returned, "
                            f"got {job!r}")
        if job._scheduler is not self:
            return False
        return self._cancel(job)

    def _cancel(self, job: Job) -> bool:
        with self._lock:
            was_active = job.active and self._jobs.pop(id(job), None) is not None
            job._cancelled = True
            job._next_fire = None
            return was_active

    # -- firing -------------------------------------------------------------------------------

    def tick(self) -> list[TaskHandle[Any]]:
        """Submit every job that is due now, once each, and return the new handles.

        Does not start a run: call ``runner.run()`` yourself, or use ``start()``/``arun()``.
        RuntimeError if the scheduler has no runner (none given, none bound now).
        """
        runner = self.runner
        now = self._clock.now()
        now_key = _instant(now)
        due: list[Job] = []
        with self._lock:
            while True:
                entry = self._peek()
                if entry is None or entry[0] > now_key:
                    break
                heapq.heappop(self._heap)
                due.append(entry[2])
        handles: list[TaskHandle[Any]] = []
        # Submission happens outside the lock: the runner may call listeners synchronously and
        # those must be free to use the scheduler from other threads.
        for job in due:
            handle = self._fire(job, now, runner)
            if handle is not None:
                handles.append(handle)
            with self._lock:
                if job._cancelled:
                    continue
                if job.kind == "at":
                    job._next_fire = None
                    job._cancelled = True  # fired once and done, as 0.1.0 reports it
                    self._jobs.pop(id(job), None)
                else:
                    self._push(job, self._following(job.kind, job.every, job.expression, now))
        return handles

    def _fire(self, job: Job, now: datetime, runner: TaskRunner) -> TaskHandle[Any] | None:
        if job._cancelled:
            return None
        job._last_fired = now
        try:
            handle = runner.submit(job.task, *job.args, **job.kwargs)
        except Exception as error:
            job._last_error = error
            logger.warning(
                "scheduled job %r could not be submitted: %r", job.name, error, exc_info=error
            )
            return None
        job._handles.append(handle)
        return handle

    def _execute(self, handles: list[TaskHandle[Any]]) -> None:
        """Make sure fired handles get run, without ever blocking on the run."""
        # The runners of the handles themselves: a scheduler made without a runner submits
        # to whichever is bound at each tick, so there may be more than one.
        for runner in {id(h.runner): h.runner for h in handles}.values():
            self._serve(runner)

    def _serve(self, runner: TaskRunner) -> None:
        if runner.running:
            return  # a run going (a serve, or someone's own run) picks the handles up
        try:
            future = runner.serve_in_background()
        except Exception as error:
            # A run may have started on someone's loop between the check and the call; it then
            # picks the handles up and there is nothing to report.
            if not runner.running:
                logger.warning("the scheduler could not start a run: %r", error, exc_info=error)
            return
        with self._lock:
            self._served[id(runner)] = runner
        future.add_done_callback(_log_run_outcome)

    def _stop_serving(self) -> None:
        with self._lock:
            served, self._served = list(self._served.values()), {}
        for runner in served:
            runner.stop()  # drains: what fired still runs to its end

    def _delay(self) -> float | None:
        """Seconds until the next job is due, capped by ``tick_seconds``.

        Under a MockClock there is no cap and no wait without a job (None: until notified):
        virtual time cannot jump behind the scheduler's back, and an autojumping clock would
        otherwise step through every ``tick_seconds`` of a long wait.
        """
        virtual = isinstance(self._clock, MockClock)
        with self._lock:
            entry = self._peek()
        if entry is None:
            return None if virtual else self._poll_interval
        remaining = max((entry[0] - _instant(self._clock.now())).total_seconds(), 0.0)
        return remaining if virtual else min(remaining, self._poll_interval)

    # -- running ------------------------------------------------------------------------------

    def _claim(self, mode: Literal["thread", "async"]) -> None:
        with self._lock:
            if self._mode is not None:
                raise RuntimeError(
                    f"this scheduler is already running ({self._mode}); call stop() first"
                )
            if self._thread is not None and self._thread.is_alive():
                raise RuntimeError(
                    "the previous scheduler thread has not finished yet; call stop() again"
                )
            self._mode = mode
            self._stopping.clear()

    def start(self) -> None:
        """Tick on a background (daemon) thread until :meth:`stop`."""
        self._claim("thread")
        # The caller's context travels along, so a runner bound by `with TaskRunner()` around
        # start() is found by the ticks of a scheduler made without one.
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(self._thread_main,),
                                  name=_THREAD_NAME, daemon=True)
        self._thread = thread
        try:
            thread.start()
        except BaseException:
            self._mode = None
            raise

    def _thread_main(self) -> None:
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                self._wake.wait(self._pass())
        finally:
            self._stop_serving()  # a pass that raced stop() may have started one
            with self._lock:
                if self._mode == "thread":
                    self._mode = None

    def _pass(self) -> float | None:
        """One tick plus execution; returns how long to wait before the next one.

        Anything unexpected (a broken clock, say) is logged and retried, never fatal to the loop.
        """
        try:
            self._execute(self.tick())
            return self._delay()
        except Exception:
            logger.exception("scheduler tick failed; trying again in %s s", self._poll_interval)
            return self._poll_interval

    async def arun(self) -> None:
        """Tick on the running event loop until :meth:`stop` is called or this is cancelled."""
        self._claim("async")
        wake = asyncio.Event()
        self._async_wake = (asyncio.get_running_loop(), wake)
        try:
            while not self._stopping.is_set():
                wake.clear()
                self._wake.clear()
                delay = self._pass()
                if isinstance(self._clock, MockClock):
                    # Virtual seconds: wait on the clock in a worker thread; _notify sets both.
                    await asyncio.get_running_loop().run_in_executor(None, self._wake.wait, delay)
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), delay)
        finally:
            self._wake.set()  # a virtual wait still going in a worker thread ends now
            self._stop_serving()
            with self._lock:
                self._async_wake = None
                if self._mode == "async":
                    self._mode = None

    def _notify(self) -> None:
        self._wake.set()
        target = self._async_wake
        if target is not None:
            loop, event = target
            # RuntimeError means the loop has closed, and arun() is gone with it.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    def stop(self, timeout: float | None = 5.0, *, wait: bool = True) -> None:
        """Stop ticking. With ``start()`` and ``wait``, wait (up to ``timeout`` seconds, None
        for no limit) for the thread to end.

        Jobs stay registered, so ``start()`` can resume them; missed firings are not backfilled.
        Already-submitted handles keep running in the runner.
        """
        timeout = check_optional_seconds("stop(timeout=...)", timeout,
                                         fix="use None to wait until the thread ends")
        self._stopping.set()
        self._notify()
        self._stop_serving()
        thread = self._thread
        if thread is None or thread is threading.current_thread() or not wait:
            return
        thread.join(timeout)
        if thread.is_alive():
            logger.warning("the scheduler thread did not stop within %s s", timeout)
            return
        with self._lock:
            self._thread = None
            if self._mode == "thread":
                self._mode = None

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
