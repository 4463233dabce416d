"""Argument rules: every public number, path and collaborator is checked where it is given.

A bad value must fail at the call that passed it, naming the knob, the value and the fix, and
never later (a hang in ``run()``, a dead writer thread, a scheduler job that fails when it fires)
nor as a stray ``OverflowError`` or ``AttributeError``. The constructors call these pure helpers,
so each rule lives here once and is unit-testable on its own.

Design decisions
----------------
* **Seconds** (timeouts, backoff, jitter, checkpoint and poll intervals, ``every()``) are an
  ``int`` or ``float`` (any ``numbers.Real``), never a ``bool``; NaN and infinities are refused;
  so is anything above :data:`MAX_SECONDS`. That bound is one year, or ``threading``'s own limit
  where a platform's is smaller (Windows: about 49 days): the engine sleeps on these values with
  ``threading`` waits, which raise ``OverflowError`` past ``threading.TIMEOUT_MAX``, and with
  ``loop.call_later``, and a delay of more than a year is a typo, not a plan. ``timeout=inf`` is
  refused rather than read as "no timeout", because ``None`` already says that.
* **Repeating intervals** (``Scheduler.every()``, ``poll_interval``) are at least
  :data:`MIN_INTERVAL`, one millisecond. Below that ``timedelta`` rounds towards zero (1e-12 s is
  ``timedelta(0)``, which makes a job due on every pass of the scheduler loop), and no scheduler
  that submits one task per firing can honour it anyway.
* **Huge integers** (``10**400``) do not fit a float; converting them is caught here and reported
  as a ``ValueError`` naming the knob, and the message shows their size, not their digits.
* **Counts** (``max_workers``) have a sanity bound, :data:`MAX_WORKERS`: a process pool started
  with fork creates all its workers at once, so ``max_workers=10**400`` would fork forever.
  ``retries`` and ``priority`` stay unbounded integers: nothing turns them into a float or a
  sleep.
* **Collaborators** are checked by type where the value is given: a runner is a
  ``TaskRunner`` (subclasses welcome), executors are a ``Mapping`` from backend name to executor.
* Wrong types are ``TypeError``; right type, wrong value is ``ValueError``.
"""

from __future__ import annotations

import math
import numbers
import os
import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

__all__ = [
    "MAX_SECONDS",
    "MAX_WORKERS",
    "MIN_INTERVAL",
    "check_at_most",
    "check_executor_map",
    "check_file_path",
    "check_interval",
    "check_label",
    "check_optional_seconds",
    "check_runner",
    "check_seconds",
    "seconds_ok",
    "seconds_range",
    "show",
]

MAX_SECONDS: float = float(min(365 * 24 * 3600, threading.TIMEOUT_MAX))
MIN_INTERVAL: float = 0.001
MAX_WORKERS: int = 1_000_000


def show(value: object) -> str:
    """A short rendering of ``value`` for a message: huge integers by size, long reprs cut."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        digits = int(value.bit_length() * math.log10(2)) + 1
        return f"{'a negative' if value < 0 else 'an'} integer of about {digits} digits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _kind(value: object) -> str:
    return f"{show(value)} ({type(value).__name__})"


def seconds_range(minimum: float, above: bool) -> str:
    """The accepted range in words, e.g. ``> 0 and <= 31536000``."""
    low = f"> {minimum:g}" if above else f">= {minimum:g}"
    return f"{low} and <= {MAX_SECONDS:.0f}"


def seconds_ok(seconds: float, minimum: float, above: bool) -> bool:
    """True if ``seconds`` is finite and within ``[minimum, MAX_SECONDS]`` (``above``: the
    minimum itself excluded)."""
    return (math.isfinite(seconds) and minimum <= seconds <= MAX_SECONDS
            and not (above and seconds == minimum))


def check_seconds(what: str, value: object, *, minimum: float = 0.0, above: bool = False,
                  fix: str = "") -> float:
    """``value`` as float seconds within ``[minimum, MAX_SECONDS]`` (``above``: minimum excluded).

    Raises TypeError for a non-number or a bool, ValueError for NaN, infinities, huge integers
    and anything out of range; the message names ``what``, the value and ``fix``.
    """
    tail = f": {fix}" if fix else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a number of seconds, got {_kind(value)}{tail}")
    problem = f"{what} must be a finite number of seconds {seconds_range(minimum, above)}, got "
    try:
        seconds = float(value)
    except OverflowError:
        raise ValueError(problem + show(value) + tail) from None
    if not seconds_ok(seconds, minimum, above):
        raise ValueError(problem + show(value) + tail)
    return seconds


def check_optional_seconds(what: str, value: object, *, minimum: float = 0.0,
                           above: bool = False, fix: str = "") -> float | None:
    """Like :func:`check_seconds`, but ``None`` (meaning "no limit") passes through."""
    if value is None:
        return None
    return check_seconds(what, value, minimum=minimum, above=above, fix=fix)


def check_interval(what: str, value: object, *, fix: str = "") -> timedelta:
    """A repeating interval given as seconds or a ``timedelta``, within
    ``[MIN_INTERVAL, MAX_SECONDS]``; returned as a ``timedelta``."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
        if not seconds_ok(seconds, MIN_INTERVAL, above=False):
            raise ValueError(f"{what} must be between {MIN_INTERVAL:g} and {MAX_SECONDS:.0f} "
                             f"seconds, got {value!r}{': ' + fix if fix else ''}")
        return value
    return timedelta(seconds=check_seconds(what, value, minimum=MIN_INTERVAL, fix=fix))


def check_at_most(what: str, value: int | None, maximum: int, *, fix: str = "") -> None:
    """Refuse an (already type-checked) integer above ``maximum``."""
    if value is not None and value > maximum:
        raise ValueError(f"{what} must be <= {maximum}, got {show(value)}"
                         f"{': ' + fix if fix else ''}")


def check_label(what: str, value: object) -> str | None:
    """An optional name: None or a non-empty string."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {_kind(value)}")
    if not value:
        raise ValueError(f"{what} must not be empty: leave it out for the default name")
    return value


def check_runner(what: str, value: object, *, fix: str) -> None:
    """Refuse anything but a TaskRunner: the runner is used later, when a job fires or a task
    is queued, and failing then hides where the mistake was made. (A pool also has submit(),
    so looking for that method alone would let ``runner=pool`` through.)"""
    from ._run import TaskRunner  # here, not at the top: _run imports this module

    if not isinstance(value, TaskRunner):
        raise TypeError(f"{what} must be a TaskRunner, got {_kind(value)}: {fix}")


def check_executor_map(value: object) -> Mapping[Any, Any]:
    """``TaskRunner(executors=...)`` is a mapping from backend name to executor."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(
            f"executors must be a mapping from backend name to executor, got {_kind(value)}: "
            "pass e.g. executors={'thread': pool} or {'dask': client.get_executor(pure=False)}")
    return value


def check_file_path(what: str, path: object) -> None:
    """Refuse a file path that is not a path (an int would even be opened as a descriptor) or
    that is an existing directory: writing to it would fail only at the first write, mid-run.
    ``None`` (no file) passes."""
    if path is None:
        return
    if not isinstance(path, str | os.PathLike) or not os.fspath(path):
        raise TypeError(f"{what} must be a file path (a str or a pathlib.Path), "
                        f"got {_kind(path)}")
    if os.path.isdir(path):
        example = os.path.join(os.fspath(path), "checkpoint.json")
        raise ValueError(
            f"{what} {os.fspath(path)!r} is a directory, not a file: name a file inside it, "
            f"e.g. {example!r}")
