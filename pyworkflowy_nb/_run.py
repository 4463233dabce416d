"""TaskRunner: the public face that ties tasks, the graph, the dispatcher and checkpoints.

``arun`` drives the dispatcher on the caller's loop; ``run`` is a thin wrapper that picks the
right loop: ``asyncio.run`` when none is running, the patched loop under nest_asyncio, and
otherwise (a Jupyter cell, say) a dedicated loop thread while the caller blocks, as
jupyter_core's ``run_sync`` does.

``serve``/``aserve``/``serve_in_background`` drive the same dispatcher with a run that idles
instead of ending when nothing is left, so submissions from any thread (a scheduler, a web
handler, a task body) run as they come; ``stop()`` drains it by default (``cancel=True``
cancels the unfinished first) and never blocks, so a task may call it.

The runner is the top of the engine: it validates and keys submissions, owns the handle
registry, and builds the pieces below it: a :class:`~._dispatch.Dispatcher` (lock, event bus,
pools, registry, error policy) and, with a checkpoint, a :class:`~._persist.Persistence` that
the dispatcher calls through. Neither piece imports or calls the runner.

Under a :class:`~pyworkflowy_nb.testing.MockClock` every run and serve is driven on the dedicated
loop thread, on a loop whose time is the clock's (``_vloop.py``): the caller's own loop (a
kernel's, a test framework's) keeps real time, virtual time stays inside the run, and the same
code works in a script and in a notebook cell.

The constructor's defaults are pyWorkflowy 0.1.0's (eight workers, a checkpoint at most every
5 s); its options may also be passed by position, as earlier versions of this package allowed.
A runner that was shut down takes no more submissions, so a task can never sit in a runner
whose pools are gone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
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
from ._cache import store_for
from ._checkpoint import Checkpointer, FileCheckpointer, JSONCheckpointer, checkpointer_for_path
from ._clock import Clock, SystemClock, as_clock
from ._context import _current_runner
from ._dispatch import ActiveRun, Dispatcher
from ._events import EventBus, TaskEvent
from ._handle import RunResults, TaskHandle, TaskStatus, status_summary
from ._handle_args import find_handles, key_form
from ._identity import base_key, encode_args, fingerprint
from ._persist import Persistence
from ._policy import BACKENDS, EXTERNAL_BACKENDS, ON_TASK_ERROR, check_choice, check_non_negative
from ._pools import Pools
from ._records import records_from_state
from ._task import Task
from ._views import CallableList
from ._vloop import loop_factory

__all__ = ["TaskRunner"]

R = TypeVar("R")
_SCALARS = (int, float, str, bool, type(None))


class _DefaultWorkers(int):
    """The default ``max_workers`` (8, as in 0.1.0), told apart from an explicit 8: it bounds
    the local lanes, while a Dask cluster is bounded by its own threads unless the user sets
    ``max_workers`` (see :meth:`Pools.bounded`)."""


DEFAULT_MAX_WORKERS = _DefaultWorkers(8)


class TaskRunner:
    """Runs submitted tasks as a DAG on asyncio, with thread and process pools beside it."""

    def __init__(
        self,
        max_workers: int | None = DEFAULT_MAX_WORKERS,
        backend: str = "asyncio",
        on_task_error: str = "raise",
        checkpoint_path: str | os.PathLike[str] | None = None,
        checkpoint_interval: float = 5.0,
        *,
        checkpointer: Checkpointer | None = None,
        mp_context: str | None = None,
        executors: Mapping[str, Executor] | None = None,
        clock: Clock | None = None,
        cache: Any = None,
    ) -> None:
        check_non_negative("max_workers", max_workers, integer=True, positive=True)
        check_at_most("max_workers", max_workers, MAX_WORKERS,
                      fix="leave it as None for the backend's default size")
        explicit_workers = not isinstance(max_workers, _DefaultWorkers)
        self.max_workers = None if max_workers is None else int(max_workers)
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
        # Every timestamp (started_at, finished_at, events) comes from this clock; under a
        # MockClock the run's event loop keeps its virtual time too (see _vloop.py).
        self._clock: Clock = as_clock(clock, "TaskRunner(clock=...)") or SystemClock()
        self._lock = threading.RLock()
        self._bus = EventBus(self._clock.time)
        self._handles: dict[str, TaskHandle[Any]] = {}
        self._persist = (Persistence(checkpointer, self.checkpoint_interval, self._handles,
                                     self._lock)
                         if checkpointer is not None else None)
        self._key_counts: dict[str, int] = {}
        self._wrapped: dict[Any, Task[..., Any]] = {}
        self._seq = 0
        self._tokens: list[contextvars.Token[TaskRunner | None]] = []
        self._closed = False
        # Where cache=True tasks keep results: "memory" (default), "disk", a store, False.
        self.cache = store_for(cache)
        self._dispatch = Dispatcher(
            lock=self._lock, bus=self._bus,
            pools=Pools(self.max_workers, self.mp_context, self.executors,
                        bound_clusters=explicit_workers),
            handles=self._handles, max_workers=self.max_workers,
            on_task_error=self.on_task_error, persistence=self._persist, owner=self,
            now=self._clock.time, cache=self.cache)

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
        assert runner._persist is not None
        runner._persist.restored = records
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
        refs = None
        id_args, id_kwargs = args, kwargs
        if args or kwargs:
            found = find_handles(args, kwargs)
            if found:
                # Handle arguments are dependencies; keys and checkpoints see them by key.
                parents = _graph.check_parents(self, (*parents, *found), task.name)
                refs = id_args, id_kwargs = key_form(args, kwargs)
        checkpointer = self.checkpointer
        encoded = None
        if checkpointer is not None:
            # Our own checkpointers store any scalar: no call (and no message) for those.
            skip = _SCALARS if isinstance(checkpointer, FileCheckpointer) else ()
            for i, arg in enumerate(id_args):
                if type(arg) not in skip:
                    checkpointer.check(arg, what=f"argument {i} of task {task.name!r}")
            for name, arg in id_kwargs.items():
                if type(arg) not in skip:
                    checkpointer.check(arg, what=f"argument {name!r} of task {task.name!r}")
        if task_key is not None and (not isinstance(task_key, str) or not task_key):
            raise TypeError(f"task_key must be a non-empty string, got {task_key!r}")
        if (args or kwargs) and checkpointer is not None:
            # Needed for the fingerprint; without a checkpoint only an unreadable key needs it
            # (base_key encodes then), so readable scalar arguments are never encoded.
            encoded = encode_args(id_args, id_kwargs)
        dispatch = self._dispatch
        with self._lock:
            if task_key is not None:
                if task_key in self._handles:
                    raise ValueError(
                        f"task_key {task_key!r} is already used by {self._handles[task_key]!r}; "
                        "keys name one submission each, pick another")
                key = task_key
            else:
                base = base_key(task.name, id_args, id_kwargs, encoded)
                count = self._key_counts.get(base, 0) + 1
                self._key_counts[base] = count
                key = base if count == 1 else f"{base}#{count}"
                while key in self._handles:  # an explicit key took this name earlier
                    count += 1
                    self._key_counts[base] = count
                    key = f"{base}#{count}"
            self._seq += 1
            h: TaskHandle[R] = TaskHandle(self, task, args, kwargs, key, parents, backend,
                                          self._seq, dispatch)
            h._refs = refs
            self._handles[key] = h
            if checkpointer is not None:
                # Computed now, while the parents' are at hand (and the arguments' encoding).
                fingerprint(h, encoded)
            dispatch.admit(h)
        return h

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
                    self._dispatch.settle_on_failed_parent(handle, parent)
                    return

    # -- running ---------------------------------------------------------------------------------
    @property
    def clock(self) -> Clock:
        """Where the runner's time comes from: the real clock, or the MockClock it was given."""
        return self._clock

    @property
    def running(self) -> bool:
        """True while a run is going (including one just started in the background)."""
        return self._dispatch.run is not None

    async def arun(self) -> RunResults:
        """Run every submitted task to a terminal state on the current loop.

        While the runner serves (:meth:`serve`), this waits for what was submitted so far
        instead of starting a run. Under a MockClock the run goes to a dedicated loop thread on
        virtual time, and this awaits it: the caller's loop keeps real time.
        """
        if self._virtual() and not self._serving():
            return await asyncio.wrap_future(self.run_in_background())
        run = ActiveRun()
        with self._lock:
            active = self._dispatch.run
            if active is not None and active.serving:
                pending = self._unfinished_handles()
            elif active is not None:
                raise RuntimeError(
                    "this runner is already running: submit() adds tasks to the current run; "
                    "await the handles (or call result()) instead of starting a second run")
            else:
                self._dispatch.run = run
                pending = None
        if pending is not None:
            await _until_ended(pending)
            return RunResults(self._handles)
        return await self._drive(run)

    async def aserve(self) -> RunResults:
        """Drive the runner on the current loop until :meth:`stop`, idling between tasks.

        Submissions from any thread (a scheduler, a task body, a web handler) run as they
        come. After ``stop()`` it returns once everything submitted has ended, with the
        results; like ``arun()`` it raises the first failure under ``on_task_error='raise'``
        (which cancels the rest and ends serving). Under a MockClock it serves on a dedicated
        loop thread on virtual time, as :meth:`arun` runs.
        """
        if self._virtual():
            return await asyncio.wrap_future(self.serve_in_background())
        run = ActiveRun(serving=True)
        with self._lock:
            self._claim_run(run, "aserve")
        return await self._drive(run)

    def serve(self) -> RunResults:
        """Serve until :meth:`stop` (called from another thread, a task or a signal handler),
        blocking the caller; the blocking twin of :meth:`aserve`. Safe to call where a loop is
        already running (a notebook cell): the run then goes to a dedicated loop thread."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.aserve())
        return self.serve_in_background().result()

    def serve_in_background(self) -> concurrent.futures.Future[RunResults]:
        """Serve on a dedicated loop thread; the future resolves once :meth:`stop` drained it.
        Returns the running serve's future if this runner already serves in the background."""
        with self._lock:
            active = self._dispatch.run
            if active is not None and active.serving and active.future is not None:
                return active.future
            run = ActiveRun(serving=True)
            self._claim_run(run, "serve_in_background")
        return self._start_thread(run)

    def stop(self, *, cancel: bool = False) -> bool:
        """End a serve (:meth:`serve`, :meth:`aserve`, :meth:`serve_in_background`).

        It drains: the serve ends once every task submitted before it is done, and tasks
        those submit still run. With ``cancel=True`` the unfinished tasks are cancelled
        first. Returns at once (so a task may call it); wait on the serve's future or call
        for it to return. False when the runner was not serving.
        """
        with self._lock:
            active = self._dispatch.run
            if active is None or not active.serving:
                return False
            active.serving = False
            self._dispatch.wake()
        if cancel:
            self.cancel_all()
        return True

    def _claim_run(self, run: ActiveRun, method: str) -> None:
        """Make ``run`` the dispatcher's run (lock held), or explain why it cannot be."""
        if self._closed:
            raise RuntimeError(f"this runner was shut down: {method}() needs a new TaskRunner")
        if self._dispatch.run is not None:
            raise RuntimeError(
                f"{method}() on a runner that is already running: submit() adds tasks to the "
                "current run; call stop() and wait for it before serving again")
        self._dispatch.run = run

    def _virtual(self) -> bool:
        return getattr(self._clock, "virtual", False) is True

    def _serving(self) -> bool:
        with self._lock:
            active = self._dispatch.run
            return active is not None and active.serving

    def _unfinished_handles(self) -> list[TaskHandle[Any]]:
        return [h for h in self._handles.values() if not h.status.terminal]

    async def _drive(self, run: ActiveRun) -> RunResults:
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
                if self._persist is not None:
                    await asyncio.get_running_loop().run_in_executor(None, self._persist.flush)
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
        with self._lock:
            active = self._dispatch.run
            serving = active is not None and active.serving
            pending = self._unfinished_handles() if serving else []
        if serving:
            # Serving: wait for what was submitted so far, as arun() does.
            for h in pending:
                h.wait()
            return RunResults(self._handles)
        if self._virtual():
            pass  # always the loop thread, on virtual time: see arun()
        elif loop is None:
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
            run = ActiveRun()
            self._dispatch.run = run
        return self._start_thread(run)

    def _start_thread(self, run: ActiveRun) -> concurrent.futures.Future[RunResults]:
        """Drive ``run`` (already claimed) on a new loop thread; the future of its results."""
        future: concurrent.futures.Future[RunResults] = concurrent.futures.Future()
        run.future = future
        # The caller's context (bound runner, a Jupyter cell's parent header) travels along.
        context = contextvars.copy_context()
        # Made here, in the caller's thread: a virtual loop must count as busy from now on.
        factory = loop_factory(self._clock, self._dispatch.busy)

        def main() -> None:
            try:
                with asyncio.Runner(loop_factory=factory) as loop_runner:
                    result = loop_runner.run(self._drive(run))
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

        future.set_running_or_notify_cancel()
        threading.Thread(target=context.run, args=(main,), name="wfy-run", daemon=True).start()
        return future

    # -- cancelling and observing ------------------------------------------------------------------
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

        A serve is stopped (it drains, see :meth:`stop`). Afterwards ``submit`` raises
        RuntimeError.
        """
        self._closed = True
        self.stop()
        self._dispatch.pools.shutdown(wait=wait)
        self._dispatch.gc_hold.give()
        if self._persist is not None and self._dispatch.run is None:
            self._persist.flush()

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


async def _until_ended(handles: list[TaskHandle[Any]]) -> None:
    """Wait on this loop until every handle is terminal, whatever its outcome."""
    loop = asyncio.get_running_loop()
    for h in handles:
        if h.done():
            continue
        ended: asyncio.Future[None] = loop.create_future()

        def wake(ended: asyncio.Future[None] = ended) -> None:
            if not ended.done():
                ended.set_result(None)

        h._control.add_waiter(h, functools.partial(_call_soon, loop, wake))
        await ended


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    # The handle ends on the run's loop, which may not be this one; a closed loop has no waiter.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn)
