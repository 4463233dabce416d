"""Handles, statuses and result records.

A handle is the user's view of one submitted task. Its state is written only by the runner that
owns it (under the runner's lock); readers on other threads wait on it without polling.

Waiting follows pyWorkflowy 0.1.0: ``result``, ``exception`` and ``get_result`` take a
``timeout`` and raise the builtin ``TimeoutError`` when the handle is not terminal in time, also
when no run has started (another thread may start one). Without a timeout and with no run going
they raise ``RuntimeError`` at once instead of blocking forever: in a single thread (a notebook
cell, a script that forgot ``runner.run()``) nothing could ever end the wait.

``handle.exception`` is a method in 0.1.0 and was a property here. It is now a small callable
view (:class:`ErrorView`): calling it is the 0.1.0 method; reading it as before still answers
``isinstance``, attribute access, ``str``/``repr``, truth and ``== None``, but it is not the
exception object itself (``is`` and ``raise`` need the call).

``RunResults`` is keyed by task name like 0.1.0's dict (the last submission of a name wins) and
also answers lookups by key, which name every submission apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ._arguments import check_optional_seconds
from .exceptions import TaskError

if TYPE_CHECKING:
    from ._context import Progress, TaskContext
    from ._run import TaskRunner
    from ._task import Task

__all__ = ["ErrorView", "HandleControl", "RunResults", "TaskHandle", "TaskResult", "TaskStatus"]

R = TypeVar("R")


class HandleControl(Protocol):
    """What a handle asks of the engine that runs it (the dispatcher): nothing else."""

    @property
    def running(self) -> bool: ...

    def add_waiter(self, h: TaskHandle[Any], callback: Callable[[], None]) -> None: ...

    def check_can_wait(self, h: TaskHandle[Any], timeout: float | None, method: str) -> None: ...

    def cancel(self, h: TaskHandle[Any], reason: str | None = None) -> bool: ...

    def secede(self) -> Any: ...

    def rejoin(self, token: Any, wake: Callable[[], None]) -> bool: ...


class TaskStatus(enum.StrEnum):
    """Where a handle is in its life; members equal their strings (``COMPLETED == "completed"``).

    PENDING: waiting for dependencies. READY: every dependency is done (or there are none) and
    the handle sits in its lane's queue for a worker slot, or for a run to start. RUNNING: an
    attempt is going. RETRYING: an attempt failed and the next one waits for its backoff or its
    slot. COMPLETED, FAILED, CANCELLED and SKIPPED are terminal.
    """

    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"

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
    cached: bool = False

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

    __slots__ = ("_backend", "_cache_key", "_children", "_control", "_ctx", "_exception",
                 "_fingerprint", "_inflight", "_refs", "_seq", "_value", "_waiters", "_waiting",
                 "args", "attempts", "cached", "finished_at", "key", "kwargs", "name", "parents",
                 "restored", "runner", "started_at", "status", "task")

    def __init__(self, runner: TaskRunner, task: Task[..., R], args: tuple[Any, ...],
                 kwargs: dict[str, Any], key: str, parents: tuple[TaskHandle[Any], ...],
                 backend: str, seq: int, control: HandleControl) -> None:
        self.runner = runner  # public: which runner it belongs to (depends_on checks it)
        self._control = control
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
        self.cached = False  # completed from the result cache, without running
        self._cache_key: str | None = None  # set while it runs as its cache key's owner
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
        # With handles among the arguments: the arguments as keys and records see them
        # (each handle as "<task KEY>"); None for the common case of none (see _handle_args).
        self._refs: tuple[tuple[Any, ...], dict[str, Any]] | None = None

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
    def exception(self) -> ErrorView:
        """The failure of a FAILED, SKIPPED or CANCELLED handle; ``None`` otherwise.

        Call it, ``handle.exception(timeout=None)``, to block until the handle is terminal and
        get the exception object (or None). Read without the call it is a view of the failure
        as it stands now (see :class:`ErrorView`).
        """
        return ErrorView(self)

    @property
    def depends_on(self) -> tuple[TaskHandle[Any], ...]:
        """The handles this one waits for (the same as :attr:`parents`)."""
        return self.parents

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
                          self.attempts, self.started_at, self.finished_at, self.restored,
                          self.cached)

    def _outcome(self) -> R:
        if self.status is TaskStatus.COMPLETED:
            return self._value  # type: ignore[no-any-return]
        assert self._exception is not None
        raise self._exception

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the handle is terminal; False if ``timeout`` seconds passed first."""
        return self._block(timeout, "wait") is None

    def result(self, timeout: float | None = None) -> R:
        """The task's value; raises its failure. Blocks up to ``timeout`` seconds if not done;
        TimeoutError if it is still not done then."""
        self._block_or_raise(timeout, "result")
        return self._outcome()

    def get_result(self, timeout: float | None = None) -> TaskResult:
        """The whole :class:`TaskResult` once terminal; never raises the task's own error.
        TimeoutError if the handle is not terminal within ``timeout`` seconds."""
        self._block_or_raise(timeout, "get_result")
        return self.to_result()

    def _block_or_raise(self, timeout: float | None, method: str) -> None:
        error = self._block(timeout, method)
        if error is not None:
            raise error

    def _block(self, timeout: float | None, method: str) -> TimeoutError | None:
        """Wait until terminal; the TimeoutError to raise if ``timeout`` ran out first."""
        timeout = check_optional_seconds(f"{method}(timeout=...)", timeout,
                                         fix="use None to wait until the task ends")
        if self.status in _TERMINAL:
            return None
        control = self._control
        control.check_can_wait(self, timeout, method)
        event = threading.Event()
        self._add_waiter(event.set)
        # A task body of this runner waiting for another task gives its worker slot back
        # meanwhile (Dask's secede/rejoin), so its children can run at any max_workers.
        token = control.secede()
        try:
            ended = event.wait(timeout)
        finally:
            if token is not None:
                slot = threading.Event()
                if not control.rejoin(token, slot.set):
                    slot.wait()
        if ended:
            return None
        if not self._control.running:
            return TimeoutError(
                f"task {self.key!r} is still {self.status.value} after {timeout} s and no run "
                "is going: call runner.run() (or await runner.arun()) to execute it")
        return TimeoutError(
            f"task {self.key!r} is still {self.status.value} after {timeout} s; call "
            f"{method}() with a longer timeout, or none, to wait until it ends")

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
            control = self._control
            token = control.secede()  # give the slot back while waiting (see _block)
            try:
                yield from future.__await__()
            finally:
                if token is not None:
                    slot: asyncio.Future[None] = loop.create_future()

                    def granted() -> None:
                        with contextlib.suppress(RuntimeError):
                            loop.call_soon_threadsafe(_resolve, slot)

                    if not control.rejoin(token, granted):
                        yield from slot.__await__()
        return self._outcome()

    def _add_waiter(self, callback: Callable[[], None]) -> None:
        self._control.add_waiter(self, callback)

    # -- acting ------------------------------------------------------------------------------
    def cancel(self) -> bool:
        """Ask the task to stop. False if it had already ended or was already asked to."""
        return self._control.cancel(self)

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


