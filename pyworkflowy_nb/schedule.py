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
  local zone; :class:`FakeClock` for tests). Naive datetimes given to ``at()`` are read as wall
  time in the clock's zone; times are compared as instants, never as wall-clock readings.
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
* **Executing what fired.** ``tick()`` only submits. The loops behind ``start()`` and
  ``arun()`` also make sure the handles run: a run already going picks them up (the engine
  guarantees that); otherwise the loop starts ``runner.run_in_background()``, which never blocks
  the scheduler. ``arun()`` does the same rather than running the engine on the caller's loop,
  so a slow synchronous task can never stall the loop that the scheduler (and a notebook) share.
  Handles that a finishing run missed are noticed on a later pass and get a new run.
* **Waking.** The background loop waits on an ``Event`` (``arun()`` on an ``asyncio.Event``) with
  a timeout of at most ``poll_interval``; ``stop()`` and new jobs set it, so ``stop()`` returns
  promptly and a job added to an idle scheduler is considered at once.
* Due jobs are kept in a heap ordered by next firing, so a tick costs O(fired * log jobs), not a
  scan of every job.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import itertools
import logging
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
from ._clock import Clock, FakeClock, SystemClock
from ._cron import CronExpression, parse_cron

if TYPE_CHECKING:
    from ._handle import RunResults, TaskHandle
    from ._run import TaskRunner

__all__ = [
    "Clock",
    "CronExpression",
    "FakeClock",
    "Job",
    "JobBuilder",
    "Scheduler",
    "SystemClock",
    "parse_cron",
]

logger = logging.getLogger("pyworkflowy_nb.schedule")

JobKind = Literal["every", "cron", "at"]

_THREAD_NAME = "pyworkflowy-scheduler"


def _instant(dt: datetime) -> datetime:
    """A key that orders datetimes by the instant they denote.

    Aware datetimes sharing a tzinfo compare by wall time and ignore ``fold``, which would put
    the second pass of a DST overlap *before* the first; converting to UTC avoids that.
    """
    return dt if dt.tzinfo is None else dt.astimezone(UTC)


class Job:
    """One scheduled task. Made by ``Scheduler.every/cron/at(...).do(...)``; not built directly."""

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
        self.interval = interval
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
    def next_fire(self) -> datetime | None:
        """When the job fires next; None once a one-shot has fired or the job is cancelled."""
        return self._next_fire

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
        if self.kind == "every" and self.interval is not None:
            return f"every {self.interval.total_seconds():g}s"
        if self.kind == "cron" and self.expression is not None:
            return f"cron {self.expression.source!r}"
        return "at " + (self._last_fired or self._next_fire or datetime.min).isoformat()

    def __repr__(self) -> str:
        state = "cancelled" if self._cancelled else "finished" if self._next_fire is None else ""
        when = f"next_fire={self._next_fire.isoformat()}" if self._next_fire else state
        return f"<Job {self.name!r} {self.describe()} {when} fired={self.fired}>"


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


def _bound_runner() -> TaskRunner:
    from ._context import get_current_runner

    runner = get_current_runner()
    if runner is None:
        raise RuntimeError(
            "Scheduler() found no runner: pass one with Scheduler(runner=runner), or create the "
            "scheduler inside `with TaskRunner() as runner:`"
        )
    return runner


def _log_run_outcome(future: concurrent.futures.Future[RunResults]) -> None:
    if future.cancelled():
        return
    error = future.exception()
    if error is not None:
        logger.warning("a run started by the scheduler ended with an error: %r", error)


