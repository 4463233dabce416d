"""pyworkflowy_nb: a workflow engine for async and parallel Python tasks, at home in Jupyter.

The engine (everything importable from here) uses only the standard library. The notebook
layer (``pyworkflowy_nb.notebook``: magics, the live widget, cloudpickle checkpoints) is
imported only when asked for, e.g. by ``%load_ext pyworkflowy_nb``.

Everything pyWorkflowy 0.1.0 exports at its top level is here under the same name (the seven
exceptions too, and its Literal type aliases), so ``import pyworkflowy_nb as pyworkflowy``
serves code written for it.
"""

from __future__ import annotations

from typing import Any

from ._cache import DiskStore as DiskStore
from ._cache import MemoryStore as MemoryStore
from ._checkpoint import Checkpointer as Checkpointer
from ._checkpoint import FileCheckpointer as FileCheckpointer
from ._checkpoint import JSONCheckpointer as JSONCheckpointer
from ._checkpoint import PickleCheckpointer as PickleCheckpointer
from ._checkpoint import SignedCheckpointer as SignedCheckpointer
from ._context import TaskContext as TaskContext
from ._context import current_task as current_task
from ._context import get_current_runner as get_current_runner
from ._events import EventLog as EventLog
from ._events import TaskEvent as TaskEvent
from ._handle import RunResults as RunResults
from ._handle import TaskHandle as TaskHandle
from ._handle import TaskResult as TaskResult
from ._handle import TaskStatus as TaskStatus
from ._policy import Backend as Backend
from ._policy import Backoff as Backoff
from ._policy import DepFailurePolicy as DepFailurePolicy
from ._run import TaskRunner as TaskRunner
from ._task import Task as Task
from ._task import TaskBase as TaskBase
from ._task import task as task
from .exceptions import CheckpointError as CheckpointError
from .exceptions import CycleError as CycleError
from .exceptions import DependencyFailedError as DependencyFailedError
from .exceptions import RetryExhaustedError as RetryExhaustedError
from .exceptions import TaskCancelledError as TaskCancelledError
from .exceptions import TaskError as TaskError
from .exceptions import TaskTimeoutError as TaskTimeoutError

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "Backoff",
    "CheckpointError",
    "Checkpointer",
    "CycleError",
    "DepFailurePolicy",
    "DependencyFailedError",
    "DiskStore",
    "EventLog",
    "FileCheckpointer",
    "JSONCheckpointer",
    "MemoryStore",
    "PickleCheckpointer",
    "RetryExhaustedError",
    "RunResults",
    "SignedCheckpointer",
    "Task",
    "TaskBase",
    "TaskCancelledError",
    "TaskContext",
    "TaskError",
    "TaskEvent",
    "TaskHandle",
    "TaskResult",
    "TaskRunner",
    "TaskStatus",
    "TaskTimeoutError",
    "current_task",
    "get_current_runner",
    "load_ipython_extension",
    "task",
    "unload_ipython_extension",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext pyworkflowy_nb``: registers the cell magics (needs IPython)."""
    from .notebook import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext pyworkflowy_nb``: removes what ``load_ipython_extension`` registered."""
    from .notebook import unload_ipython_extension as unload

    unload(ipython)
