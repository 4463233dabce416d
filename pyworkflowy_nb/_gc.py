"""Deferring CPython's full garbage collections while a runner holds a large graph.

Why: a full (oldest-generation) collection walks every live container object, and a graph of
100,000 handles is several hundred thousand of them that all live until the run ends. The
collector starts a full pass whenever the oldest generation has grown by a quarter, so while a
big graph is submitted it walks the whole graph again and again: about a third of the time of
a 100k-task DAG went there. None of those passes can free a handle (the runner holds them all).

What: when a dispatcher's unfinished handles reach :data:`LARGE`, it takes a :class:`GcHold`;
while any hold is taken the oldest generation's threshold is raised so that full passes are
deferred. Young collections still run as usual, so cyclic garbage that task bodies make and
drop is still freed; only garbage old enough to reach the oldest generation waits. The hold
is given back when the run ends (or the runner shuts down); with the last hold the original
thresholds come back, unless somebody changed them meanwhile (then theirs stay), and one full
pass is left to the collector's own schedule. Holds are counted, so several runners nest.
"""

from __future__ import annotations

import gc
import threading

__all__ = ["LARGE", "GcHold"]

LARGE = 10_000  # unfinished handles from which full collections are deferred
_DEFERRED = 1_000_000  # the oldest generation's threshold meanwhile (in young passes)

_lock = threading.Lock()
_holders = 0
_saved: tuple[int, int, int] | None = None
_ours: tuple[int, int, int] | None = None


class GcHold:
    """One owner's claim on deferred full collections; :meth:`take` and :meth:`give` pair up
    (each at most once in a row), so a dispatcher can call them from several paths."""

    __slots__ = ("held",)

    def __init__(self) -> None:
        self.held = False

    def take(self) -> None:
        global _holders, _saved, _ours
        with _lock:
            if self.held:
                return
            self.held = True
            _holders += 1
            if _holders == 1:
                _saved = gc.get_threshold()
                gen0, gen1, _ = _saved
                _ours = (gen0, gen1, max(_saved[2], _DEFERRED))
                gc.set_threshold(*_ours)

    def give(self) -> None:
        global _holders, _saved, _ours
        with _lock:
            if not self.held:
                return
            self.held = False
            _holders -= 1
            if _holders == 0 and _saved is not None:
                if gc.get_threshold() == _ours:  # nobody else changed them meanwhile
                    gc.set_threshold(*_saved)
                _saved = _ours = None
