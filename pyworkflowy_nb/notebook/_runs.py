"""One run of the session DAG: a fresh runner with the needed cells submitted, and its lifecycle.

Design decisions:
- :class:`Run` owns start, wait and cancel, so code in a notebook waits with ``run.wait()``
  whether the run was started in the background or not; ``%wfy_wait`` and
  ``Session.wait_for_run()`` are thin uses of it.
- A run that was never started in the background runs in the thread that waits for it (a
  kernel cell, or a plain thread): the engine then owns the loop thread and its end. Only a
  background start hands the run to the runner's own thread, and only then is there a future.
- Interrupting a wait that runs the run (Ctrl-C, the kernel's interrupt) cancels its tasks;
  interrupting a wait on a background run only stops waiting.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..validation import check_optional_seconds

if TYPE_CHECKING:
    from .. import RunResults, TaskHandle, TaskRunner

__all__ = ["Run"]


class Run:
    """One run of (part of) the session DAG on a fresh runner.

    ``handles`` maps each task name of the run to its handle; ``names`` lists them in the
    order they were submitted.
    """

    def __init__(self, runner: TaskRunner, handles: Mapping[str, TaskHandle[Any]],
                 names: tuple[str, ...]) -> None:
        self.runner = runner
        self.handles: dict[str, TaskHandle[Any]] = dict(handles)
        self.names = names
        #: Set by a background start: the run's end, with its results.
        self.future: concurrent.futures.Future[RunResults] | None = None
        self._ran = False  # wait() ran it to its end in a calling thread

    def __repr__(self) -> str:
        state = "done" if self.done else ("running" if self.started else "not started")
        return f"<Run of {len(self.handles)} task(s), {state}>"

    @property
    def started(self) -> bool:
        """True once the run was started, in the background or by a wait."""
        return self.future is not None or self._ran or self.runner.running

    @property
    def done(self) -> bool:
        """True when every task of the run has ended (a run never started is not done)."""
        if self.future is not None:
            return self.future.done()
        return not self.runner.running and all(h.status.terminal for h in self.handles.values())

    def start(self) -> Run:
        """Run in the background (on the runner's own thread) and return at once."""
        if self.started:
            raise RuntimeError(f"{self!r} was started already: wait for it with run.wait()")
        self.future = self.runner.run_in_background()
        return self

    def wait(self, timeout: float | None = None) -> RunResults:
        """The run's results once every task has ended.

        A run not started yet runs to its end in the calling thread (``timeout`` must then
        be None). A background run is waited for up to ``timeout`` seconds (None: as long as
        it takes); ``TimeoutError`` if it is still going then (it goes on: wait again, or
        cancel it).
        """
        timeout = check_optional_seconds("wait(timeout=...)", timeout, above=True,
                                         fix="pass None to wait as long as it takes")
        if self.future is not None:
            try:
                return self.future.result(timeout=timeout)
            except concurrent.futures.TimeoutError:
                raise TimeoutError(
                    f"the run is still going after {timeout} s: wait again, or stop it with "
                    "%wfy_cancel (run.cancel())"
                ) from None
        if self._ran:
            return self.runner.results()
        if timeout is not None:
            raise ValueError("wait(timeout=...) needs a run started in the background: "
                             "call run.start() first, or leave timeout out")
        self._ran = True
        try:
            return self.runner.run()
        except KeyboardInterrupt:
            # The wait was interrupted (the kernel's interrupt): stop the tasks too.
            self.runner.cancel_all()
            raise

    def cancel(self) -> bool:
        """Cancel the run's tasks unless it has ended; True if there were any to cancel."""
        if self.done:
            return False
        self.runner.cancel_all()
        return True
