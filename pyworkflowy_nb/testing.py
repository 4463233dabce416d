"""Helpers for testing workflows: :class:`MockClock`, virtual time for runners and schedules.

Pass one clock to the runner and the scheduler under test, ``TaskRunner(clock=clock)`` and
``Scheduler(runner, clock=clock)``; backoff waits, timeouts, ``asyncio.sleep`` in task bodies,
schedules and the live widget's timers then count virtual seconds, and with
``MockClock(autojump_threshold=0)`` a run that only waits finishes at once. Standard library only.
"""

from __future__ import annotations

from ._mockclock import MockClock as MockClock

__all__ = ["MockClock"]
