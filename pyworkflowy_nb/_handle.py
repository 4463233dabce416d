"""Handles, statuses and result records.

A handle is the user's view of one submitted task. Its state is written only by the runner that
owns it (under the runner's lock); readers on other threads wait on it without polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._arguments import check_optional_seconds
from .exceptions import TaskError

if TYPE_CHECKING:
    from ._context import Progress, TaskContext
    from ._run import TaskRunner
    from ._task import Task

__all__ = ["RunResults", "TaskHandle", "TaskResult", "TaskStatus"]

R = TypeVar("R")


class TaskStatus(enum.Enum):
    """Where a handle is in its life. The last four are terminal."""

    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL

    def __str__(self) -> str:
        return self.value


# A tuple, not a set: membership is then an identity check, and Enum hashing is slow.
_TERMINAL = (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELLED)


@dataclass(frozen=True, slots=True)
class TaskResult:
    """A snapshot of how one task ended (or where it stands, if it has not)."""

    key: str
    name: str
    status: TaskStatus
    value: Any
    error: BaseException | None
    attempts: int
    started_at: float | None
    finished_at: float | None
    restored: bool = False

    @property
    def ok(self) -> bool:
        """True when the task completed (ran or was restored from a checkpoint)."""
        return self.status is TaskStatus.COMPLETED

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at


class TaskHandle(Generic[R]):
    """One submission of a task: status, result, timings; awaitable; cancellable."""

    __slots__ = ("_backend", "_children", "_ctx", "_exception", "_fingerprint", "_inflight",
                 "_seq", "_value", "_waiters", "_waiting", "args", "attempts", "finished_at",
                 "key", "kwargs", "name", "parents", "restored", "runner", "started_at",
                 "status", "task")

    def __init__(self, runner: TaskRunner, task: Task[..., R], args: tuple[Any, ...],
                 kwargs: dict[str, Any], key: str, parents: tuple[TaskHandle[Any], ...],
                 backend: str, seq: int) -> None:
        self.runner = runner
        self.task = task
        self.name = task.name
        self.args = args
        self.kwargs = kwargs
        self.key = key
        self.parents = parents
        self.status = TaskStatus.PENDING
        self.attempts = 0
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.restored = False
        self._value: Any = None
        self._exception: BaseException | None = None
        self._children: list[TaskHandle[Any]] | None = None
        self._waiting = 0  # dependencies not yet terminal
        self._waiters: list[Callable[[], None]] | None = None
        self._fingerprint: str | None = None
        self._ctx: TaskContext | None = None
        self._inflight: Any = None  # the asyncio task / future of the running attempt
        self._backend = backend
        self._seq = seq

    # -- reading ---------------------------------------------------------------------------
    @property
    def id(self) -> str:
        """Same as :attr:`key`: stable across processes for the same task and inputs."""
        return self.key

    @property
    def fingerprint(self) -> str:
        """Hash of the task name, version, arguments and the parents' fingerprints."""
        if self._fingerprint is None:
            from ._identity import fingerprint

            self._fingerprint = fingerprint(self)
        return self._fingerprint

    @property
    def exception(self) -> BaseException | None:
        """The failure of a FAILED, SKIPPED or CANCELLED handle; ``None`` otherwise."""
        return self._exception

    @property
    def backend(self) -> str:
        return self._backend

    @property
    def progress(self) -> Progress | None:
        """The latest ``current_task().update_progress()`` report of this task, or ``None``."""
        ctx = self._ctx
        return None if ctx is None else ctx.progress

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def children(self) -> tuple[TaskHandle[Any], ...]:
        return tuple(self._children or ())

    def done(self) -> bool:
        return self.status in _TERMINAL

    def to_result(self) -> TaskResult:
        return TaskResult(self.key, self.name, self.status, self._value, self._exception,
                          self.attempts, self.started_at, self.finished_at, self.restored)

    def _outcome(self) -> R:
        if self.status is TaskStatus.COMPLETED:
            return self._value  # type: ignore[no-any-return]
        assert self._exception is not None
        raise self._exception

    def result(self, timeout: float | None = None) -> R:
        """The task's value; raises its failure. Blocks up to ``timeout`` seconds if not done."""
        timeout = check_optional_seconds("result(timeout=...)", timeout,
                                         fix="use None to wait until the task ends")
        if self.status in _TERMINAL:
            return self._outcome()
        self.runner._check_can_wait(self)
        event = threading.Event()
        self._add_waiter(event.set)
        if not event.wait(timeout):
            raise TimeoutError(
                f"task {self.key!r} is still {self.status.value} after {timeout} s; "
                "call result() without timeout to wait until it ends"
            )
        return self._outcome()

    def __await__(self) -> Generator[Any, None, R]:
        if self.status not in _TERMINAL:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[None] = loop.create_future()

            def wake() -> None:
                if not future.done():
                    future.set_result(None)

            def on_done() -> None:
                # Completions happen on the run's loop, which may not be this one. If this
                # loop has closed (RuntimeError), nobody awaits any more.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(wake)

            self._add_waiter(on_done)
            yield from future.__await__()
        return self._outcome()

    def _add_waiter(self, callback: Callable[[], None]) -> None:
        with self.runner._lock:
            if self.status not in _TERMINAL:
                if self._waiters is None:
                    self._waiters = []
                self._waiters.append(callback)
                return
        callback()

    # -- acting ------------------------------------------------------------------------------
    def cancel(self) -> bool:
        """Ask the task to stop. False if it had already ended."""
        return self.runner._cancel(self)

    def __reduce__(self) -> Any:
        # A handle is tied to its runner and loop; a copy elsewhere would never update.
        raise TypeError(
            f"a TaskHandle ({self.key!r}) cannot be pickled or sent to another process: pass "
            "handle.result() as an argument once it is done, or use depends_on=[handle]")

    def __repr__(self) -> str:
        return f"<TaskHandle {self.key!r} {self.status.value}>"

    def _repr_html_(self) -> str:
        from ._html import handle_html

        return handle_html(self)


