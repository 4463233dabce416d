"""The checkpoint writer: group commit on the loop thread, fsync and compaction beside it.

With a file checkpointer the dispatcher hands the completions of one pass to :meth:`commit`,
which appends them to the journal with one ``os.write`` *before* the dispatcher lets anyone see
them (children, waiters, the handle's status, the end of the run): that is the process-crash
guarantee, and it costs a write per pass, not per task, and never a wait on the disk. Records of
tasks that ended otherwise (failed, skipped, cancelled) matter less, since those tasks run again
anyway: they ride along with the next commit or the end of the run.

The writer thread does what may wait on the disk: it fsyncs the journal at most every
``interval`` seconds (as soon as it can at 0), which is the power-loss guarantee, and folds a
journal that grew past :data:`COMPACT_BYTES` into segments. The end of a run fsyncs and compacts
everything. A custom (whole-state) checkpointer gets ``save(state)`` from the thread at most
every ``interval`` seconds and once at the end of each run; it has no per-completion guarantee.

Failures never stop the run: the first one is kept and raised from :meth:`flush` at the end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ._checkpoint import Checkpointer, FileCheckpointer
from ._records import Record
from .exceptions import CheckpointError

__all__ = ["COMPACT_BYTES", "CheckpointWriter"]

logger = logging.getLogger("pyworkflowy_nb")

COMPACT_BYTES = 4 << 20  # a journal this big is folded into a segment by the writer thread
# At interval 0 the thread fsyncs as soon as it can, but lets this much time pass between two
# fsyncs so that commits arriving meanwhile share one: a tiny wait for it, and far fewer GIL
# hand-overs between it and the loop thread.
MIN_SYNC_GAP = 0.005


class CheckpointWriter:
    def __init__(self, checkpointer: Checkpointer, interval: float,
                 snapshot: Callable[[], dict[str, Any]]) -> None:
        self.checkpointer = checkpointer
        self.journal = checkpointer if isinstance(checkpointer, FileCheckpointer) else None
        self.interval = interval
        self._snapshot = snapshot
        self._buffer: list[Record] = []  # ended otherwise; waiting for the next append
        self._cond = threading.Condition()
        self._io = threading.Lock()  # sync, compaction and saves: the thread or a flush
        self._thread: threading.Thread | None = None
        self._dirty = False
        self._idle = False
        self._stop = False
        self._last = 0.0
        self.error: BaseException | None = None

    @property
    def durable(self) -> bool:
        """Whether completions are journaled before they become visible (file checkpointers)."""
        return self.journal is not None

    # -- the loop thread ---------------------------------------------------------------------
    def commit(self, records: list[Record]) -> None:
        """Append ``records`` (plus any waiting ones) to the journal with one write."""
        journal = self.journal
        assert journal is not None
        if self._buffer:
            with self._cond:
                records = self._buffer + records
                self._buffer = []
        try:
            journal.append(records)
        except Exception as exc:  # kept and raised at the end of the run
            self._keep(exc)
        self._poke()

    def ended(self, record_of: Callable[[], Record]) -> None:
        """A task ended without completing (or this is a whole-state checkpointer)."""
        if self.journal is not None:
            rec = record_of()
            with self._cond:
                self._buffer.append(rec)
        self._poke()

    def _poke(self) -> None:
        if self._dirty and not self._idle and self._thread is not None:
            # Already due and the thread is not asleep: it will see this commit's bytes too
            # (they were written before this check, and it clears _dirty before it syncs).
            return
        with self._cond:
            self._dirty = True
            self._stop = False
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="wfy-checkpoint",
                                                daemon=True)
                self._thread.start()
            elif self._idle:
                # Only an idle writer needs a nudge; waking it per commit would make the two
                # threads trade the GIL thousands of times a second.
                self._cond.notify_all()

    # -- the writer thread -------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._dirty:
                    if self._stop:
                        self._thread = None
                        return
                    self._idle = True
                    self._cond.wait()
                    self._idle = False
                wait = self._last + max(self.interval, MIN_SYNC_GAP) - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)  # a flush notifies and cuts the wait short
                    if self._stop and not self._dirty:
                        continue
                    if not self._stop and time.monotonic() < (
                            self._last + max(self.interval, MIN_SYNC_GAP)):
                        continue
                self._dirty = False
            self._background()
            with self._cond:
                self._last = time.monotonic()

    def _background(self) -> None:
        with self._io:
            try:
                journal = self.journal
                if journal is None:
                    self.checkpointer.save(self._snapshot())
                    return
                journal.sync()
                if journal.journal_bytes >= COMPACT_BYTES:
                    journal.compact()
            except Exception as exc:
                self._keep(exc)

    def _keep(self, exc: BaseException) -> None:
        logger.error("checkpoint write failed: %s", exc)
        with self._cond:
            if self.error is None:
                self.error = exc

    # -- the end of a run --------------------------------------------------------------------
    def flush(self) -> None:
        """Make everything recorded so far durable and compacted (or saved), then return."""
        with self._cond:
            self._stop = True
            self._dirty = False
            self._cond.notify_all()
            buffer, self._buffer = self._buffer, []
        with self._io:
            try:
                journal = self.journal
                if journal is None:
                    self.checkpointer.save(self._snapshot())
                else:
                    if buffer:
                        journal.append(buffer)
                    # No fsync of the journal first: compaction makes the segment and the
                    # manifest durable, and they cover it (if compaction fails, it syncs it).
                    journal.compact()
            except Exception as exc:
                self._keep(exc)
        with self._cond:
            error, self.error = self.error, None
        if error is not None:
            if isinstance(error, CheckpointError):
                raise error
            raise CheckpointError(
                f"writing the checkpoint with {self.checkpointer.describe()} failed: {error}"
            ) from error
