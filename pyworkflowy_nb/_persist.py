"""Persistence: the one piece that turns handles into checkpoint records and back.

The runner builds a :class:`Persistence` when it has a checkpointer and hands it to the
dispatcher, which calls it at three points and knows nothing else of checkpoints:

* :meth:`prime` when a handle is admitted: a completed record with the same key and fingerprint
  makes the handle COMPLETED from the record (the dispatcher then counts it as finished);
* :meth:`commit` with a pass's completions *before* they become visible (file checkpointers,
  where :attr:`durable` is true): their records go to the journal in one write;
* :meth:`ended` when a handle ends otherwise (or for a whole-state checkpointer).

It owns the restored records, the record format of a handle and the :class:`CheckpointWriter`
that does the disk work; :meth:`flush` at the end of a run makes everything durable. Keeping
this in one place means the dispatcher's hot path pays one attribute test when no checkpoint
is configured, and a change of record format touches one module.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from ._checkpoint import Checkpointer
from ._handle import TaskHandle, TaskStatus
from ._records import STATE_VERSION, Record, state_entry
from ._writer import CheckpointWriter

__all__ = ["Persistence", "restorable"]

_COMPLETED = TaskStatus.COMPLETED


def restorable(records: Mapping[str, Record], key: str, fingerprint: str | None
               ) -> Record | None:
    """The record a resume would restore for the task ``key`` with ``fingerprint``, or None.

    Only a completed record whose fingerprint matches counts: the same key with other inputs
    or code must run again. ``records`` are a checkpoint's, as ``read_records()`` returns them.
    """
    rec = records.get(key)
    if rec is None or rec.get("status") != "completed" or rec.get("fingerprint") != fingerprint:
        return None
    return rec


class Persistence:
    """Records, priming and the journal of one runner's checkpoint."""

    __slots__ = ("_handles", "_lock", "checkpointer", "durable", "restored", "writer")

    def __init__(self, checkpointer: Checkpointer, interval: float,
                 handles: Mapping[str, TaskHandle[Any]], lock: threading.RLock) -> None:
        self.checkpointer = checkpointer
        self._handles = handles  # the runner's registry, read for whole-state saves
        self._lock = lock
        self.restored: dict[str, Record] = {}
        self.writer = CheckpointWriter(checkpointer, interval, self.state)
        self.durable = self.writer.durable

    # -- admission ------------------------------------------------------------------------------
    def prime(self, h: TaskHandle[Any]) -> bool:
        """Complete ``h`` from its stored record if it matches; True when it did."""
        restored = self.restored
        if not restored:
            return False
        rec = restorable(restored, h.key, h.fingerprint)
        if rec is None:
            return False
        h.status = _COMPLETED
        h._value = rec.get("value")
        h.attempts = rec["attempts"]  # records are validated when they are read
        h.started_at = rec["started_at"]
        h.finished_at = rec["finished_at"]
        h.restored = True
        return True

    # -- records --------------------------------------------------------------------------------
    @staticmethod
    def record_of(h: TaskHandle[Any], status: TaskStatus | None = None) -> Record:
        """What the checkpoint stores of ``h`` (as if it had ``status``, when given)."""
        st = status or h.status
        args, kwargs = h._refs or (h.args, h.kwargs)  # handle arguments by key
        return {
            "key": h.key,
            "name": h.name,
            "fingerprint": h.fingerprint,
            "status": st._value_,
            "value": h._value if st is _COMPLETED else None,
            "error": None if h._exception is None else repr(h._exception),
            "attempts": h.attempts,
            "started_at": h.started_at,
            "finished_at": h.finished_at,
            # Tuples, not lists: a record of atoms and tuples of atoms is soon untracked by
            # the cyclic GC, which would otherwise walk every kept record on each collection.
            "args": args,
            "kwargs": kwargs,
            "depends_on": tuple([p.key for p in h.parents]),
        }

    def commit(self, completed: list[TaskHandle[Any]]) -> None:
        """Journal ``completed`` (value and finish time set, status not yet) in one write."""
        record_of = self.record_of
        self.writer.commit([record_of(h, _COMPLETED) for h in completed])

    def ended(self, h: TaskHandle[Any]) -> None:
        """``h`` became terminal without a commit: its record rides along later."""
        self.writer.ended(lambda: self.record_of(h))

    def state(self) -> dict[str, Any]:
        """The whole state for a custom Checkpointer: every handle in submission order, then
        restored records that were not submitted again (so a later resume keeps them)."""
        with self._lock:
            handles = self._handles
            entries = [state_entry(self.record_of(h)) for h in list(handles.values())]
            entries += [state_entry(r) for k, r in self.restored.items() if k not in handles]
        return {"version": STATE_VERSION, "handles": entries}

    def flush(self) -> None:
        """Make everything recorded so far durable; raises the first write failure."""
        self.writer.flush()
