"""TaskRunner: the public face that ties tasks, the graph, the dispatcher and checkpoints.

``arun`` drives the dispatcher on the caller's loop; ``run`` is a thin wrapper that picks the
right loop: ``asyncio.run`` when none is running, the patched loop under nest_asyncio, and
otherwise (a Jupyter cell, say) a dedicated loop thread while the caller blocks, as
jupyter_core's ``run_sync`` does.

The constructor's defaults are pyWorkflowy 0.1.0's (eight workers, a checkpoint at most every
5 s); its options may also be passed by position, as earlier versions of this package allowed.
A runner that was shut down takes no more submissions, so a task can never sit in a runner
whose pools are gone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from types import TracebackType
from typing import Any, TypeVar

from . import _graph
from ._arguments import (
    MAX_WORKERS,
    check_at_most,
    check_executor_map,
    check_file_path,
    check_seconds,
)
from ._checkpoint import Checkpointer, FileCheckpointer, JSONCheckpointer, checkpointer_for_path
from ._context import _current_runner
from ._dispatch import Dispatcher, Run
from ._events import EventBus, TaskEvent
from ._handle import RunResults, TaskHandle, TaskStatus, dependency_outcome, status_summary
from ._identity import base_key, encode_args, fingerprint
from ._policy import BACKENDS, EXTERNAL_BACKENDS, ON_TASK_ERROR, check_choice, check_non_negative
from ._records import STATE_VERSION, Record, records_from_state, state_entry
from ._task import Task
from ._views import CallableList
from ._writer import CheckpointWriter

__all__ = ["TaskRunner"]

R = TypeVar("R")
_SCALARS = (int, float, str, bool, type(None))


class TaskRunner:
    """Runs submitted tasks as a DAG on asyncio, with thread and process pools beside it."""

    def __init__(
        self,
        max_workers: int | None = 8,
        backend: str = "asyncio",
        on_task_error: str = "raise",
        checkpoint_path: str | os.PathLike[str] | None = None,
        checkpoint_interval: float = 5.0,
        *,
        checkpointer: Checkpointer | None = None,
        mp_context: str | None = None,
        executors: Mapping[str, Executor] | None = None,
    ) -> None:
        check_non_negative("max_workers", max_workers, integer=True, positive=True)
        check_at_most("max_workers", max_workers, MAX_WORKERS,
                      fix="leave it as None for the backend's default size")
        self.max_workers = max_workers
        # The process backend's start method; None keeps the platform default (fork on Linux
        # up to 3.13). "spawn" or "forkserver" are safer in processes with many threads.
        if mp_context is not None:
            import multiprocessing

            check_choice("mp_context", mp_context, multiprocessing.get_all_start_methods())
        self.mp_context = mp_context
        # Executors supplied by the user, by backend name: a Dask client's
        # get_executor(pure=False) for "dask", or a pool of their own for "thread"/"process".
        # The runner never shuts these down.
        self.executors: dict[str, Executor] = {}
        for name, executor in check_executor_map(executors).items():
            if name == "asyncio":
                raise ValueError("the asyncio backend runs on the event loop and takes no "
                                 "executor; supply one for 'thread', 'process' or 'dask'")
            check_choice("executor backend", name, BACKENDS)
            if not callable(getattr(executor, "submit", None)):
                raise TypeError(
                    f"executors[{name!r}] must be a concurrent.futures.Executor (something "
                    f"with submit()), got {executor!r}")
            if getattr(executor, "_kwargs", {}).get("pure", True) is not False and hasattr(
                    executor, "_client"):
                # Dask's default pure=True caches by arguments: a retry or a repeat of the
                # same call would silently get the first result instead of running.
                raise ValueError(
                    f"executors[{name!r}] is a Dask executor made with pure=True: use "
                    "client.get_executor(pure=False), so retries and repeats really run")
            self.executors[name] = executor
        self.backend = check_choice("backend", backend, BACKENDS)
        if self.backend in EXTERNAL_BACKENDS and self.backend not in self.executors:
            raise ValueError(
                f"backend={self.backend!r} needs an executor: pass TaskRunner(executors="
                f"{{{self.backend!r}: client.get_executor(pure=False)}}) with a dask.distributed "
                "Client")
        self.on_task_error = check_choice("on_task_error", on_task_error, ON_TASK_ERROR)
        checkpoint_interval = check_seconds("checkpoint_interval", checkpoint_interval)
        check_file_path("checkpoint_path", checkpoint_path)
        if checkpoint_path is not None and checkpointer is not None:
            raise ValueError("pass checkpoint_path= or checkpointer=, not both")
        if checkpointer is not None and not isinstance(checkpointer, Checkpointer):
            raise TypeError(
                f"checkpointer must be a Checkpointer instance, got {checkpointer!r}")
        if checkpoint_path is not None:
            checkpointer = JSONCheckpointer(checkpoint_path)
        self.checkpointer = checkpointer
        self.checkpoint_interval = float(checkpoint_interval)
        self._writer = (CheckpointWriter(checkpointer, self.checkpoint_interval, self._state)
                        if checkpointer is not None else None)
        self._restored: dict[str, Record] = {}
        self._lock = threading.RLock()
        self._bus = EventBus()
        self._handles: dict[str, TaskHandle[Any]] = {}
        self._key_counts: dict[str, int] = {}
        self._wrapped: dict[Any, Task[..., Any]] = {}
        self._seq = 0
        self._tokens: list[contextvars.Token[TaskRunner | None]] = []
        self._closed = False
        self._dispatch = Dispatcher(self)

    # -- resume --------------------------------------------------------------------------------
    @classmethod
    def resume(cls, source: str | os.PathLike[str] | Checkpointer, *,
               checkpointer: Checkpointer | None = None, **options: Any) -> TaskRunner:
        """A runner primed from a checkpoint: re-submit the same tasks, in any order, and
        those that completed get their stored result instead of running again.

        ``source`` is the checkpoint's path (its files say which file checkpointer wrote it)
        or a Checkpointer; ``checkpointer=`` reads and continues the checkpoint with that one
        instead (a custom store, say). ``options`` are the TaskRunner's (``max_workers``,
        ``backend``, ``on_task_error``, ``checkpoint_interval``...). Where nothing was written
        yet, the runner starts fresh and checkpoints there; files that exist but cannot be
        trusted raise :class:`CheckpointError`.
        """
        if isinstance(source, Checkpointer):
            if checkpointer is not None and checkpointer is not source:
                raise ValueError("resume(checkpointer_a, checkpointer=checkpointer_b): pass one "
                                 "checkpointer, not two")
            checkpointer = source
        elif not isinstance(source, str | os.PathLike):
            raise TypeError(f"resume() needs a checkpoint path or a Checkpointer, got {source!r}")
        elif checkpointer is None:
            checkpointer = checkpointer_for_path(source)
        elif not isinstance(checkpointer, Checkpointer):
            raise TypeError(
                f"checkpointer must be a Checkpointer instance, got {checkpointer!r}")
        if isinstance(checkpointer, FileCheckpointer):
            records = checkpointer.read_records() or {}
        else:
            records = records_from_state(checkpointer.load(), checkpointer.describe())
        options.pop("checkpoint_path", None)
        runner = cls(checkpointer=checkpointer, **options)
        runner._restored = records
        return runner

    # -- submitting ------------------------------------------------------------------------------
    def _as_task(self, fn: Any) -> Task[..., Any]:
        if isinstance(fn, Task):
            return fn
        if not callable(fn):
            raise TypeError(f"submit() needs a task or a callable, got {fn!r}")
        wrapped = self._wrapped.get(fn)
        if wrapped is None:
            wrapped = self._wrapped[fn] = Task(fn)
        return wrapped

    def submit(self, target: Task[..., R] | Callable[..., R], *args: Any,
               depends_on: Iterable[TaskHandle[Any]] | None = (),
               task_key: str | None = None, **kwargs: Any) -> TaskHandle[R]:
        """Queue ``target(*args, **kwargs)`` (a Task or a plain callable) to run once every
        handle in ``depends_on`` completed."""
        if self._closed:
            raise RuntimeError(
                f"this runner was shut down, it takes no more tasks (submitting {target!r}): "
                "create a new TaskRunner, or submit before leaving its `with` block")
        task = self._as_task(target)
        backend = task._backend or self.backend
        task.check_backend(backend)
        if backend in EXTERNAL_BACKENDS and backend not in self.executors:
            raise ValueError(
                f"task {task.name!r} wants the {backend!r} backend, but this runner has no "
                f"executor for it: pass TaskRunner(executors={{{backend!r}: "
                "client.get_executor(pure=False)}) with a dask.distributed Client")
        parents = _graph.check_parents(self, depends_on, task.name)
        checkpointer = self.checkpointer
        encoded = None
        if checkpointer is not None:
            # Our own checkpointers store any scalar: no call (and no message) for those.
            skip = _SCALARS if isinstance(checkpointer, FileCheckpointer) else ()
            for i, arg in enumerate(args):
                if type(arg) not in skip:
                    checkpointer.check(arg, what=f"argument {i} of task {task.name!r}")
            for name, arg in kwargs.items():
                if type(arg) not in skip:
                    checkpointer.check(arg, what=f"argument {name!r} of task {task.name!r}")
        if task_key is not None and (not isinstance(task_key, str) or not task_key):
            raise TypeError(f"task_key must be a non-empty string, got {task_key!r}")
        if args or kwargs:
            encoded = encode_args(args, kwargs)
        dispatch = self._dispatch
        with self._lock:
            if task_key is not None:
                if task_key in self._handles:
                    raise ValueError(
                        f"task_key {task_key!r} is already used by {self._handles[task_key]!r}; "
                        "keys name one submission each, pick another")
                key = task_key
            else:
                base = base_key(task.name, args, kwargs, encoded)
                count = self._key_counts.get(base, 0) + 1
                self._key_counts[base] = count
                key = base if count == 1 else f"{base}#{count}"
                while key in self._handles:  # an explicit key took this name earlier
                    count += 1
                    self._key_counts[base] = count
                    key = f"{base}#{count}"
            self._seq += 1
            h: TaskHandle[R] = TaskHandle(self, task, args, kwargs, key, parents, backend,
                                          self._seq)
            self._handles[key] = h
            dispatch.unfinished += 1
            bus = self._bus
            if bus.active:
                bus.emit("submitted", h)
            if checkpointer is not None:
                # Computed now, while the parents' are at hand (and the arguments' encoding).
                fingerprint(h, encoded)
            if self._restored and self._prime(h):
                return h
            failed = _graph.wire(h)
            if failed is not None and task.on_dep_failure != "run-anyway":
                self._settle_on_failed_parent(h, failed)
            elif h._waiting == 0:
                dispatch.push_ready(h)
        return h

    def _settle_on_failed_parent(self, h: TaskHandle[Any], parent: TaskHandle[Any]) -> None:
        status, error = dependency_outcome(h, parent)
        self._dispatch.settle(h, status, None, error)

    def _prime(self, h: TaskHandle[Any]) -> bool:
        rec = self._restored.get(h.key)
        if rec is None or rec.get("status") != "completed":
            return False
        if rec.get("fingerprint") != h.fingerprint:
            return False  # same key, different inputs or code: it must run again
        h.status = TaskStatus.COMPLETED
        h._value = rec.get("value")
        h.attempts = rec["attempts"]  # records are validated when they are read
        h.started_at = rec["started_at"]
        h.finished_at = rec["finished_at"]
        h.restored = True
        self._dispatch.unfinished -= 1
        if self._bus.active:
            self._bus.emit("restored", h, h.attempts)
        return True

    def _record_of(self, h: TaskHandle[Any], status: TaskStatus | None = None) -> Record:
        """What the checkpoint stores of ``h`` (as if it had ``status``, when given)."""
        st = status or h.status
        return {
            "key": h.key,
            "name": h.name,
            "fingerprint": h.fingerprint,
            "status": st._value_,
            "value": h._value if st is TaskStatus.COMPLETED else None,
            "error": None if h._exception is None else repr(h._exception),
            "attempts": h.attempts,
            "started_at": h.started_at,
            "finished_at": h.finished_at,
            # Tuples, not lists: a record of atoms and tuples of atoms is soon untracked by
            # the cyclic GC, which would otherwise walk every kept record on each collection.
            "args": h.args,
            "kwargs": h.kwargs,
            "depends_on": tuple([p.key for p in h.parents]),
        }

    def _state(self) -> dict[str, Any]:
        """The whole state for a custom Checkpointer: every handle in submission order, then
        restored records that were not submitted again (so a later resume keeps them)."""
        with self._lock:
            handles = list(self._handles.values())
            entries = [state_entry(self._record_of(h)) for h in handles]
            entries += [state_entry(r) for k, r in self._restored.items()
                        if k not in self._handles]
        return {"version": STATE_VERSION, "handles": entries}

    def add_dependency(self, handle: TaskHandle[Any], *parents: TaskHandle[Any]) -> None:
        """Make a not-yet-started ``handle`` also wait for ``parents``; CycleError on a loop."""
        checked = _graph.check_parents(self, parents, handle.name)
        with self._lock:
            if handle.runner is not self:
                raise ValueError(f"{handle!r} belongs to a different runner: add dependencies "
                                 "through the runner it was submitted to")
            # A handle primed from a checkpoint will not run, so the edge changes nothing; a
            # resumed script replaying its add_dependency() calls must not fail on it.
            if handle.status not in (TaskStatus.PENDING, TaskStatus.READY) \
                    and not handle.restored:
                raise ValueError(
                    f"{handle.key!r} is already {handle.status.value}: dependencies can only "
                    "be added before a task starts")
            for parent in checked:
                if parent in handle.parents:
                    continue
                _graph.add_dependency(handle, parent)
                if parent.status.terminal and parent.status is not TaskStatus.COMPLETED \
                        and handle.task.on_dep_failure != "run-anyway":
                    self._settle_on_failed_parent(handle, parent)
                    return

    # -- running ---------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while a run is going (including one just started in the background)."""
        return self._dispatch.run is not None

    async def arun(self) -> RunResults:
        """Run every submitted task to a terminal state on the current loop."""
        run = Run()
        with self._lock:
            if self._dispatch.run is not None:
                raise RuntimeError(
                    "this runner is already running: submit() adds tasks to the current run; "
                    "await the handles (or call result()) instead of starting a second run")
            self._dispatch.run = run
        return await self._drive(run)

    async def _drive(self, run: Run) -> RunResults:
        dispatch = self._dispatch
        run.attach(asyncio.get_running_loop())
        if self._bus.active:
            self._bus.emit("run-started", None)
        try:
            await dispatch.drive(run)
        except BaseException:
            with self._lock:
                if run.abort_error is None:
                    dispatch.abort("the run was interrupted")
            raise
        finally:
            with self._lock:
                if dispatch.run is run:  # normally already cleared by the dispatcher
                    dispatch.run = None
            try:
                if self._writer is not None:
                    await asyncio.get_running_loop().run_in_executor(None, self._writer.flush)
            finally:
                if self._bus.active:
                    self._bus.emit("run-finished", None)
        if run.abort_error is not None:
            raise run.abort_error
        return RunResults(self._handles)

    def run(self) -> RunResults:
        """Run to completion and return the results; safe to call inside a running loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None:
            with self._lock:
                active = self._dispatch.run
                joinable = active is not None and active.future is not None
            if not joinable:
                return asyncio.run(self.arun())
            # A background run is going: join it (as inside a running loop) instead of failing.
        elif getattr(loop, "_nest_patched", False):  # the user opted into nest_asyncio
            return loop.run_until_complete(self.arun())
        future = self.run_in_background()
        try:
            return future.result()
        except KeyboardInterrupt:
            self.cancel_all()
            concurrent.futures.wait([future], timeout=5.0)
            raise

    def run_in_background(self) -> concurrent.futures.Future[RunResults]:
        """Start a run on a dedicated loop thread and return a future of its results."""
        with self._lock:
            active = self._dispatch.run
            if active is not None:
                if active.future is not None:
                    return active.future
                raise RuntimeError(
                    "this runner is already running on a loop of its caller: await its "
                    "handles instead of starting a background run")
            run = Run()
            future: concurrent.futures.Future[RunResults] = concurrent.futures.Future()
            run.future = future
            self._dispatch.run = run
        # The caller's context (bound runner, a Jupyter cell's parent header) travels along.
        context = contextvars.copy_context()

        def main() -> None:
            try:
                result = asyncio.run(self._drive(run))
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

        future.set_running_or_notify_cancel()
        threading.Thread(target=context.run, args=(main,), name="wfy-run", daemon=True).start()
        return future

    def _check_can_wait(self, h: TaskHandle[Any], timeout: float | None, method: str) -> None:
        run = self._dispatch.run
        if run is not None and run.loop is not None and run.on_loop_thread():
            raise RuntimeError(
                f"{method}() on {h.key!r} would block the event loop that runs it: "
                "use `await handle` inside async code")
        if run is None and timeout is None:
            # Nothing in this thread could end the wait; with a timeout another thread may
            # start the run meanwhile, so that case waits (and then raises TimeoutError).
            raise RuntimeError(
                f"task {h.key!r} is {h.status.value} and no run is going: call runner.run() "
                f"(or await runner.arun()) first, or pass {method}(timeout=...) if another "
                "thread starts the run")

    # -- cancelling and observing ------------------------------------------------------------------
    def _cancel(self, h: TaskHandle[Any]) -> bool:
        return self._dispatch.cancel(h)

    def cancel_all(self) -> int:
        """Ask every unfinished task to stop; returns how many were newly asked."""
        with self._lock:
            pending = [h for h in self._handles.values() if not h.status.terminal]
        return sum(self._dispatch.cancel(h) for h in pending)

    def subscribe(self, listener: Callable[[TaskEvent], None]) -> Callable[[], None]:
        """Call ``listener(event)`` on every state change; returns the unsubscribe function."""
        return self._bus.subscribe(listener)

    @property
    def handles(self) -> CallableList[TaskHandle[Any]]:
        """Every handle, in submission order: ``runner.handles`` or ``runner.handles()``."""
        with self._lock:
            return CallableList(self._handles.values())

    def get(self, key: str) -> TaskHandle[Any]:
        try:
            return self._handles[key]
        except KeyError:
            raise KeyError(f"no task with key {key!r} in this runner") from None

    def results(self) -> RunResults:
        """Every handle's :class:`TaskResult` so far, by task name and by key."""
        return RunResults(self._handles)

    # -- lifecycle ---------------------------------------------------------------------------------
    def shutdown(self, wait: bool = True) -> None:
        """Stop the worker pools and write any pending checkpoint records; idempotent.

        Afterwards ``submit`` raises RuntimeError.
        """
        self._closed = True
        self._dispatch.pools.shutdown(wait=wait)
        if self._writer is not None and self._dispatch.run is None:
            self._writer.flush()

    def __enter__(self) -> TaskRunner:
        self._tokens.append(_current_runner.set(self))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        _current_runner.reset(self._tokens.pop())
        self.shutdown()

    def __repr__(self) -> str:
        summary = status_summary(list(self._handles.values())) or "no tasks"
        return f"<TaskRunner backend={self.backend} {summary}>"

    def _repr_html_(self) -> str:
        from ._html import runner_html

        return runner_html(self)

