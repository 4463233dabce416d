"""MockClock: virtual time for tests of workflows, shipped with the library (as trio ships one).

Design decisions
----------------
* Time is a float of epoch seconds that moves only when told to (:meth:`MockClock.advance`,
  :meth:`MockClock.set`) or, in autojump mode, when everything that waits on the clock is
  waiting. It never moves by itself, so a test reads exact virtual durations.
* The clock is the meeting point of everything that waits on it, the *parties*: each event
  loop of a runner under this clock (``_vloop.py``) and each thread blocked in an event's
  ``wait()`` (the scheduler's thread). A party says whether it is idle and until when it sleeps.
  An autojump moves time to the earliest such deadline only when every party is idle, none is
  already due, and at least one has a deadline; "idle" for a runner's loop also means no attempt
  is in flight on a thread, process or Dask lane, so a timeout is never jumped over while a real
  worker runs. Whoever finds everything idle (after ``autojump_threshold`` real seconds of
  nothing happening) makes the jump and wakes the others.
* Timers from :meth:`call_later` (the widget's redraws) are passive: they fire when time passes
  them, in the thread that moved the clock, in order, but an autojump never aims at them. A
  heartbeat timer would otherwise turn one jump of 70 s into seventy jumps of one.
* ``start`` may be epoch seconds or a datetime. A naive datetime keeps ``now()`` naive (plain
  wall-clock arithmetic, no daylight saving) and counts as UTC for ``time()``; an aware one
  keeps its zone and advances in absolute time. The default start is a fixed instant,
  2024-01-01 00:00 UTC, so test output does not depend on the day it runs.
* :class:`FakeClock`, the scheduler's older test clock, is a deprecated subclass.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from ._clock import Cancellable, WaitEvent, _as_timedelta

__all__ = ["FakeClock", "MockClock", "Party", "Timer"]

DEFAULT_START = 1704067200.0  # 2024-01-01T00:00:00Z
# Real seconds between second looks of an autojumping party that found someone busy. Every
# change wakes the parties anyway; this only bounds the damage of a wake-up nobody sent.
_RECHECK = 1.0


class Party:
    """Something that waits on a MockClock: idle or not, and until when it sleeps.

    ``busy`` is asked as well when the party is idle (a loop with attempts in flight on a
    worker thread is not idle however quiet the loop is); ``wake`` tells it that time moved.
    """

    __slots__ = ("busy", "deadline", "idle", "wake")

    def __init__(self, wake: Callable[[], None] | None = None,
                 busy: Callable[[], bool] | None = None) -> None:
        self.idle = False
        self.deadline: float | None = None
        self.wake = wake
        self.busy = busy


class Timer:
    """A timer armed by :meth:`MockClock.call_later`: when it is due, for how long it was set,
    and whether it was cancelled or fired (tests inspect these)."""

    __slots__ = ("callback", "cancelled", "delay", "due", "fired")

    def __init__(self, due: float, delay: float, callback: Callable[[], None]) -> None:
        self.due = due
        self.delay = delay
        self.callback = callback
        self.cancelled = False
        self.fired = False

    def cancel(self) -> None:
        self.cancelled = True

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else " fired" if self.fired else ""
        return f"<Timer due={self.due!r} delay={self.delay!r}{state}>"


class _MockEvent:
    """A ``threading.Event`` whose ``wait(timeout)`` counts the mock clock's seconds."""

    def __init__(self, clock: MockClock) -> None:
        self._clock = clock
        self._flag = False

    def set(self) -> None:
        with self._clock._cond:
            self._flag = True
            self._clock._cond.notify_all()

    def clear(self) -> None:
        with self._clock._cond:
            self._flag = False

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: float | None = None) -> bool:
        clock = self._clock
        cond = clock._cond
        with cond:
            if self._flag:
                return True
            party = Party()
            party.idle = True
            party.deadline = None if timeout is None else clock._t + max(0.0, timeout)
            clock._parties.add(party)
            try:
                while not self._flag:
                    if party.deadline is not None and clock._t >= party.deadline:
                        return False
                    threshold = clock._autojump
                    if threshold == 0.0 or not cond.wait(
                            None if threshold == math.inf else threshold):
                        if clock._jump():
                            # Loops and timers are told without the lock (timers call back).
                            cond.release()
                            try:
                                clock._moved()
                            finally:
                                cond.acquire()
                        elif threshold == 0.0:
                            cond.wait(_RECHECK)
                return True
            finally:
                clock._parties.discard(party)
                clock._left()


