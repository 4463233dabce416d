"""Pure decisions: option validation, retry eligibility and backoff delays.

Nothing here touches a loop, a thread or a clock, so every rule is unit-testable on its own.
"""

from __future__ import annotations

import difflib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from .exceptions import TaskTimeoutError

__all__ = [
    "BACKENDS",
    "BACKOFFS",
    "DEP_POLICIES",
    "EXTERNAL_BACKENDS",
    "ON_TASK_ERROR",
    "Backend",
    "Backoff",
    "DepFailurePolicy",
    "OnTaskError",
    "RetryPolicy",
    "check_choice",
    "check_non_negative",
    "close_matches",
    "did_you_mean",
]

# The option strings as Literal types (pyWorkflowy 0.1.0 exports the first three), for users'
# annotations; the tuples below, read from them, are what the checks use at run time.
Backend = Literal["asyncio", "thread", "process", "dask"]
Backoff = Literal["none", "linear", "exponential"]
DepFailurePolicy = Literal["fail", "skip", "run-anyway"]
OnTaskError = Literal["raise", "log", "continue"]
# "dask" names a lane whose executor the user supplies (TaskRunner(executors={"dask": ...})):
# the engine knows the name, never the library.
BACKENDS: tuple[str, ...] = get_args(Backend)
EXTERNAL_BACKENDS: tuple[str, ...] = ("dask",)
BACKOFFS: tuple[str, ...] = get_args(Backoff)
DEP_POLICIES: tuple[str, ...] = get_args(DepFailurePolicy)
ON_TASK_ERROR: tuple[str, ...] = get_args(OnTaskError)


def close_matches(word: str, choices: Iterable[str], n: int = 1, cutoff: float = 0.6
                  ) -> list[str]:
    """The (at most ``n``) ``choices`` that look most like ``word``, best first."""
    return difflib.get_close_matches(word, list(choices), n=n, cutoff=cutoff)


def did_you_mean(word: object, choices: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the choice nearest ``word``; empty when none is near.

    The one way every "unknown name" message of the engine and the notebook layer suggests a
    fix, so they all read alike.
    """
    if not isinstance(word, str):
        return ""
    close = close_matches(word, choices)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_choice(what: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``; otherwise a ValueError that lists them."""
    if isinstance(value, str) and value in choices:
        return value
    listed = ", ".join(repr(c) for c in choices)
    raise ValueError(f"unknown {what} {value!r}{did_you_mean(value, choices)}: use one of {listed}")


def check_non_negative(what: str, value: float | None, *, integer: bool = False,
                       allow_none: bool = True, positive: bool = False) -> None:
    """Reject negative (or, with ``positive``, zero) numbers with a message naming the knob."""
    if value is None:
        if allow_none:
            return
        raise TypeError(f"{what} must be a number, not None")
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "an integer" if integer else "a number"
        raise TypeError(f"{what} must be {kind}, got {value!r} ({type(value).__name__})")
    if integer and not isinstance(value, int):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    if value != value:  # NaN compares unequal to itself and would slip past the checks below
        raise ValueError(f"{what} must be a number, got NaN")
    if positive and value <= 0:
        raise ValueError(f"{what} must be greater than 0, got {value!r}")
    if value < 0:
        raise ValueError(f"{what} must be >= 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When to try again and how long to wait first."""

    retries: int = 0
    retry_on: tuple[type[BaseException], ...] = (Exception,)
    backoff: str = "exponential"
    backoff_base: float = 1.0
    backoff_max: float = 30.0
    jitter: float = 0.0

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """Retry unless attempts are used up, the error is a timeout, or not in ``retry_on``."""
        if attempt >= self.max_attempts or isinstance(error, TaskTimeoutError):
            return False
        return isinstance(error, self.retry_on)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if self.backoff == "linear":
            base = self.backoff_base * attempt
        elif self.backoff == "exponential":
            # 2 ** large attempt would overflow to a huge float; the cap makes it moot.
            base = self.backoff_base * 2.0 ** min(attempt - 1, 1000)
        else:
            base = 0.0
        base = min(base, self.backoff_max)
        if self.jitter:
            base += (rng or random).uniform(0.0, self.jitter)
        return base
