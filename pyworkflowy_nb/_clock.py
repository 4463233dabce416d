"""The engine's one clock seam: what time it is, how a thread waits, how a timer is set.

Design decisions
----------------
* One protocol, :class:`Clock`, serves the dispatcher (timestamps), the scheduler (its
  timetable and the waits of its thread) and the notebook widget (its redraw timers):
  ``time()`` is epoch seconds, ``now()`` the same instant as a datetime, ``event()`` a
  ``threading.Event`` whose ``wait(timeout)`` counts this clock's seconds, and
  ``call_later(delay, callback)`` a one-shot timer off the caller's thread. Nothing in the
  engine reads time any other way, except pacing that is about the machine rather than the
  workflow (how often the loop yields, the checkpoint writer's fsync cadence, a caller's own
  ``handle.wait(timeout)``), which stays on real time on purpose.
* The event loop's timers (backoff waits, timeouts, ``asyncio.sleep`` in a task body) are the
  loop's business: under the real clock the runner uses a stock loop; under a
  :class:`~pyworkflowy_nb.testing.MockClock` it uses a loop whose ``time()`` is the mock's
  (``_vloop.py``), so no engine code needs to know which clock it has.
* Older scheduler clocks had only ``now() -> datetime``, and pyWorkflowy 0.1.0's were
  zero-argument callables returning epoch seconds; :func:`as_clock` wraps both into a
  :class:`Clock` (:class:`DatetimeClock`, :class:`EpochClock`) so they keep working.
* :class:`SystemClock` returns *aware* datetimes by default, in the machine's zone when it can
  be identified (``TZ`` or ``/etc/localtime``) and otherwise at the current UTC offset. Aware
  times compare as absolute instants, so interval jobs keep their pace when the wall clock
  jumps at a daylight-saving change. Pass ``tz=`` to pin a zone.
* pyWorkflowy 0.1.0 took a clock as a zero-argument callable returning epoch seconds
  (``time.time`` or a test's counter). :class:`EpochClock` wraps one into a :class:`Clock`; its
  readings are aware, in the same zone :class:`SystemClock` would use, so such a clock behaves
  exactly like the real one.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["Cancellable", "Clock", "DatetimeClock", "EpochClock", "SystemClock", "WaitEvent",
           "as_clock"]


class Cancellable(Protocol):
    """A timer that :meth:`Clock.call_later` armed."""

    def cancel(self) -> None: ...


class WaitEvent(Protocol):
    """A ``threading.Event`` whose ``wait(timeout)`` counts seconds of the clock that made it."""

    def set(self) -> None: ...

    def clear(self) -> None: ...

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


@runtime_checkable
class Clock(Protocol):
    """The engine's one source of time (see the module docstring)."""

    def time(self) -> float:
        """The current time in epoch seconds, like ``time.time()``."""
        ...

    def now(self) -> datetime:
        """The current time as a datetime, naive or aware (a given clock always returns the
        same kind)."""
        ...

    def event(self) -> WaitEvent:
        """A new event whose ``wait(timeout)`` waits ``timeout`` seconds of this clock."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Cancellable:
        """Run ``callback()`` once, ``delay`` seconds of this clock from now, off the caller's
        thread (or, for a mock clock, in the thread that moves the clock past it)."""
        ...


def _thread_timer(delay: float, callback: Callable[[], None]) -> Cancellable:
    timer = threading.Timer(delay, callback)
    timer.name = "wfy-timer"
    timer.daemon = True
    timer.start()
    return timer


class _RealWaits:
    """Waits and timers on real time, for the clocks that read real time."""

    @staticmethod
    def event() -> WaitEvent:
        return threading.Event()

    @staticmethod
    def call_later(delay: float, callback: Callable[[], None]) -> Cancellable:
        return _thread_timer(delay, callback)


def _local_zone() -> tzinfo | None:
    """The machine's IANA zone, or None when it cannot be identified cheaply."""
    key = os.environ.get("TZ", "").lstrip(":")
    if key and not key.startswith("/"):
        try:
            return ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            # A POSIX rule string such as "CET-1CEST": fall back to the current offset.
            return None
    try:
        with open(key or "/etc/localtime", "rb") as handle:
            return ZoneInfo.from_file(handle, key="localtime")
    except (OSError, ValueError):
        return None


