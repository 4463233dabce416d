"""Context variables: which runner is bound, and which task is executing.

``current_task()`` works in the asyncio and thread backends because the runner binds the
variable around each attempt. Process workers are separate interpreters, so there it is ``None``.
"""

from __future__ import annotations

import contextvars
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._run import TaskRunner

__all__ = ["TaskContext", "current_task", "get_current_runner"]


@dataclass(slots=True)
class TaskContext:
    """What a task body can learn about its own execution."""

    name: str
    key: str
    attempt: int
    cancel_event: threading.Event = field(default_factory=threading.Event)

    @property
    def cancelled(self) -> bool:
        """True once ``handle.cancel()`` or ``runner.cancel_all()`` asked this task to stop."""
        return self.cancel_event.is_set()


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
    """The runner bound by the innermost ``with TaskRunner() as runner:``, or ``None``."""
    return _current_runner.get()
