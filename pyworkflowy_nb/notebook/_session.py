"""The notebook session: named cell-tasks, their ``--after`` edges, and one fresh runner per run.

Design decisions:
- A ``%%task`` cell only *defines* a node. The session keeps the definitions (source, compiled
  code, options) and builds a brand-new ``TaskRunner`` for every run, submitting the needed
  nodes in topological order. Nothing of a run survives into the next one except results (in
  the user namespace and, with checkpoints, on disk), so redefining a cell always takes effect.
- Edges may name tasks that are not defined yet: after a kernel restart cells are re-run in any
  order. Unknown names are reported when a run needs them; a cycle among defined tasks is
  refused as soon as the cell that would close it is run, and the old definition stays.
- A cell body runs in a *snapshot* of the user namespace (so imports and functions from earlier
  cells work) with upstream results bound under their task names. Assignments inside a task cell
  stay inside it: parallel tasks never race on the user's globals, and what a task contributes
  to the namespace is exactly its result, stored under its name when it completes.
- A task's identity is its name, its arguments (none) and ``Task.version``, a hash of the cell
  source; the engine folds parents' fingerprints into a child's, so changing a cell invalidates
  that node and everything downstream of it, and nothing else.
- Checkpoints (cloudpickle, signed) are on by default in a kernel, in ``.wfy/<notebook>.ckpt``
  beside the notebook. Every run resumes from the checkpoint, so after a kernel restart
  re-running the cells primes what completed; defining a cell already restores its stored
  result (and that of any task whose upstream just became complete) into the namespace, so
  cells can be re-run in any order. A task's version also covers the notebook functions,
  classes and plain constants its cell refers to: editing a helper cell re-runs its users.
- Sync cells run on the thread backend by default (a data-science cell would otherwise block the
  run's event loop); cells using top-level ``await`` run on the asyncio backend, and
  ``--backend process`` cells on the engine's process lane (spawned workers), shipped there
  by value (``_shipping``), so worker slots and timeouts are the engine's.

The cell itself (compiling, identity, execution) is in ``_cells``, the graph algorithms in
``_plan``, where checkpoints go in ``_checkpoint_file``, ``%wfy_schedule`` in ``_schedules``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import RunResults, Task, TaskHandle, TaskResult, TaskStatus
from ..display import format_duration
from ..exceptions import CheckpointError
from ..resume import restorable, task_fingerprint
from ..validation import check_file_path, check_optional_seconds
from ._cells import BACKEND_CHOICES as BACKEND_CHOICES
from ._cells import CellTask as CellTask
from ._cells import cell_version as cell_version
from ._cells import check_name as check_name
from ._cells import compile_cell as compile_cell
from ._cells import (
    effective_version,
    exec_async,
    exec_sync,
    referenced_names,
    register_source,
    resolve_backend,
    to_python,
)
from ._checkpoint_file import CheckpointFile, is_kernel_shell
from ._checkpoint_file import default_checkpoint_path as default_checkpoint_path
from ._checkpoint_file import notebook_path as notebook_path
from ._dask_cells import DaskLane
from ._exceptions import RunInProgressError, SessionError
from ._exceptions import SessionCycleError as SessionCycleError
from ._plan import downstream, find_cycle, unknown_task, upstream_defined
from ._plan import plan as plan_cells
from ._runs import Run as Run
from ._schedules import ScheduleBook
from ._shipping import ShippedCell, run_in_worker

if TYPE_CHECKING:
    from .. import FileCheckpointer, TaskEvent, TaskRunner

# The names before Session are re-exported from the modules that own them, for callers that
# knew them here.
__all__ = [
    "BACKEND_CHOICES",
    "CellTask",
    "Run",
    "Session",
    "SessionCycleError",
    "cell_version",
    "check_name",
    "compile_cell",
    "default_checkpoint_path",
    "notebook_path",
]


class Session:
    """The DAG of ``%%task`` cells of one IPython shell, and what its runs produced.

    Usable without a kernel: ``Session(user_ns={})`` gives a session over a plain dict.
    """

    def __init__(
        self,
        user_ns: MutableMapping[str, Any] | None = None,
        shell: Any = None,
        checkpoint: str | os.PathLike[str] | bool | None = None,
    ) -> None:
        self.shell = shell
        if user_ns is None:
            user_ns = shell.user_ns if shell is not None else {}
        self.user_ns: MutableMapping[str, Any] = user_ns
        if checkpoint is None:  # auto: on in a Jupyter kernel, off elsewhere
            checkpoint = shell is not None and is_kernel_shell(shell)
        self._checkpoint = CheckpointFile()
        self._tasks: dict[str, CellTask] = {}
        self._lock = threading.RLock()
        self.configure_checkpoint(checkpoint)
        #: The latest outcome of each task, by name (kept across runs for %wfy_status).
        self.results: dict[str, TaskResult] = {}
        #: The run started last (blocking or background).
        self.last_run: Run | None = None
        self.max_workers: int | None = None
        self._old_runners: list[TaskRunner] = []
        self.schedules = ScheduleBook(self)
        #: Where ``--backend dask`` cells run (``%wfy_config --dask ADDRESS``).
        self.dask = DaskLane()
        #: Tasks the latest ``define`` restored from the checkpoint into the namespace.
        self.last_primed: list[str] = []
        #: Why the latest ``define`` could not restore anything (an unreadable checkpoint).
        self.last_prime_error: CheckpointError | None = None

    # -- definitions ---------------------------------------------------------------------------

    @property
    def tasks(self) -> dict[str, CellTask]:
        """A copy of the current definitions, in definition order."""
        with self._lock:
            return dict(self._tasks)

    def define(
        self,
        name: str,
        source: str,
        *,
        after: Iterable[str] = (),
        retries: int = 0,
        timeout: float | None = None,
        backend: str | None = None,
    ) -> CellTask:
        """Define (or redefine) the node ``name`` whose body is ``source``; do not run it."""
        check_name(name)
        edges: list[str] = []
        for a in after:
            if isinstance(a, str) and "," in a:
                raise SessionError(
                    f"--after takes task names separated by spaces, not commas: write "
                    f"--after {' '.join(p for p in a.split(',') if p)} (got {a!r})"
                )
            check_name(a, "--after task name")
            if a not in edges:
                edges.append(a)
        if name in edges:
            raise SessionCycleError(
                f"task {name!r} cannot run --after itself; remove {name!r} from --after",
                cycle=(name, name),
            )
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise SessionError(f"--retries must be a whole number >= 0, got {retries!r}")
        try:
            timeout = check_optional_seconds("--timeout", timeout, above=True,
                                             fix="leave --timeout out for no timeout")
        except (TypeError, ValueError) as exc:
            raise SessionError(str(exc)) from None
        code = to_python(self.shell, source)
        filename = f"<wfy-task {name}>"
        body, last, is_async = compile_cell(code, filename)
        register_source(filename, code)
        resolved = resolve_backend(name, backend, is_async)
        cell = CellTask(
            name=name, source=source, code=code, after=tuple(edges), retries=retries,
            timeout=timeout, backend=resolved, version=cell_version(source),
            is_async=is_async, filename=filename, body=body, last=last,
            refs=tuple(sorted(referenced_names(body, last) - set(edges))),
        )
        with self._lock:
            trial = dict(self._tasks)
            trial[name] = cell
            cycle = find_cycle(trial, name)
            if cycle:
                path = " -> ".join(cycle)
                raise SessionCycleError(
                    f"task {name!r} would close a dependency cycle ({path}, where 'a -> b' means "
                    f"a runs --after b); the previous definition of {name!r} is kept",
                    cycle=tuple(cycle),
                )
            self._tasks[name] = cell
        self.last_primed = self._prime_after_define(name)
        return cell

    def forget(self, names: Sequence[str] | None = None) -> list[str]:
        """Drop the named definitions (all when ``names`` is None); return what was dropped."""
        with self._lock:
            if names is None:
                dropped = list(self._tasks)
                self._tasks.clear()
                self.results.clear()
                return dropped
            for n in names:
                if n not in self._tasks:
                    raise SessionError(unknown_task(self._tasks, n))
            for n in names:
                del self._tasks[n]
                self.results.pop(n, None)
            return list(names)

    # -- planning ------------------------------------------------------------------------------

    def plan(self, names: Sequence[str] | None = None) -> list[CellTask]:
        """The named tasks (all when empty) plus everything upstream, in the order they run
        (ties in definition order)."""
        with self._lock:
            tasks = dict(self._tasks)
        return plan_cells(tasks, names)

    # -- building and running ------------------------------------------------------------------

    def build(
        self,
        names: Sequence[str] | None = None,
        *,
        max_workers: int | None = None,
        listeners: Sequence[Callable[[TaskEvent], None]] = (),
        restore: bool = True,
        persist: bool = True,
    ) -> Run:
        """Make a fresh runner with the needed nodes submitted (not started).

        With the session's checkpoint on, ``restore`` primes tasks whose stored identity
        matches (they do not run) and ``persist`` writes new results to it. Listeners are
        subscribed in order *before* any submission, after the session's own listener that
        stores results in the namespace.
        """
        plan = self.plan(names)
        workers = max_workers if max_workers is not None else self.max_workers
        runner = self._new_runner(workers, restore=restore, persist=persist)
        runner.subscribe(self._land)
        for listener in listeners:
            runner.subscribe(listener)
        handles = self._submit_plan(runner, plan)
        return Run(runner=runner, handles=handles, names=tuple(c.name for c in plan))

    def _submit_plan(self, runner: TaskRunner, plan: Sequence[CellTask]
                     ) -> dict[str, TaskHandle[Any]]:
        handles: dict[str, TaskHandle[Any]] = {}
        for cell in plan:
            upstream = {a: handles[a] for a in cell.after}
            options: dict[str, Any] = {
                "retries": cell.retries,
                # Cells retry at once, as they always did (the magics have no backoff flag);
                # the engine's own default is 0.1.0's exponential backoff.
                "backoff": "none",
                "timeout": cell.timeout,
                "version": self.effective_version(cell),
            }
            node: Task[..., Any]
            if cell.backend == "process":
                node = ShippedCell(cell, self._namespace(upstream), **options)
            else:
                node = Task(
                    self._make_body(cell, upstream), name=cell.name,
                    backend="asyncio" if cell.backend == "dask" else cell.backend, **options)
            handles[cell.name] = runner.submit(
                node, depends_on=list(upstream.values()), task_key=cell.name
            )
        return handles

    def _new_runner(self, max_workers: int | None, *, restore: bool, persist: bool
                    ) -> TaskRunner:
        from .. import TaskRunner

        # Failures are reported by the magic after the run; the other branches keep going.
        # spawn, not fork: the kernel has live threads (zmq, the run's loop thread) that a
        # forked worker would inherit in an undefined state.
        options: dict[str, Any] = {"max_workers": max_workers, "on_task_error": "continue",
                                   "mp_context": "spawn"}
        ckpt = self.checkpointer() if persist else None
        if ckpt is None:
            return TaskRunner(**options)
        if not ckpt.exists():
            return TaskRunner(checkpointer=ckpt, **options)
        if restore:
            return TaskRunner.resume(ckpt, **options)
        # Load anyway: the checkpointer must build on the stored segments, not replace them.
        ckpt.read_records()
        return TaskRunner(checkpointer=ckpt, **options)

    def effective_version(self, cell: CellTask) -> str:
        """The cell's source hash, extended by what it uses from the notebook namespace:
        notebook functions, classes and plain constants (see ``_cells.effective_version``)."""
        return effective_version(cell, self.user_ns)

    def _land(self, event: TaskEvent) -> None:
        """Listener: store each finished task's outcome, and its value under its name."""
        handle = event.handle
        if handle is None or event.kind not in (
            "completed", "restored", "failed", "skipped", "cancelled"
        ):
            return
        self._store(handle.to_result())

    def _store(self, result: TaskResult) -> None:
        self.results[result.key] = result
        if result.ok:
            self.user_ns[result.key] = result.value

    def _namespace(self, upstream: dict[str, TaskHandle[Any]]) -> Callable[[], dict[str, Any]]:
        """The globals a cell runs in: a snapshot of the user namespace, upstream results
        bound under their task names."""
        user_ns = self.user_ns

        def namespace() -> dict[str, Any]:
            g = dict(user_ns)
            for n, h in upstream.items():
                g[n] = h.result()
            return g

        return namespace

    def _make_body(
        self, cell: CellTask, upstream: dict[str, TaskHandle[Any]]
    ) -> Callable[[], Any]:
        namespace = self._namespace(upstream)
        fn: Callable[[], Any]
        if cell.backend == "dask":
            executor = self.dask.executor

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

    def check_idle(self) -> None:
        """Refuse to start a run while the previous background run is still going."""
        run = self.last_run
        if run is not None and not run.done:
            raise RunInProgressError(
                "a run of this session is still going (started with --background): wait for "
                "it, check it with %wfy_status, or stop it with %wfy_cancel"
            )

    def start(self, run: Run, *, background: bool) -> Run:
        """Record ``run`` as the session's current run; with ``background``, launch it."""
        self._retire_old_runners()
        self.last_run = run
        if background:
            run.start()
        return run

    def wait(self, run: Run) -> RunResults:
        """Run ``run`` to the end in the calling thread (kernel cell or plain thread)."""
        return run.wait()

    def wait_for_run(self, timeout: float | None = None) -> RunResults:
        """Block until the latest run (a ``--background`` one included) has ended; its results.

        The same as ``session.last_run.wait(timeout)``: raises ``SessionError`` when no run
        was started yet, and ``TimeoutError`` when *timeout* seconds pass first (the run goes
        on; wait again or cancel it).
        """
        run = self.last_run
        try:
            timeout = check_optional_seconds("wait_for_run(timeout=...)", timeout, above=True,
                                             fix="pass None to wait as long as it takes")
        except (TypeError, ValueError) as exc:
            raise SessionError(str(exc)) from None
        if run is None:
            raise SessionError("no run was started in this session yet: start one with %wfy_run")
        return run.wait(timeout)

    def run(self, names: Sequence[str] | None = None, *, max_workers: int | None = None
            ) -> RunResults:
        """Build and run to completion: the plain-Python path (no display)."""
        self.check_idle()
        run = self.start(self.build(names, max_workers=max_workers), background=False)
        return self.wait(run)

    def run_detached(self, names: Sequence[str]) -> RunResults:
        """Run ``names`` and their upstream to the end in this thread, apart from the session's
        current run (a scheduled firing): nothing is restored, everything executes."""
        run = self.build(names, restore=False, persist=False)
        try:
            return run.runner.run()
        finally:
            # Not waiting: a timed-out thread task may still be running its body.
            run.runner.shutdown(wait=False)

    def cancel(self) -> bool:
        """Cancel the current run, if one is going; True if there was one."""
        run = self.last_run
        return run is not None and run.cancel()

    def _retire_old_runners(self) -> None:
        # Shut down finished runners lazily: doing it from a run's own completion callback
        # would run on that run's loop thread, which the shutdown may wait for.
        if self.last_run is not None:
            self._old_runners.append(self.last_run.runner)
        keep: list[TaskRunner] = []
        for r in self._old_runners:
            if r.running:
                keep.append(r)
            else:
                # Not waiting: a timed-out thread task may still be running its body, and
                # the next run must not wait for it.
                r.shutdown(wait=False)
        self._old_runners = keep

    def close(self) -> None:
        """Stop schedules, cancel what is running and release pools (extension unload)."""
        self.schedules.close()
        self.cancel()
        self._retire_old_runners()
        self.dask.close()

    # -- checkpoints ---------------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path | None:
        """Where results are checkpointed, or None when checkpointing is off."""
        return self._checkpoint.path

    def configure_checkpoint(self, checkpoint: str | os.PathLike[str] | bool) -> Path | None:
        """``True``: the default file for this notebook; ``False``: off; a path: that file."""
        if isinstance(checkpoint, str | os.PathLike) and os.fspath(checkpoint):
            try:  # a directory would fail only at the first run's save
                check_file_path("checkpoint", os.path.expanduser(checkpoint))
            except ValueError as exc:
                raise SessionError(str(exc)) from None
        return self._checkpoint.configure(checkpoint, self.user_ns)

    def checkpointer(self) -> FileCheckpointer | None:
        """The session's checkpointer (one per file, reused across runs), or None if off."""
        return self._checkpoint.checkpointer()

    def delete_checkpoint(self) -> bool:
        """Remove the checkpoint file and its segments; True if there was one."""
        return self._checkpoint.delete()

    def _prime_after_define(self, name: str) -> list[str]:
        """Restore ``name`` and any task whose upstream it completes, if the checkpoint has
        them with a matching identity: after a restart, running the cells (in any order)
        brings the results back without running anything."""
        self.last_prime_error = None
        if self.checkpoint_path is None:
            return []
        try:
            return self.prime(downstream(self.tasks, name))
        except CheckpointError as exc:  # the definition stands; the magic says why
            self.last_prime_error = exc
            return []

    def prime(self, names: Iterable[str] | None = None) -> list[str]:
        """Put the stored results of ``names`` (default: all) in the namespace, without running
        anything; only tasks whose whole upstream is defined can be checked. Returns the names
        restored."""
        records = self._checkpoint.stored_records()
        if not records:
            return []
        tasks = self.tasks
        wanted = [n for n in (names if names is not None else tasks) if n in tasks]
        ready = [n for n in wanted if upstream_defined(tasks, n)]
        if not ready:
            return []
        try:
            plan = self.plan(ready)
        except SessionError:
            return []
        targets = set(ready)
        restored: list[str] = []
        fingerprints: dict[str, str] = {}
        for cell in plan:  # upstream first: a child's fingerprint folds in its parents'
            fp = fingerprints[cell.name] = task_fingerprint(
                cell.name, version=self.effective_version(cell),
                parents=[fingerprints[a] for a in cell.after])
            rec = restorable(records, cell.name, fp) if cell.name in targets else None
            if rec is not None:
                self._store(TaskResult(cell.name, cell.name, TaskStatus.COMPLETED,
                                       rec.get("value"), None, rec["attempts"],
                                       rec["started_at"], rec["finished_at"], True))
                restored.append(cell.name)
        return restored

    # -- reporting -----------------------------------------------------------------------------

    def describe_config(self) -> list[str]:
        """Human-readable lines about the session's settings, for %wfy_status."""
        from ._loop import nest_asyncio_enabled

        lines = []
        path = self.checkpoint_path
        if path is None:
            lines.append("checkpoint: off")
        else:
            state = "" if path.exists() else " (nothing stored yet)"
            lines.append(f"checkpoint: {path}{state}")
        if self.max_workers is not None:
            lines.append(f"max workers: {self.max_workers}")
        dask = self.dask.describe()
        if dask is not None:
            lines.append(dask)
        if nest_asyncio_enabled():
            lines.append("loop mode: nest_asyncio (runs happen on the kernel's own loop)")
        return lines

    def status_rows(self) -> list[dict[str, str]]:
        """One row per defined task: options and the latest outcome, for %wfy_status."""
        rows = []
        for cell in self.tasks.values():
            res = self.results.get(cell.name)
            live = None
            run = self.last_run
            if run is not None and cell.name in run.handles and not run.done:
                live = run.handles[cell.name]
            status = "not run"
            attempts = took = ""
            if live is not None:
                status = live.status.value
                attempts = str(live.attempts) if live.attempts else ""
            elif res is not None:
                status = res.status.value + (" (restored)" if res.restored else "")
                attempts = str(res.attempts) if res.attempts else ""
                took = "" if res.duration is None else format_duration(res.duration)
            rows.append({
                "task": cell.name,
                "after": ", ".join(cell.after) or "-",
                "backend": cell.backend,
                "status": status,
                "attempts": attempts,
                "duration": took,
                "version": cell.version[:8],
            })
        return rows
