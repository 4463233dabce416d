"""Every error the engine raises on purpose.

The hierarchy::

    Exception
     └── TaskError                    catch this to handle any pyworkflowy_nb error
          ├── TaskTimeoutError        an attempt outlived its ``timeout=``; never retried
          ├── TaskCancelledError      handle.cancel() / runner.cancel_all() stopped the task
          ├── CycleError              a dependency would close a loop in the DAG
          ├── DependencyFailedError   a dependency ended without completing (policy "fail")
          ├── RetryExhaustedError     every attempt failed; the last error is ``__cause__``
          └── CheckpointError         a value cannot be stored, or a checkpoint cannot be read

Errors carry structured fields (``task``, ``attempts``, ``elapsed``...) so callers never parse
messages. Mistakes in arguments (an unknown backend, a negative retry count) are plain
``ValueError``/``TypeError``: they are bugs at the call site, not task failures.

The constructors accept pyWorkflowy 0.1.0's keywords as well as ours, so code that builds or
re-raises these errors itself keeps working: ``TaskTimeoutError(message, elapsed=...)``,
``DependencyFailedError(message, failed=(names...))`` and ``RetryExhaustedError(message,
attempts=...)``. Where both spellings describe one fact they are kept in step (``failed``
defaults to the one ``dependency``; ``elapsed`` of a timeout defaults to its ``timeout``).
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "CycleError",
    "DependencyFailedError",
    "RetryExhaustedError",
    "TaskCancelledError",
    "TaskError",
    "TaskTimeoutError",
]


class TaskError(Exception):
    """Base class of every error raised by pyworkflowy_nb about a task or a run."""

    def __init__(self, message: str, *, task: str | None = None) -> None:
        super().__init__(message)
        self.task = task


class TaskTimeoutError(TaskError):
    """An attempt ran longer than the task's ``timeout``. Timeouts are terminal."""

    def __init__(self, message: str, *, task: str | None = None, timeout: float = 0.0,
                 attempts: int = 1, elapsed: float | None = None) -> None:
        super().__init__(message, task=task)
        self.timeout = timeout
        self.attempts = attempts
        # Seconds the attempt had run when it was stopped: its budget, since the engine stops
        # it as soon as the budget is spent. None when raised by hand without either number.
        self.elapsed = elapsed if elapsed is not None else (timeout or None)


class TaskCancelledError(TaskError):
    """The task was cancelled before it could complete.

    ``result`` holds what a cooperative body returned after it saw the cancel flag, if anything.
    """

    def __init__(self, message: str, *, task: str | None = None, result: object = None) -> None:
        super().__init__(message, task=task)
        self.result = result


class CycleError(TaskError):
    """Adding a dependency would make the graph cyclic. ``cycle`` lists the keys in order."""

    def __init__(self, message: str, *, cycle: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.cycle = cycle


class DependencyFailedError(TaskError):
    """A dependency ended FAILED, SKIPPED or CANCELLED and the policy was ``"fail"``.

    ``dependency`` is the key of the dependency that ended the task, ``failed`` the task names
    of the dependencies that did not complete (0.1.0's field).
    """

    def __init__(self, message: str, *, task: str | None = None, dependency: str = "",
                 dependency_status: str = "", failed: tuple[str, ...] | list[str] = ()) -> None:
        super().__init__(message, task=task)
        self.dependency = dependency
        self.dependency_status = dependency_status
        self.failed: tuple[str, ...] = tuple(failed) or ((dependency,) if dependency else ())


class RetryExhaustedError(TaskError):
    """Every allowed attempt failed. The last attempt's exception is ``__cause__``."""

    def __init__(self, message: str, *, task: str | None = None, attempts: int = 0,
                 elapsed: float = 0.0) -> None:
        super().__init__(message, task=task)
        self.attempts = attempts
        self.elapsed = elapsed


class CheckpointError(TaskError):
    """A value cannot be checkpointed, or a checkpoint file cannot be trusted or read."""

    def __init__(self, message: str, *, task: str | None = None,
                 path: str | None = None) -> None:
        super().__init__(message, task=task)
        self.path = path