class MockClock:
    """A clock for tests: ``time()`` reads it, :meth:`advance` moves it, and with
    ``autojump_threshold`` it jumps ahead by itself whenever everything is waiting.

    >>> from pyworkflowy_nb.testing import MockClock
    >>> clock = MockClock(start=0.0)
    >>> clock.advance(70)
    >>> clock.time()
    70.0

    Pass it as ``TaskRunner(clock=clock)`` and ``Scheduler(clock=clock)``: backoff waits,
    timeouts, ``asyncio.sleep`` in task bodies, schedules and the widget's timers then all run
    on virtual time. ``autojump_threshold`` (real seconds, ``math.inf`` by default as in trio)
    is how long everything must have been waiting before the clock jumps to the next deadline;
    0 jumps at once.
    """

    virtual = True

    def __init__(self, start: float | datetime = DEFAULT_START, *,
                 autojump_threshold: float = math.inf, tz: tzinfo | None = None) -> None:
        if tz is not None and not isinstance(tz, tzinfo):
            raise TypeError(f"MockClock(tz=...) must be a tzinfo such as ZoneInfo('Europe/Paris')"
                            f" or None for UTC, got {tz!r}")
        if isinstance(start, datetime):
            self._start: datetime = start
            self._origin = (start.replace(tzinfo=UTC) if start.tzinfo is None else start
                            ).timestamp()
        elif isinstance(start, int | float) and not isinstance(start, bool) and math.isfinite(
                start):
            self._start = datetime.fromtimestamp(start, tz or UTC)
            self._origin = float(start)
        else:
            raise TypeError(f"MockClock(start=...) takes epoch seconds or a datetime, got "
                            f"{start!r}")
        if tz is not None and isinstance(start, datetime):
            raise ValueError("MockClock(start=datetime, tz=...): the datetime's own zone "
                             "applies; give the zone in the datetime, or start from seconds")
        self._t = self._origin
        self._cond = threading.Condition(threading.Lock())
        self._parties: set[Party] = set()
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._autojump = math.inf
        self.autojump_threshold = autojump_threshold

    # -- reading -----------------------------------------------------------------------------
    def time(self) -> float:
        """Virtual epoch seconds."""
        return self._t

    def now(self) -> datetime:
        """The virtual time as a datetime of the start's kind (see the module docstring)."""
        elapsed = timedelta(seconds=self._t - self._origin)
        start = self._start
        if start.tzinfo is None:
            return start + elapsed
        # Aware arithmetic adds to the wall clock; through UTC it adds elapsed time.
        return (start.astimezone(UTC) + elapsed).astimezone(start.tzinfo)

    @property
    def autojump_threshold(self) -> float:
        """Real seconds of everything waiting before the clock jumps; ``math.inf``: never."""
        return self._autojump

    @autojump_threshold.setter
    def autojump_threshold(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ValueError(f"autojump_threshold must be a number of real seconds >= 0 "
                             f"(math.inf to never jump), got {value!r}")
        with self._cond:
            self._autojump = float(value)
            self._cond.notify_all()
        self._wake_loops()

    # -- moving ------------------------------------------------------------------------------
    def advance(self, seconds: float | timedelta) -> None:
        """Move forward by ``seconds`` (or a timedelta); due timers fire before it returns."""
        step = _as_timedelta(seconds).total_seconds()
        if step < 0:
            raise ValueError(f"advance() only moves forward, got {seconds!r}; use set() to go "
                             "back")
        with self._cond:
            target = self._t + step
        # Timers fire one by one at their own times, so a callback reads the time it was due.
        self._fire_timers(target)
        with self._cond:
            self._t = max(self._t, target)  # a callback may have moved it on
        self._moved()

    def set(self, when: datetime | float) -> None:
        """Jump to ``when`` (a datetime of the start's kind, or epoch seconds), forwards or
        backwards. Going back is for scheduler tests: never do it under a running runner."""
        if isinstance(when, datetime):
            if (when.tzinfo is None) != (self._start.tzinfo is None):
                kind = "naive" if self._start.tzinfo is None else "aware"
                raise ValueError(f"set({when!r}): this clock holds {kind} datetimes; pass a "
                                 f"{kind} one")
            target = self._origin + (when - self._start).total_seconds() \
                if when.tzinfo is None else when.timestamp()
        elif isinstance(when, int | float) and not isinstance(when, bool) and math.isfinite(
                when):
            target = float(when)
        else:
            raise TypeError(f"set() needs a datetime or epoch seconds, got {when!r}")
        with self._cond:
            self._t = target
        self._moved()

    def _moved(self) -> None:
        """Time changed: wake the waiting threads and loops, then fire due timers in order."""
        with self._cond:
            self._cond.notify_all()
        self._wake_loops()
        self._fire_timers(self._t)

    def _fire_timers(self, upto: float) -> None:
        while True:
            with self._cond:
                timers = self._timers
                while timers and timers[0][2].cancelled:
                    heapq.heappop(timers)
                if not timers or timers[0][0] > upto:
                    return
                timer = heapq.heappop(timers)[2]
                self._t = max(self._t, timer.due)
                timer.fired = True
            timer.callback()

    def timers(self) -> list[Timer]:
        """The armed :meth:`call_later` timers, earliest first."""
        with self._cond:
            return [t for _, _, t in sorted(self._timers) if not (t.cancelled or t.fired)]

    def _wake_loops(self) -> None:
        with self._cond:
            wakes = [p.wake for p in self._parties if p.wake is not None]
        for wake in wakes:
            wake()

    # -- autojump ----------------------------------------------------------------------------
    def _jump(self) -> bool:
        """Jump to the earliest deadline if every party is idle (``_cond`` held); True if the
        clock moved. Waiting threads are notified here; the caller must then call
        :meth:`_moved` without the lock, for the loops and the timers."""
        if self._autojump == math.inf:
            return False
        target = math.inf
        for party in self._parties:
            if not party.idle or (party.busy is not None and party.busy()):
                return False
            deadline = party.deadline
            if deadline is not None:
                if deadline <= self._t:
                    return False  # someone is due and about to run: let it
                target = min(target, deadline)
        if target == math.inf:
            return False
        self._t = target
        self._cond.notify_all()
        return True

    # -- waiting primitives for the engine ---------------------------------------------------
    def event(self) -> WaitEvent:
        """A ``threading.Event`` whose ``wait(timeout)`` counts this clock's seconds."""
        return _MockEvent(self)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        """Run ``callback()`` once when the clock passes ``delay`` seconds from now, in the
        thread that moves it there (a passive timer: autojumps never aim at it)."""
        delay = max(0.0, delay)
        with self._cond:
            timer = Timer(self._t + delay, delay, callback)
            heapq.heappush(self._timers, (timer.due, next(self._seq), timer))
        return timer

    def _add_party(self, party: Party) -> None:
        with self._cond:
            self._parties.add(party)

    def _remove_party(self, party: Party) -> None:
        with self._cond:
            self._parties.discard(party)
            self._left()

    def _left(self) -> None:
        """A party left (``_cond`` held): the rest may be able to jump now, so they look again.
        Waking a loop only writes to its pipe, which is safe under the lock."""
        self._cond.notify_all()
        for party in self._parties:
            if party.wake is not None:
                party.wake()

    def _idle_wait(self, party: Party, deadline: float | None, real_timeout: float | None,
                  poll: Callable[[float | None], Any]) -> Any:
        """For a loop's selector: mark ``party`` idle until ``deadline``, wait in ``poll``
        (real seconds) and jump when everything stayed idle for the threshold."""
        with self._cond:
            party.idle = True
            party.deadline = deadline
            threshold = self._autojump
        try:
            if threshold == math.inf:
                return poll(real_timeout)
            slice_ = threshold if real_timeout is None else min(threshold, real_timeout)
            events = poll(slice_)
            if events:
                return events
            with self._cond:
                jumped = self._jump()
            if jumped:
                self._moved()
            if jumped or (deadline is not None and self._t >= deadline):
                return events
            # Not everyone is idle yet: wait for news (a wake-up writes to the loop's pipe).
            rest = _RECHECK if real_timeout is None else min(_RECHECK, real_timeout - slice_)
            return poll(max(0.0, rest))
        finally:
            with self._cond:
                party.idle = False

    def __repr__(self) -> str:
        jump = "" if self._autojump == math.inf else f", autojump_threshold={self._autojump:g}"
        return f"MockClock({self._t!r}{jump})"


class FakeClock(MockClock):
    """Deprecated: use :class:`pyworkflowy_nb.testing.MockClock`, which it now is.

    ``FakeClock(start)`` is ``MockClock(start)``: the same ``now()``, ``advance()`` and ``set()``.
    """

    def __init__(self, start: datetime) -> None:
        warnings.warn("FakeClock is deprecated: use pyworkflowy_nb.testing.MockClock(start), "
                      "which has the same now(), advance() and set()", DeprecationWarning,
                      stacklevel=2)
        if not isinstance(start, datetime):
            raise TypeError(f"FakeClock needs a datetime to start at, got {type(start).__name__}")
        super().__init__(start)

    def __repr__(self) -> str:
        return f"FakeClock({self.now()!r})"