class ErrorView:
    """``handle.exception``: call it for the exception (0.1.0's method), or read it as before.

    ``handle.exception(timeout=None)`` blocks like ``result()`` and returns the exception object
    or None. Without the call, the view stands for the failure at the moment it was read:
    ``isinstance`` sees the exception's class, attributes, ``str``, ``repr`` and ``==`` are the
    exception's, and it is falsy when there is none. It is not the object itself: write
    ``handle.exception()`` to compare with ``is``, to ``raise`` it, or to test ``is None``.
    """

    __slots__ = ("_error", "_handle")

    def __init__(self, handle: TaskHandle[Any]) -> None:
        self._handle = handle
        self._error = handle._exception

    def __call__(self, timeout: float | None = None) -> BaseException | None:
        handle = self._handle
        handle._block_or_raise(timeout, "exception")
        return handle._exception

    # isinstance() falls back to __class__ when type() does not match: that lets
    # `isinstance(handle.exception, DependencyFailedError)` keep working on the view.
    @property  # type: ignore[misc]
    def __class__(self) -> type[Any]:
        return type(self._error)

    def __getattr__(self, name: str) -> Any:
        if name in ErrorView.__slots__:  # not set yet (mid-copy): never recurse
            raise AttributeError(name)
        return getattr(self._error, name)

    def __reduce__(self) -> tuple[Any, ...]:
        # Sent elsewhere, the view cannot wait on its handle: it travels as the error itself.
        return (_same, (self._error,))

    def __bool__(self) -> bool:
        return self._error is not None

    def __eq__(self, other: object) -> bool:
        if type(other) is ErrorView:
            other = other._error
        return bool(self._error == other)

    def __hash__(self) -> int:
        return hash(self._error)

    def __str__(self) -> str:
        return str(self._error)

    def __repr__(self) -> str:
        return repr(self._error)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _same(value: object) -> object:
    return value


class RunResults(Mapping[str, TaskResult]):
    """What ``run()`` returns: a :class:`TaskResult` per task name, and per key.

    Iterating, ``len`` and ``keys()`` go by task name, like pyWorkflowy 0.1.0's dict: when a
    task was submitted several times, its name maps to the last submission. Indexing also
    accepts a handle's key (``results[handle.key]``), which tells submissions apart; a name is
    looked up first. :meth:`by_key` gives the whole mapping by key.
    """

    __slots__ = ("_by_name", "_handles")

    def __init__(self, handles: Mapping[str, TaskHandle[Any]]) -> None:
        self._handles = dict(handles)
        by_name: dict[str, TaskHandle[Any]] = {}
        for h in self._handles.values():
            by_name[h.name] = h  # later submissions replace earlier ones
        self._by_name = by_name

    def __getitem__(self, name_or_key: str) -> TaskResult:
        h = self._by_name.get(name_or_key) or self._handles.get(name_or_key)
        if h is None:
            raise KeyError(f"no task named or keyed {name_or_key!r} in these results; "
                           "list(results) gives the names, results.by_key() the keys")
        return h.to_result()

    def __contains__(self, name_or_key: object) -> bool:
        return name_or_key in self._by_name or name_or_key in self._handles

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def by_key(self) -> dict[str, TaskResult]:
        """Every submission's result by handle key, in submission order."""
        return {k: h.to_result() for k, h in self._handles.items()}

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
        task=handle.key, dependency=dep.key, dependency_status=ended, failed=(dep.name,))
