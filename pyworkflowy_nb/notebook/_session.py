"""The notebook session, the model of the notebook layer: definitions, plans, runs, results.

Design decisions:
- ``Session`` is a thin owner of the pieces, each in its own module: the definitions registry
  (``_definitions``: cells checked, compiled, kept by name, cycles refused), the graph
  algorithms (``_plan``), the runs (``_runs``: a fresh runner per run, cells submitted in plan
  order, and :class:`~._runs.Run`, which owns start, wait and cancel), where checkpoints go
  (``_checkpoint_file``), priming (``_priming``), ``%wfy_schedule`` (``_schedules``) and Dask
  cells (``_dask_cells``). It keeps what ties them together: the user namespace, the latest
  result of each task, the current run and the settings.
- It is the model only: it returns values and raises :class:`~._exceptions.SessionError` for
  user mistakes; it never prints and never imports IPython. The magics are the interface and
  ``_tables`` formats its text. So the session is usable, and tested, without a kernel:
  ``Session(user_ns={})`` gives one over a plain dict.
- A cell contributes exactly its result to the namespace, stored under its name when it
  completes (or is restored); a task's identity is its name and ``Task.version`` (the cell
  source plus the notebook functions, classes and constants it refers to), and the engine
  folds parents' fingerprints into a child's, so changing a cell invalidates that node and
  everything downstream of it, and nothing else.
- Checkpoints (cloudpickle, signed) are on by default in a kernel, in ``.wfy/<notebook>.ckpt``
  beside the notebook. Every run resumes from the checkpoint; defining a cell already restores
  its stored result (and that of any task whose upstream just became complete).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import RunResults, TaskResult
from ..exceptions import CheckpointError
from ..validation import check_file_path, check_optional_seconds
from ._cells import BACKEND_CHOICES as BACKEND_CHOICES
from ._cells import CellTask as CellTask
from ._cells import cell_version as cell_version
from ._cells import check_name as check_name
from ._cells import compile_cell as compile_cell
from ._cells import effective_version
from ._checkpoint_file import CheckpointFile, is_kernel_shell
from ._checkpoint_file import default_checkpoint_path as default_checkpoint_path
from ._checkpoint_file import notebook_path as notebook_path
from ._dask_cells import DaskLane
from ._definitions import Definitions, new_cell
from ._exceptions import RunInProgressError, SessionError
from ._exceptions import SessionCycleError as SessionCycleError
from ._plan import downstream, upstream_defined
from ._priming import stored_results
from ._runs import Run as Run
from ._runs import new_runner, submit_plan
from ._schedules import ScheduleBook

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
        self._definitions = Definitions()
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
        return self._definitions.snapshot()

    def define(
        self,
        name: str,
        source: str,
        *,
        after: Iterable[str] = (),
        retries: int = 0,
        timeout: float | None = None,
        backend: str | None = None,
        cache: bool = False,
    ) -> CellTask:
        """Define (or redefine) the node ``name`` whose body is ``source``; do not run it."""
        cell = new_cell(self.shell, name, source, after, retries, timeout, backend, cache)
        self._definitions.add(cell)
        self.last_primed = self._prime_after_define(name)
        return cell
    def forget(self, names: Sequence[str] | None = None) -> list[str]:
        """Drop the named definitions (all when ``names`` is None); return what was dropped."""
        dropped = self._definitions.forget(names)
        if names is None:
            self.results.clear()
        for n in dropped:
            self.results.pop(n, None)
        return dropped

    # -- planning ------------------------------------------------------------------------------

    def plan(self, names: Sequence[str] | None = None) -> list[CellTask]:
        """The named tasks (all when empty) plus everything upstream, in the order they run
        (ties in definition order)."""
        return self._definitions.plan(names)

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
        runner = new_runner(self.checkpointer() if persist else None, workers, restore=restore,
                            cache=any(c.cache for c in plan))
        runner.subscribe(self._land)
        for listener in listeners:
            runner.subscribe(listener)
        handles = submit_plan(runner, plan, self.user_ns, self.effective_version, self.dask)
        return Run(runner=runner, handles=handles, names=tuple(c.name for c in plan))

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
        restored = stored_results(plan, set(ready), records, self.effective_version)
        for result in restored:
            self._store(result)
        return [r.key for r in restored]
