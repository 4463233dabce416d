"""One run of the session DAG: a fresh runner with the needed cells submitted, and its lifecycle.

Design decisions:
- Every run gets a brand-new ``TaskRunner`` (:func:`new_runner`) with the needed cells submitted
  in plan order (:func:`submit_plan`); nothing of a run survives into the next one except
  results, so redefining a cell always takes effect. Failures do not stop the other branches
  (``on_task_error="continue"``): the magics report them after the run.
- A cell body runs in a snapshot of the user namespace with its upstream results bound under
  their task names (:func:`cell_namespace`); what it assigns stays inside it.
- Sync cells are thread tasks, cells that await are asyncio tasks, ``--backend process`` cells
  are engine process tasks shipped by value (:class:`~._shipping.ShippedCell`), and Dask cells
  asyncio tasks awaiting the cluster.
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
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from .. import Task
from ..resume import encode_args
from ..validation import check_optional_seconds
from ._cells import CellTask, exec_async, exec_sync
from ._shipping import ShippedCell, run_in_worker

if TYPE_CHECKING:
    from .. import FileCheckpointer, RunResults, TaskHandle, TaskRunner
    from ._dask_cells import DaskLane

__all__ = ["Run", "cell_namespace", "new_runner", "submit_plan"]


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


def new_runner(ckpt: FileCheckpointer | None, max_workers: int | None, *, restore: bool,
               cache: bool = False) -> TaskRunner:
    """A fresh runner for one run, checkpointing to ``ckpt`` (resuming from it with
    ``restore``); with ``cache``, on the engine's disk result cache (``--cache`` cells)."""
    from .. import TaskRunner

    # Failures are reported by the magic after the run; the other branches keep going.
    # spawn, not fork: the kernel has live threads (zmq, the run's loop thread) that a
    # forked worker would inherit in an undefined state.
    # --cache cells share the engine's disk store, which outlives the kernel.
    options: dict[str, Any] = {"max_workers": max_workers, "on_task_error": "continue",
                               "mp_context": "spawn", "cache": "disk" if cache else False}
    if ckpt is None:
        return TaskRunner(**options)
    if not ckpt.exists():
        return TaskRunner(checkpointer=ckpt, **options)
    if restore:
        return TaskRunner.resume(ckpt, **options)
    # Load anyway: the checkpointer must build on the stored segments, not replace them.
    ckpt.read_records()
    return TaskRunner(checkpointer=ckpt, **options)


def submit_plan(runner: TaskRunner, plan: Sequence[CellTask], user_ns: MutableMapping[str, Any],
                version_of: Callable[[CellTask], str], dask: DaskLane
                ) -> dict[str, TaskHandle[Any]]:
    """Submit the cells of ``plan`` (upstream first) to ``runner``; their handles by name."""
    handles: dict[str, TaskHandle[Any]] = {}
    for cell in plan:
        upstream = {a: handles[a] for a in cell.after}
        version = version_of(cell)
        options: dict[str, Any] = {
            "retries": cell.retries,
            # Cells retry at once, as they always did (the magics have no backoff flag);
            # the engine's own default is 0.1.0's exponential backoff.
            "backoff": "none",
            "timeout": cell.timeout,
            "version": version,
            "cache": cell.cache,
            "cache_key_fn": _cell_cache_key(version, upstream) if cell.cache else None,
        }
        namespace = cell_namespace(user_ns, upstream)
        node: Task[..., Any]
        if cell.backend == "process":
            node = ShippedCell(cell, namespace, **options)
        else:
            node = Task(
                _cell_body(cell, namespace, dask), name=cell.name,
                backend="asyncio" if cell.backend == "dask" else cell.backend, **options)
        handles[cell.name] = runner.submit(
            node, depends_on=list(upstream.values()), task_key=cell.name
        )
    return handles


def _cell_cache_key(version: str, upstream: Mapping[str, TaskHandle[Any]]
                    ) -> Callable[..., str]:
    """A ``--cache`` cell's key: its effective version (source and the namespace values it
    reads) and its --after tasks' results, which reach the body by name, not as arguments."""
    import hashlib

    def key(fn: Any, args: Any, kwargs: Any) -> str:
        values = {n: h.result() for n, h in upstream.items()}
        return f"{version}:{hashlib.sha256(encode_args((), values)).hexdigest()}"

    return key


def cell_namespace(user_ns: Mapping[str, Any], upstream: Mapping[str, TaskHandle[Any]]
                   ) -> Callable[[], dict[str, Any]]:
    """The globals a cell runs in: a snapshot of the user namespace, upstream results
    bound under their task names."""

    def namespace() -> dict[str, Any]:
        g = dict(user_ns)
        for n, h in upstream.items():
            g[n] = h.result()
        return g

    return namespace


def _cell_body(cell: CellTask, namespace: Callable[[], dict[str, Any]], dask: DaskLane
               ) -> Callable[[], Any]:
    fn: Callable[[], Any]
    if cell.backend == "dask":
        executor = dask.executor

        async def run_dask_cell() -> Any:
            return await run_in_worker(executor, cell, namespace())

        fn = run_dask_cell
    elif cell.is_async:

        async def run_async_cell() -> Any:
            return await exec_async(cell, namespace())

        fn = run_async_cell
    else:

        def run_cell() -> Any:
            return exec_sync(cell, namespace())

        fn = run_cell
    fn.__qualname__ = fn.__name__ = f"wfy_task_{cell.name}"
    return fn