class RunResults(Mapping[str, TaskResult]):
    """What ``run()`` returns: every handle of the runner by key, as :class:`TaskResult`."""

    __slots__ = ("_handles",)

    def __init__(self, handles: Mapping[str, TaskHandle[Any]]) -> None:
        self._handles = dict(handles)

    def __getitem__(self, key: str) -> TaskResult:
        return self._handles[key].to_result()

    def __iter__(self) -> Iterator[str]:
        return iter(self._handles)

    def __len__(self) -> int:
        return len(self._handles)

    @property
    def ok(self) -> bool:
        """True when no task failed or was cancelled and none is left unfinished."""
        good = (TaskStatus.COMPLETED, TaskStatus.SKIPPED)
        return all(h.status in good for h in self._handles.values())

    @property
    def failed(self) -> list[TaskResult]:
        bad = (TaskStatus.FAILED, TaskStatus.CANCELLED)
        return [h.to_result() for h in self._handles.values() if h.status in bad]

    def values_by_key(self) -> dict[str, Any]:
        """Completed tasks' values by key (failed ones are left out)."""
        return {k: h._value for k, h in self._handles.items()
                if h.status is TaskStatus.COMPLETED}

    def __repr__(self) -> str:
        summary = status_summary(self._handles.values())
        return f"<RunResults {len(self._handles)} tasks: {summary or 'none'}>"


def status_summary(handles: Iterable[TaskHandle[Any]]) -> str:
    """``"3 completed, 1 failed"``: how many handles are in each status, for reprs."""
    counts = Counter(h.status.value for h in handles)
    return ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))


def dependency_outcome(handle: TaskHandle[Any],
                       dep: TaskHandle[Any]) -> tuple[TaskStatus, TaskError]:
    """How ``handle`` ends when its dependency ``dep`` ended without completing, by policy
    ("skip" or "fail"; "run-anyway" never gets here)."""
    from .exceptions import DependencyFailedError

    ended = dep.status.value
    if handle.task.on_dep_failure == "skip":
        status, what = TaskStatus.SKIPPED, "was skipped because"
    else:
        status, what = TaskStatus.FAILED, "did not run:"
    return status, DependencyFailedError(
        f"task {handle.key!r} {what} its dependency {dep.key!r} ended {ended}",
        task=handle.key, dependency=dep.key, dependency_status=ended)