class Scheduler:
    """Fires tasks into a :class:`~pyworkflowy_nb.TaskRunner` on a timetable.

    ``runner`` defaults to the runner bound by ``with TaskRunner() as runner:``. ``clock``
    defaults to :class:`SystemClock`. ``poll_interval`` caps how long the background loop sleeps
    between looks at the clock (it wakes earlier when a job is due or ``stop()`` is called).
    """

    def __init__(
        self,
        runner: TaskRunner | None = None,
        *,
        clock: Clock | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        if clock is not None and not isinstance(clock, Clock):
            raise TypeError(f"clock must have a now() method returning a datetime, got {clock!r}")
        if runner is not None:
            check_runner("Scheduler(runner=...)", runner, fix=_RUNNER_FIX)
        poll_interval = check_seconds("poll_interval", poll_interval, minimum=MIN_INTERVAL)
        self._runner: TaskRunner = runner if runner is not None else _bound_runner()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._poll_interval = float(poll_interval)
        self._lock = threading.RLock()
        self._jobs: dict[int, Job] = {}
        self._heap: list[tuple[datetime, int, Job]] = []
        self._counter = itertools.count()
        self._mode: Literal["thread", "async"] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._async_wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._outstanding: list[TaskHandle[Any]] = []
        self._watched_run: concurrent.futures.Future[RunResults] | None = None

    # -- inspection ---------------------------------------------------------------------------

    @property
    def runner(self) -> TaskRunner:
        return self._runner

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def jobs(self) -> list[Job]:
        """The scheduled jobs, in registration order (cancelled and finished ones drop out)."""
        with self._lock:
            return list(self._jobs.values())

    @property
    def running(self) -> bool:
        """True while ``start()``'s thread or ``arun()`` is driving the scheduler."""
        return self._mode is not None

    def next_fire(self) -> datetime | None:
        """The earliest ``next_fire`` over all jobs, or None when nothing is scheduled."""
        with self._lock:
            entry = self._peek()
            return entry[2].next_fire if entry else None

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

    def at(self, when: datetime, *, name: str | None = None) -> JobBuilder:
        """Fire once at ``when`` (naive means wall time in the clock's zone)."""
        if not isinstance(when, datetime):
            raise TypeError(
                f"at() needs a datetime, got {type(when).__name__} {when!r}; "
                "for a date write datetime(year, month, day, hour, minute)"
            )
        return JobBuilder(self, "at", name, when=when)

    def _align(self, when: datetime, now: datetime) -> datetime:
        if now.tzinfo is not None and when.tzinfo is None:
            return when.replace(tzinfo=now.tzinfo)
        if now.tzinfo is None and when.tzinfo is not None:
            raise ValueError(
                f"at({when.isoformat()}) is timezone-aware but the scheduler's clock gives naive "
                "times; pass a naive datetime or a clock with a zone, e.g. FakeClock(aware start)"
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
        """
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
            handle = self._fire(job, now)
            if handle is not None:
                handles.append(handle)
            with self._lock:
                if job._cancelled:
                    continue
                if job.kind == "at":
                    job._next_fire = None
                    self._jobs.pop(id(job), None)
                else:
                    self._push(job, self._following(job.kind, job.interval, job.expression, now))
        return handles

    def _fire(self, job: Job, now: datetime) -> TaskHandle[Any] | None:
        if job._cancelled:
            return None
        job._last_fired = now
        try:
            handle = self._runner.submit(job.task, *job.args, **job.kwargs)
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
        with self._lock:
            self._outstanding = [h for h in self._outstanding if not h.done()] + handles
            waiting = bool(self._outstanding)
        if not waiting or self._runner.running:
            return
        try:
            future = self._runner.run_in_background()
        except Exception as error:
            # A run may have started on someone's loop between the check and the call; it then
            # picks the handles up and there is nothing to report.
            if not self._runner.running:
                logger.warning("the scheduler could not start a run: %r", error, exc_info=error)
            return
        if future is not self._watched_run:
            self._watched_run = future
            future.add_done_callback(_log_run_outcome)

    def _delay(self) -> float:
        """Seconds until the next job is due, capped by ``poll_interval``."""
        with self._lock:
            entry = self._peek()
        if entry is None:
            return self._poll_interval
        remaining = (entry[0] - _instant(self._clock.now())).total_seconds()
        return min(max(remaining, 0.0), self._poll_interval)

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
        thread = threading.Thread(target=self._thread_main, name=_THREAD_NAME, daemon=True)
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
            with self._lock:
                if self._mode == "thread":
                    self._mode = None

    def _pass(self) -> float:
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
                delay = self._pass()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), delay)
        finally:
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

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop ticking. With ``start()``, wait (up to ``timeout``) for the thread to end.

        Jobs stay registered, so ``start()`` can resume them; missed firings are not backfilled.
        Already-submitted handles keep running in the runner.
        """
        timeout = check_optional_seconds("stop(timeout=...)", timeout,
                                         fix="use None to wait until the thread ends")
        self._stopping.set()
        self._notify()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
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