class SystemClock(_RealWaits):
    """The real time. ``tz=None`` means the machine's local zone (see the module docstring)."""

    def __init__(self, tz: tzinfo | None = None) -> None:
        if tz is not None and not isinstance(tz, tzinfo):
            raise TypeError(f"SystemClock(tz=...) must be a tzinfo such as ZoneInfo('Europe/Paris')"
                            f" or None for the local zone, got {tz!r}")
        self._tz = tz if tz is not None else _local_zone()

    # The function itself, not a method calling it: the dispatcher reads it twice per task.
    time = staticmethod(time.time)

    @property
    def tz(self) -> tzinfo | None:
        """The zone of :meth:`now`; None means "the current local UTC offset"."""
        return self._tz

    def now(self) -> datetime:
        if self._tz is None:
            return datetime.now().astimezone()
        return datetime.now(self._tz)

    def __repr__(self) -> str:
        return f"SystemClock(tz={self._tz!r})"


class EpochClock(_RealWaits):
    """A :class:`Clock` over a zero-argument callable returning epoch seconds (0.1.0's clocks).

    ``tz=None`` means the machine's local zone, as for :class:`SystemClock`.
    """

    def __init__(self, read: Callable[[], float], tz: tzinfo | None = None) -> None:
        if not callable(read):
            raise TypeError(f"EpochClock needs a callable returning epoch seconds, got {read!r}")
        self._read = read
        self._tz = tz if tz is not None else _local_zone()

    def time(self) -> float:
        seconds = self._read()
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(
                f"the scheduler's clock {self._read!r} returned {seconds!r}; it must return "
                "epoch seconds as a number, like time.time()")
        return float(seconds)

    def now(self) -> datetime:
        seconds = self.time()
        if self._tz is None:
            return datetime.fromtimestamp(seconds, UTC).astimezone()
        return datetime.fromtimestamp(seconds, self._tz)

    def __repr__(self) -> str:
        return f"EpochClock({self._read!r})"


class DatetimeClock(_RealWaits):
    """A :class:`Clock` over an older scheduler clock that only has ``now() -> datetime``.

    Naive readings count as local wall time for :meth:`time`, as ``datetime.timestamp`` does.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def now(self) -> datetime:
        when = self._inner.now()
        if not isinstance(when, datetime):
            raise TypeError(f"the clock {self._inner!r} returned {when!r} from now(); it must "
                            "return a datetime")
        return when

    def time(self) -> float:
        return self.now().timestamp()

    def __repr__(self) -> str:
        return repr(self._inner)


def as_clock(clock: object, what: str) -> Clock | None:
    """``clock`` as a :class:`Clock` (None stays None); TypeError naming ``what`` otherwise."""
    if clock is None or isinstance(clock, Clock):
        return clock
    # A Clock has a now() *method*; a 0.1.0-style callable clock may have `now` as plain data.
    if callable(getattr(clock, "now", None)):
        return DatetimeClock(clock)
    if callable(clock) and not isinstance(clock, type):
        return EpochClock(clock)
    raise TypeError(
        f"{what} must be a clock such as pyworkflowy_nb.testing.MockClock() (time(), now(), "
        "event(), call_later()), an object with a now() method returning a datetime, or a "
        f"zero-argument callable returning epoch seconds (like time.time), got {clock!r}")


def _as_timedelta(amount: float | timedelta) -> timedelta:
    if isinstance(amount, timedelta):
        return amount
    if isinstance(amount, bool) or not isinstance(amount, int | float):
        raise TypeError(
            f"advance() takes seconds (int or float) or a timedelta, got {type(amount).__name__}"
        )
    try:
        return timedelta(seconds=amount)
    except (OverflowError, ValueError):  # NaN, infinities, more than timedelta.max
        raise ValueError(
            f"advance() takes a finite number of seconds up to {timedelta.max.total_seconds():g}"
            f", got {amount!r}") from None
