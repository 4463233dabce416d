"""Snapshots that read both as an attribute and as a call.

pyWorkflowy 0.1.0 made ``runner.handles()`` and ``scheduler.jobs()`` methods; here they were
properties. Rather than break either spelling, the property returns a :class:`CallableList`: a
plain ``list`` snapshot (so ``runner.handles == [...]``, indexing and ``len`` work as before)
that, when called, returns a fresh copy of itself (so ``runner.handles()`` works as in 0.1.0).
"""

from __future__ import annotations

from typing import TypeVar

__all__ = ["CallableList"]

T = TypeVar("T")


class CallableList(list[T]):
    """A list snapshot; calling it returns a new plain list with the same items."""

    __slots__ = ()

    def __call__(self) -> list[T]:
        return list(self)
