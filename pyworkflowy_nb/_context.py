"""Context variables: which runner is bound, and which task is executing.

``current_task()`` works in the asyncio and thread backends because the runner binds the
variable around each attempt. Process workers are separate interpreters, so there it is ``None``.
"""

from __future__ import annotations

import contextvars
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._run import TaskRunner

__all__ = ["TaskContext", "current_task", "get_current_runner"]


_event_lock = threading.Lock()


class TaskContext:
    """What a task body can learn about its own execution: name, key, attempt, cancel flag."""

    __slots__ = ("_cancelled", "_event", "_seceded", "attempt", "key", "name", "runner")

    def __init__(self, name: str, key: str, attempt: int,
                 runner: TaskRunner | None = None) -> None:
        self.name = name
        self.key = key
        self.attempt = attempt
        self.runner = runner  # the runner executing this task, for submissions from the body
        self._cancelled = False
        self._event: threading.Event | None = None  # made on first use: most tasks never ask
        self._seceded = 0  # waits on other handles going on in this body (slot given back)

    @property
    def cancel_event(self) -> threading.Event:
        """Set once ``handle.cancel()`` or ``runner.cancel_all()`` asked this task to stop."""
        if self._event is None:
            with _event_lock:
                if self._event is None:
                    event = threading.Event()
                    if self._cancelled:
                        event.set()
                    self._event = event
        return self._event

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def request_cancel(self) -> None:
        with _event_lock:
            self._cancelled = True
            if self._event is not None:
                self._event.set()

    def __repr__(self) -> str:
        return f"TaskContext(name={self.name!r}, key={self.key!r}, attempt={self.attempt})"


_current_task: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "pyworkflowy_nb_current_task", default=None
)
_current_runner: contextvars.ContextVar[TaskRunner | None] = contextvars.ContextVar(
    "pyworkflowy_nb_current_runner", default=None
)


def current_task() -> TaskContext | None:
    """The context of the task executing in this thread or coroutine, or ``None`` outside one."""
    return _current_task.get()


def get_current_runner() -> TaskRunner | None:
    """The runner bound by the innermost ``with TaskRunner() as runner:``, else the runner
    executing the current task (so ``task.submit()`` inside a body joins its run), or ``None``.
    """
    runner = _current_runner.get()
    if runner is None:
        # Worker threads do not inherit the submitter's context; the task's own does travel.
        ctx = _current_task.get()
        if ctx is not None:
            runner = ctx.runner
    return runner
