"""The checkpoint writer thread: the run's loop hands records over and never waits on disk.

Records pile up in ``_pending`` (newest per key wins). The thread saves them at most once per
``interval`` seconds; with ``interval=0`` it saves as soon as it can, so everything that
completed while one write was in progress goes into the next one.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from ._checkpoint import Checkpointer, Record
from .exceptions import CheckpointError

__all__ = ["CheckpointWriter"]

logger = logging.getLogger("pyworkflowy_nb")


class CheckpointWriter:
    def __init__(self, checkpointer: Checkpointer, interval: float) -> None:
        self.checkpointer = checkpointer
        self.interval = interval
        self._pending: dict[str, Record] = {}
        self._cond = threading.Condition()
        # Two runs can end at once (a new run starts while the last one writes its final
        # checkpoint); their flushes take turns so neither joins a thread the other reset.
        self._flush_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._busy = False
        self._idle = False
        self._closing = False
        self._written = False
        self._last_write = 0.0
        self.error: BaseException | None = None

    def record(self, rec: Record) -> None:
        with self._cond:
            self._pending[rec["key"]] = rec
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="wfy-checkpoint",
                                                daemon=True)
                self._thread.start()
            elif self._idle:
                # Only an idle writer needs a nudge; waking it per record would make the two
                # threads trade the GIL thousands of times a second.
                self._cond.notify_all()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._idle = True
                    self._cond.wait()
                    self._idle = False
                if not self._pending and self._closing:
                    return
                wait = self._last_write + self.interval - time.monotonic()
                if wait > 0 and not self._closing:
                    self._cond.wait(wait)  # a flush() notifies and cuts the wait short
                    if not self._closing and time.monotonic() < self._last_write + self.interval:
                        continue
                batch, self._pending = self._pending, {}
                self._busy = True
            self._save(batch)
            with self._cond:
                self._busy = False
                self._last_write = time.monotonic()
                self._cond.notify_all()

    def _save(self, batch: dict[str, Record]) -> None:
        try:
            self.checkpointer.save(batch)
            self._written = True
        except BaseException as exc:  # kept and raised at the end of the run, never dropped
            logger.error("checkpoint save failed: %s", exc)
            with self._cond:
                if self.error is None:
                    self.error = exc
                # Put the batch back so a later save can retry it; a closing writer stops here.
                if not self._closing:
                    for key, rec in batch.items():
                        self._pending.setdefault(key, rec)

    def flush(self) -> None:
        """Save everything recorded so far (and an empty save if nothing was), then return."""
        with self._flush_lock:
            self._flush()

    def _flush(self) -> None:
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                batch, self._pending = self._pending, {}
                direct = True
            else:
                direct = False
                self._closing = True
                self._cond.notify_all()
        if direct:
            if batch or not self._written:  # with nothing new, the file is already current
                self._save(batch)
        else:
            with self._cond:
                while self._pending or self._busy:
                    thread = self._thread
                    if not self._busy and (thread is None or not thread.is_alive()):
                        # The writer left just before this record came (a new run recording
                        # while the last one flushes): the flush saves it itself.
                        break
                    self._cond.wait(0.05)
                thread = self._thread
            if thread is not None:
                thread.join()
            with self._cond:
                leftover, self._pending = self._pending, {}
                self._thread = None
                self._closing = False
            if leftover:
                self._save(leftover)
        if self.error is not None:
            error, self.error = self.error, None
            if isinstance(error, CheckpointError):
                raise error
            raise CheckpointError(
                f"writing the checkpoint with {self.checkpointer.describe()} failed: {error}"
            ) from error

    def pending(self) -> dict[str, Any]:
        with self._cond:
            return dict(self._pending)
