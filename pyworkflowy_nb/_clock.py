"""Clocks for the scheduler: the real one and a fake one for deterministic tests.

Design decisions
----------------
* A clock is anything with ``now() -> datetime``. The scheduler never reads time any other
  way, so swapping in :class:`FakeClock` makes ``tick()`` fully deterministic.
* :class:`SystemClock` returns *aware* datetimes by default, in the machine's zone when it can
  be identified (``TZ`` or ``/etc/localtime``) and otherwise at the current UTC offset. Aware
  times compare as absolute instants, so interval jobs keep their pace when the wall clock
  jumps at a daylight-saving change. Pass ``tz=`` to pin a zone.
* :class:`FakeClock` keeps whatever kind of datetime it starts with: naive stays naive (plain
  wall-clock arithmetic), aware stays aware and advances in absolute time.
* pyWorkflowy 0.1.0 took a clock as a zero-argument callable returning epoch seconds
  (``time.time`` or a test's counter). :class:`EpochClock` wraps one into a :class:`Clock`; its
  readings are aware, in the same zone :class:`SystemClock` would use, so such a clock behaves
  exactly like the real one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["Clock", "EpochClock", "FakeClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What the scheduler needs from a clock: the current time."""

    def now(self) -> datetime:
        """The current time, naive or aware (a given clock should always return the same kind)."""
        ...


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


class SystemClock:
    """The real time. ``tz=None`` means the machine's local zone (see the module docstring)."""

    def __init__(self, tz: tzinfo | None = None) -> None:
        if tz is not None and not isinstance(tz, tzinfo):
            raise TypeError(f"SystemClock(tz=...) must be a tzinfo such as ZoneInfo('Europe/Paris')"
                            f" or None for the local zone, got {tz!r}")
        self._tz = tz if tz is not None else _local_zone()

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


class EpochClock:
    """A :class:`Clock` over a zero-argument callable returning epoch seconds (0.1.0's clocks).

    ``tz=None`` means the machine's local zone, as for :class:`SystemClock`.
    """

    def __init__(self, read: Callable[[], float], tz: tzinfo | None = None) -> None:
        if not callable(read):
            raise TypeError(f"EpochClock needs a callable returning epoch seconds, got {read!r}")
        self._read = read
        self._tz = tz if tz is not None else _local_zone()

    def now(self) -> datetime:
        seconds = self._read()
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise TypeError(
                f"the scheduler's clock {self._read!r} returned {seconds!r}; it must return "
                "epoch seconds as a number, like time.time()")
        if self._tz is None:
            return datetime.fromtimestamp(seconds, UTC).astimezone()
        return datetime.fromtimestamp(seconds, self._tz)

    def __repr__(self) -> str:
        return f"EpochClock({self._read!r})"


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


class FakeClock:
    """A clock that only moves when told to; thread-safe.

    >>> clock = FakeClock(datetime(2024, 1, 1, 9, 0))
    >>> clock.advance(90)
    >>> clock.now()
    datetime.datetime(2024, 1, 1, 9, 1, 30)
    """

    def __init__(self, start: datetime) -> None:
        if not isinstance(start, datetime):
            raise TypeError(f"FakeClock needs a datetime to start at, got {type(start).__name__}")
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, amount: float | timedelta) -> None:
        """Move forward by ``amount`` seconds (or a timedelta) of real elapsed time."""
        step = _as_timedelta(amount)
        if step < timedelta(0):
            raise ValueError(f"advance() only moves forward, got {amount!r}; use set() to go back")
        with self._lock:
            current = self._now
            if current.tzinfo is None:
                self._now = current + step
            else:
                # Aware arithmetic in Python adds to the wall clock; go through UTC so that an
                # advance across a DST change moves by elapsed time.
                self._now = (current.astimezone(UTC) + step).astimezone(current.tzinfo)

    def set(self, when: datetime) -> None:
        """Jump to ``when`` (forwards or backwards); it must be naive/aware like the start."""
        if not isinstance(when, datetime):
            raise TypeError(f"set() needs a datetime, got {type(when).__name__}")
        with self._lock:
            if (when.tzinfo is None) != (self._now.tzinfo is None):
                kind = "naive" if self._now.tzinfo is None else "aware"
                raise ValueError(
                    f"set({when!r}): this FakeClock holds {kind} datetimes; pass a {kind} one"
                )
            self._now = when

    def __repr__(self) -> str:
        return f"FakeClock({self.now()!r})"
