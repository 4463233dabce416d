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
  run's event loop); cells using top-level ``await`` run on the asyncio backend. The engine's
  process backend imports functions by name, which a cell cannot offer, so ``--backend process``
  ships the cell source plus the values it references to a spawn-started worker with cloudpickle.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import concurrent.futures
import difflib
import hashlib
import inspect
import keyword
import linecache
import os
import threading
import traceback
import types
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from .._checkpoint import Checkpointer
from .._handle import RunResults, TaskHandle, TaskResult
from .._task import Task
from ..exceptions import CheckpointError, CycleError

if TYPE_CHECKING:
    from .._checkpoint import FileCheckpointer, Record
    from .._events import TaskEvent
    from .._run import TaskRunner
    from ..schedule import Job, Scheduler

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

BACKEND_CHOICES: tuple[str, ...] = ("thread", "asyncio", "process")

_CO_COROUTINE = inspect.CO_COROUTINE


class SessionCycleError(CycleError, UsageError):
    """An ``--after`` edge would close a loop; shown by IPython without a traceback."""


# -- one cell ----------------------------------------------------------------------------------


def check_name(name: str, what: str = "task name") -> str:
    """Return ``name`` if it can be bound in the namespace; otherwise a UsageError saying why."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        suggestion = "".join(c if c.isalnum() or c == "_" else "_" for c in str(name)) or "result"
        if suggestion[0].isdigit() or keyword.iskeyword(suggestion):
            suggestion = f"t_{suggestion}"
        raise UsageError(
            f"{what} {name!r} is not a valid Python identifier, and results are stored in the "
            f"namespace under the task's name; use something like {suggestion!r}"
        )
    return name


def cell_version(source: str) -> str:
    """A hash of a cell's source, the code part of the task's identity.

    Line endings and trailing blank space are normalised so a re-saved notebook does not
    invalidate its checkpoint; anything else (comments included) counts as a change.
    """
    text = "\n".join(line.rstrip() for line in source.replace("\r\n", "\n").split("\n")).strip()
    return hashlib.sha256(b"wfy-cell-v1\0" + text.encode("utf-8")).hexdigest()[:32]


def compile_cell(
    code: str, filename: str
) -> tuple[types.CodeType, types.CodeType | None, bool]:
    """Compile a cell as (statements, last expression or None, uses top-level await).

    The last statement is compiled in ``eval`` mode when it is an expression, so its value is
    the task's result, as a notebook cell's last expression is its output.
    """
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
    tree = ast.parse(code, filename=filename, mode="exec")
    last: types.CodeType | None = None
    final = tree.body[-1] if tree.body else None
    if isinstance(final, ast.Expr):
        tree.body.pop()
        expr = ast.Expression(body=final.value)
        last = compile(expr, filename, "eval", flags=flags, dont_inherit=True)
    body = compile(tree, filename, "exec", flags=flags, dont_inherit=True)
    is_async = bool(body.co_flags & _CO_COROUTINE) or bool(
        last is not None and last.co_flags & _CO_COROUTINE
    )
    return body, last, is_async


def _register_source(filename: str, code: str) -> None:
    # mtime None keeps linecache.checkcache() from evicting it: tracebacks show the cell lines.
    lines = code.splitlines(keepends=True)
    linecache.cache[filename] = (len(code), None, lines, filename)


@dataclass(frozen=True)
class CellTask:
    """One ``%%task`` definition: everything needed to (re)build its node for a run."""

    name: str
    source: str
    code: str
    after: tuple[str, ...]
    retries: int
    timeout: float | None
    backend: str
    version: str
    is_async: bool
    filename: str
    body: types.CodeType = field(repr=False, compare=False)
    last: types.CodeType | None = field(repr=False, compare=False)
    #: Global names the cell may read (its code's co_names, nested code included).
    refs: tuple[str, ...] = field(default=(), repr=False, compare=False)


def _exec_sync(cell: CellTask, g: dict[str, Any]) -> Any:
    exec(cell.body, g)
    return None if cell.last is None else eval(cell.last, g)


async def _exec_async(cell: CellTask, g: dict[str, Any]) -> Any:
    # With PyCF_ALLOW_TOP_LEVEL_AWAIT, code that awaits evaluates to a coroutine to await;
    # code that does not is evaluated directly (and may itself return a coroutine object).
    out = eval(cell.body, g)
    if cell.body.co_flags & _CO_COROUTINE:
        await out
    if cell.last is None:
        return None
    value = eval(cell.last, g)
    if cell.last.co_flags & _CO_COROUTINE:
        value = await value
    return value


# -- the process backend (cloudpickle) ---------------------------------------------------------


def _referenced_names(*codes: types.CodeType | None) -> set[str]:
    """Global names a cell may read: co_names of its code and of every nested code object."""
    names: set[str] = set()
    stack = [c for c in codes if c is not None]
    while stack:
        co = stack.pop()
        names.update(co.co_names)
        stack.extend(c for c in co.co_consts if isinstance(c, types.CodeType))
    return names


def _pack_for_worker(cell: CellTask, g: dict[str, Any]) -> bytes:
    import cloudpickle

    shipped = {
        k: g[k] for k in sorted(_referenced_names(cell.body, cell.last))
        if k in g and k != "__builtins__"
    }
    try:
        return bytes(cloudpickle.dumps((cell.name, cell.code, cell.filename, shipped)))
    except Exception as exc:
        for k, v in shipped.items():
            try:
                cloudpickle.dumps(v)
            except Exception:
                raise TypeError(
                    f"task {cell.name!r} runs in a worker process, but {k!r} "
                    f"({type(v).__name__}) cannot be sent there with cloudpickle: {exc}; "
                    f"use --backend thread for this cell"
                ) from exc
        raise


def _ignore_sigint() -> None:
    """Worker-process initializer: interrupting the kernel (SIGINT to its process group)
    cancels the run in the kernel; it must not kill the pool's workers."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_packed(payload: bytes) -> bytes:
    """Worker-process side of ``--backend process``: rebuild the namespace, run, send back."""
    import cloudpickle

    _name, code, filename, g = cloudpickle.loads(payload)
    g.setdefault("__builtins__", builtins)
    g.setdefault("__name__", "__main__")
    try:
        _register_source(filename, code)
        body, last, _ = compile_cell(code, filename)
        exec(body, g)
        value = None if last is None else eval(last, g)
        return bytes(cloudpickle.dumps(("ok", value, "")))
    except BaseException as exc:
        tb = "".join(traceback.format_exception(exc))
        try:
            return bytes(cloudpickle.dumps(("error", exc, tb)))
        except Exception:
            return bytes(cloudpickle.dumps(("error", RuntimeError(repr(exc)), tb)))


class WorkerError(RuntimeError):
    """A ``--backend process`` cell raised something that could not be sent back as is."""


def _unpack_result(data: bytes, name: str) -> Any:
    import cloudpickle

    kind, value, tb = cloudpickle.loads(data)
    if kind == "ok":
        return value
    if isinstance(value, BaseException):
        value.add_note(f"raised in the worker process of task {name!r}:\n{tb}")
        raise value
    raise WorkerError(f"task {name!r} failed in its worker process:\n{tb}")  # pragma: no cover


# -- the run -------------------------------------------------------------------------------------


@dataclass
class Run:
    """One run of (part of) the session DAG on a fresh runner."""

    runner: TaskRunner
    handles: dict[str, TaskHandle[Any]]
    names: tuple[str, ...]
    future: concurrent.futures.Future[RunResults] | None = None

    @property
    def done(self) -> bool:
        if self.future is not None:
            return self.future.done()
        return not self.runner.running and all(h.status.terminal for h in self.handles.values())


_NO_TASKS = "no tasks are defined yet: write a cell that starts with `%%task NAME`"


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
            checkpoint = shell is not None and _is_kernel_shell(shell)
        self._checkpoint_path: Path | None = None
        self._checkpointer: FileCheckpointer | None = None
        self._records_cache: tuple[tuple[str, int, int], dict[str, Record]] | None = None
        self._tasks: dict[str, CellTask] = {}
        self._lock = threading.RLock()
        self.configure_checkpoint(checkpoint)
        #: The latest outcome of each task, by name (kept across runs for %wfy_status).
        self.results: dict[str, TaskResult] = {}
        #: The run started last (blocking or background).
        self.last_run: Run | None = None
        self.max_workers: int | None = None
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._old_runners: list[TaskRunner] = []
        self.schedules = ScheduleBook(self)
        #: Tasks the latest ``define`` restored from the checkpoint into the namespace.
        self.last_primed: list[str] = []

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
                raise UsageError(
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
            raise UsageError(f"--retries must be a whole number >= 0, got {retries!r}")
        if timeout is not None and not timeout > 0:
            raise UsageError(f"--timeout must be a positive number of seconds, got {timeout!r}")
        code = self._to_python(source)
        filename = f"<wfy-task {name}>"
        body, last, is_async = compile_cell(code, filename)
        _register_source(filename, code)
        resolved = self._resolve_backend(name, backend, is_async)
        cell = CellTask(
            name=name, source=source, code=code, after=tuple(edges), retries=retries,
            timeout=timeout, backend=resolved, version=cell_version(source),
            is_async=is_async, filename=filename, body=body, last=last,
            refs=tuple(sorted(_referenced_names(body, last) - set(edges))),
        )
        with self._lock:
            trial = dict(self._tasks)
            trial[name] = cell
            cycle = _find_cycle(trial, name)
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
                    raise UsageError(self._unknown(n))
            for n in names:
                del self._tasks[n]
                self.results.pop(n, None)
            return list(names)

    def _to_python(self, source: str) -> str:
        # Cells may use IPython syntax (!cmd, %magic); turn it into plain Python first.
        if self.shell is not None:
            # The input transformers only: shell.transform_cell would also apply automagic, so
            # a one-line body such as `load * 2` would turn into a call of the %load magic.
            code: str = self.shell.input_transformer_manager.transform_cell(source)
            return code
        return source

    @staticmethod
    def _resolve_backend(name: str, backend: str | None, is_async: bool) -> str:
        if backend is None:
            return "asyncio" if is_async else "thread"
        if backend not in BACKEND_CHOICES:
            close = difflib.get_close_matches(backend, BACKEND_CHOICES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(
                f"unknown --backend {backend!r}{hint}; use one of {', '.join(BACKEND_CHOICES)}"
            )
        if is_async and backend != "asyncio":
            raise UsageError(
                f"task {name!r} uses top-level await, which needs --backend asyncio "
                f"(got {backend!r}); drop the await or the --backend option"
            )
        if backend == "process":
            try:
                import cloudpickle  # noqa: F401
            except ImportError as exc:  # pragma: no cover - cloudpickle is a dependency
                raise UsageError(
                    "--backend process needs cloudpickle to ship the cell to a worker: "
                    "`pip install cloudpickle`, or use --backend thread"
                ) from exc
        return backend

    # -- planning ------------------------------------------------------------------------------

    def _unknown(self, name: str, needed_by: str | None = None) -> str:
        known = list(self._tasks)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        listed = ", ".join(known) if known else "none yet"
        if needed_by is not None:
            return (
                f"task {needed_by!r} runs --after {name!r}, which is not defined{hint}: run the "
                f"`%%task {name}` cell first (defined tasks: {listed})"
            )
        return f"unknown task {name!r}{hint}; defined tasks: {listed}"

    def plan(self, names: Sequence[str] | None = None) -> list[CellTask]:
        """The named tasks (all when empty) plus everything upstream, in topological order.

        Ties are broken by definition order, so a plan is deterministic.
        """
        with self._lock:
            tasks = dict(self._tasks)
            if not tasks:
                raise UsageError(_NO_TASKS)
            targets = list(names) if names else list(tasks)
            for n in targets:
                if n not in tasks:
                    raise UsageError(self._unknown(n))
            needed: set[str] = set()
            stack = list(targets)
            while stack:
                n = stack.pop()
                if n in needed:
                    continue
                needed.add(n)
                for parent in tasks[n].after:
                    if parent not in tasks:
                        raise UsageError(self._unknown(parent, needed_by=n))
                    stack.append(parent)
        order = [n for n in tasks if n in needed]
        position = {n: i for i, n in enumerate(order)}
        waiting = {n: len(tasks[n].after) for n in order}
        children: dict[str, list[str]] = {n: [] for n in order}
        for n in order:
            for parent in tasks[n].after:
                children[parent].append(n)
        ready = sorted((n for n in order if waiting[n] == 0), key=position.__getitem__)
        planned: list[CellTask] = []
        while ready:
            n = ready.pop(0)
            planned.append(tasks[n])
            for child in children[n]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    ready.append(child)
                    ready.sort(key=position.__getitem__)
        if len(planned) != len(order):  # only possible if definitions changed under us
            stuck = next(n for n in order if waiting[n])
            cycle = _find_cycle(tasks, stuck) or [stuck]
            raise SessionCycleError(
                f"the tasks form a dependency cycle: {' -> '.join(cycle)}", cycle=tuple(cycle)
            )
        return planned

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
            node = Task(
                self._make_body(cell, upstream),
                name=cell.name,
                backend="asyncio" if cell.backend == "process" else cell.backend,
                retries=cell.retries,
                timeout=cell.timeout,
                version=self.effective_version(cell),
            )
            handles[cell.name] = runner.submit(
                node, depends_on=list(upstream.values()), task_key=cell.name
            )
        return handles

    def _new_runner(self, max_workers: int | None, *, restore: bool, persist: bool
                    ) -> TaskRunner:
        from .._run import TaskRunner

        # Failures are reported by the magic after the run; the other branches keep going.
        options: dict[str, Any] = {"max_workers": max_workers, "on_task_error": "continue"}
        ckpt = self.checkpointer() if persist else None
        if ckpt is None:
            return TaskRunner(**options)
        if not ckpt.path.exists():
            return TaskRunner(checkpointer=ckpt, **options)
        if restore:
            return TaskRunner.resume(ckpt, **options)
        # Load anyway: the checkpointer must build on the stored segments, not replace them.
        ckpt.load()
        return TaskRunner(checkpointer=ckpt, **options)

    def effective_version(self, cell: CellTask) -> str:
        """The cell's source hash, extended by what it uses from the notebook.

        Functions and classes defined in the notebook (module ``__main__``) contribute the
        fingerprint of their code (independent of cell numbers and the kernel's pid), and plain
        constants their value, so editing a helper cell or ``THRESHOLD = 5`` invalidates the
        tasks that use them. Upstream results are left out: parents' fingerprints cover them.
        """
        parts: list[str] = []
        ns = self.user_ns
        for name in cell.refs:
            if name not in ns:
                continue
            obj = ns[name]
            if type(obj) in _PLAIN:
                parts.append(f"{name}={type(obj).__name__}:{obj!r}")
            elif (isinstance(obj, type) or inspect.isfunction(obj)) and getattr(
                obj, "__module__", None
            ) == "__main__":
                parts.append(f"{name}=code:{_code_fingerprint(obj)}")
        if not parts:
            return cell.version
        digest = hashlib.sha256(cell.version.encode())
        for part in parts:
            digest.update(b"\0" + part.encode("utf-8", "surrogatepass"))
        return digest.hexdigest()[:32]

    def _land(self, event: TaskEvent) -> None:
        """Listener: store each finished task's outcome, and its value under its name."""
        handle = event.handle
        if handle is None or event.kind not in (
            "completed", "restored", "failed", "skipped", "cancelled"
        ):
            return
        result = handle.to_result()
        self.results[handle.key] = result
        if result.ok:
            self.user_ns[handle.key] = result.value

    def _make_body(
        self, cell: CellTask, upstream: dict[str, TaskHandle[Any]]
    ) -> Callable[[], Any]:
        user_ns = self.user_ns

        def namespace() -> dict[str, Any]:
            g = dict(user_ns)
            for n, h in upstream.items():
                g[n] = h.result()
            return g

        fn: Callable[[], Any]
        if cell.backend == "process":
            pool = self._process_pool

            async def run_process_cell() -> Any:
                payload = _pack_for_worker(cell, namespace())
                loop = asyncio.get_running_loop()
                data = await loop.run_in_executor(pool(), _run_packed, payload)
                return _unpack_result(data, cell.name)

            fn = run_process_cell
        elif cell.is_async:

            async def run_async_cell() -> Any:
                return await _exec_async(cell, namespace())

            fn = run_async_cell
        else:

            def run_cell() -> Any:
                return _exec_sync(cell, namespace())

            fn = run_cell
        fn.__qualname__ = fn.__name__ = f"wfy_task_{cell.name}"
        return fn

    def _process_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        with self._lock:
            pool = self._pool
            if pool is not None and getattr(pool, "_broken", False):
                pool.shutdown(wait=False, cancel_futures=True)
                pool = None  # a worker died (killed, out of memory): start afresh
            if pool is None:
                import multiprocessing

                # spawn, not fork: the kernel has live threads (zmq, the run's loop thread)
                # that a forked child would inherit in an undefined state.
                pool = self._pool = concurrent.futures.ProcessPoolExecutor(
                    max_workers=self.max_workers or min(4, os.cpu_count() or 1),
                    mp_context=multiprocessing.get_context("spawn"),
                    initializer=_ignore_sigint,
                )
            return pool

    def check_idle(self) -> None:
        """Refuse to start a run while the previous background run is still going."""
        run = self.last_run
        if run is not None and not run.done:
            raise UsageError(
                "a run of this session is still going (started with --background): wait for "
                "it, check it with %wfy_status, or stop it with %wfy_cancel"
            )

    def start(self, run: Run, *, background: bool) -> Run:
        """Record ``run`` as the session's current run; with ``background``, launch it."""
        self._retire_old_runners()
        self.last_run = run
        if background:
            run.future = run.runner.run_in_background()
        return run

    def wait(self, run: Run) -> RunResults:
        """Run ``run`` to the end in the calling thread (kernel cell or plain thread)."""
        try:
            return run.runner.run()
        except KeyboardInterrupt:
            # The kernel was interrupted while the cell waited: stop the tasks too.
            run.runner.cancel_all()
            raise

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
        if run is None or run.done:
            return False
        run.runner.cancel_all()
        return True

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
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

    # -- checkpoints ---------------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path | None:
        """Where results are checkpointed, or None when checkpointing is off."""
        return self._checkpoint_path

    def configure_checkpoint(self, checkpoint: str | os.PathLike[str] | bool) -> Path | None:
        """``True``: the default file for this notebook; ``False``: off; a path: that file."""
        if checkpoint is True:
            path: Path | None = default_checkpoint_path(self.user_ns)
        elif checkpoint is False:
            path = None
        elif isinstance(checkpoint, str | os.PathLike) and os.fspath(checkpoint):
            path = Path(checkpoint).expanduser().absolute()
        else:
            raise UsageError(
                f"checkpoint must be a file path, True (the notebook's default file) or False "
                f"(off), got {checkpoint!r}"
            )
        with self._lock:
            self._checkpoint_path = path
            self._checkpointer = None
            self._records_cache = None
        return path

    def checkpointer(self) -> FileCheckpointer | None:
        """The session's checkpointer (one per file, reused across runs), or None if off."""
        with self._lock:
            path = self._checkpoint_path
            if path is None:
                return None
            ckpt = self._checkpointer
            # With no file on disk, start a fresh checkpointer: one that loaded or wrote
            # segments before would otherwise name files that are gone.
            if ckpt is None or not path.exists():
                from ._checkpoint import CloudpickleCheckpointer

                ckpt = self._checkpointer = CloudpickleCheckpointer(path)
            return ckpt

    def delete_checkpoint(self) -> bool:
        """Remove the checkpoint file and its segments; True if there was one."""
        import shutil

        with self._lock:
            path = self._checkpoint_path
            self._checkpointer = None
            self._records_cache = None
            if path is None:
                return False
            existed = path.exists()
            path.unlink(missing_ok=True)
            shutil.rmtree(path.with_name(path.name + ".d"), ignore_errors=True)
            return existed

    def _stored_records(self) -> dict[str, Record] | None:
        """The checkpoint's records, cached until its manifest changes; None if none."""
        path = self._checkpoint_path
        if path is None:
            return None
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        stamp = (str(path), st.st_mtime_ns, st.st_size)
        cached = self._records_cache
        if cached is not None and cached[0] == stamp:
            return cached[1]
        from ._checkpoint import CloudpickleCheckpointer

        # A separate reader: the session's checkpointer keeps its own view for writing.
        records = CloudpickleCheckpointer(path).load()
        self._records_cache = (stamp, records)
        return records

    def _prime_after_define(self, name: str) -> list[str]:
        """Restore ``name`` and any task whose upstream it completes, if the checkpoint has
        them with a matching identity: after a restart, running the cells (in any order)
        brings the results back without running anything."""
        if self._checkpoint_path is None:
            return []
        try:
            return self.prime(_downstream(self.tasks, name))
        except CheckpointError as exc:
            import sys

            print(f"wfy: results were not restored: {exc}", file=sys.stderr)
            return []

    def prime(self, names: Iterable[str] | None = None) -> list[str]:
        """Put the stored results of ``names`` (default: all) in the namespace, without running
        anything; only tasks whose whole upstream is defined can be checked. Returns the names
        restored."""
        from .._run import TaskRunner

        records = self._stored_records()
        if not records:
            return []
        tasks = self.tasks
        wanted = [n for n in (names if names is not None else tasks) if n in tasks]
        ready = [n for n in wanted if _upstream_defined(tasks, n)]
        if not ready:
            return []
        try:
            plan = self.plan(ready)
        except UsageError:
            return []
        restored: list[str] = []
        targets = set(ready)

        def land(event: TaskEvent) -> None:
            h = event.handle
            if event.kind == "restored" and h is not None and h.key in targets:
                self._land(event)
                restored.append(h.key)

        # A throwaway runner that never runs: submitting primes what matches, nothing else.
        runner = TaskRunner.resume(_Preloaded(records), on_task_error="continue")
        runner.subscribe(land)
        self._submit_plan(runner, plan)
        return restored

    # -- reporting -----------------------------------------------------------------------------

    def describe_config(self) -> list[str]:
        """Human-readable lines about the session's settings, for %wfy_status."""
        from ._loop import nest_asyncio_enabled

        lines = []
        path = self._checkpoint_path
        if path is None:
            lines.append("checkpoint: off")
        else:
            state = "" if path.exists() else " (nothing stored yet)"
            lines.append(f"checkpoint: {path}{state}")
        if self.max_workers is not None:
            lines.append(f"max workers: {self.max_workers}")
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
            attempts = duration = ""
            if live is not None:
                status = live.status.value
                attempts = str(live.attempts) if live.attempts else ""
            elif res is not None:
                status = res.status.value + (" (restored)" if res.restored else "")
                attempts = str(res.attempts) if res.attempts else ""
                duration = _fmt_duration(res.duration)
            rows.append({
                "task": cell.name,
                "after": ", ".join(cell.after) or "-",
                "backend": cell.backend,
                "status": status,
                "attempts": attempts,
                "duration": duration,
                "version": cell.version[:8],
            })
        return rows


class _Scheduled:
    """A schedule entry: which tasks a job fires, and how its firings went."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.job: Job | None = None
        self.runs = 0
        self.last = "not fired yet"
        self.busy = threading.Lock()


class ScheduleBook:
    """``%wfy_schedule``: jobs of a :class:`~pyworkflowy_nb.schedule.Scheduler` that each fire a
    whole sub-run of the session (the named tasks plus their upstream) on a fresh runner.

    The scheduler's own runner (thread backend) only executes small "firing" tasks; each firing
    builds the sub-run from the *current* cell definitions and runs it to the end in its worker
    thread. A firing that comes due while the previous one of the same job is still going is
    skipped rather than stacked up.
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        self._lock = threading.Lock()
        self._scheduler: Scheduler | None = None
        self._runner: TaskRunner | None = None
        self._entries: list[_Scheduled] = []

    def _ensure_started(self) -> Scheduler:
        from .._run import TaskRunner
        from ..schedule import Scheduler

        if self._scheduler is None:
            self._runner = TaskRunner(backend="thread", on_task_error="continue")
            self._scheduler = Scheduler(runner=self._runner)
        if not self._scheduler.running:
            self._scheduler.start()
        return self._scheduler

    def _firing(self, entry: _Scheduled) -> Task[[], str]:
        session = self._session

        def fire() -> str:
            if not entry.busy.acquire(blocking=False):
                return "skipped: the previous firing was still running"
            try:
                try:
                    results = session.run_detached(entry.names)
                except Exception as exc:
                    entry.last = f"error: {type(exc).__name__}: {exc}"
                    raise
                entry.runs += 1
                failed = [r.key for r in results.failed]
                entry.last = "ok" if not failed else f"failed: {', '.join(failed)}"
                return entry.last
            finally:
                entry.busy.release()

        label = "+".join(entry.names)
        fire.__qualname__ = fire.__name__ = f"wfy_schedule_{label}"
        return Task(fire, name=f"wfy-schedule:{label}", backend="thread")

    def _add(self, names: Sequence[str], make_job: Callable[[Scheduler, Task[[], str]], Job]
             ) -> Job:
        if not names:
            raise UsageError("name at least one task to schedule")
        for n in names:
            check_name(n)
        self._session.plan(names)  # unknown names and missing upstream fail now, not later
        entry = _Scheduled(tuple(dict.fromkeys(names)))
        with self._lock:
            scheduler = self._ensure_started()
            entry.job = make_job(scheduler, self._firing(entry))
            self._entries.append(entry)
        return entry.job

    def every(self, seconds: float, names: Sequence[str]) -> Job:
        """Fire ``names`` (and their upstream) every ``seconds``, first ``seconds`` from now."""
        label = " ".join(names)
        return self._add(names, lambda s, t: s.every(seconds, name=label).do(t))

    def cron(self, expression: str, names: Sequence[str]) -> Job:
        """Fire ``names`` (and their upstream) on a five-field cron expression."""
        from .._cron import parse_cron

        try:
            parse_cron(expression)
        except ValueError as exc:
            raise UsageError(f"bad cron expression {expression!r}: {exc}") from None
        label = " ".join(names)
        return self._add(names, lambda s, t: s.cron(expression, name=label).do(t))

    def stop(self, names: Sequence[str] | None = None) -> int:
        """Cancel the schedules that fire any of ``names`` (all when None); return how many."""
        with self._lock:
            if names is None:
                chosen = list(self._entries)
            else:
                scheduled = {n for e in self._entries for n in e.names}
                for n in names:
                    if n not in scheduled:
                        listed = ", ".join(sorted(scheduled)) or "nothing is scheduled"
                        raise UsageError(f"no schedule fires {n!r} (scheduled: {listed})")
                chosen = [e for e in self._entries if set(e.names) & set(names)]
            for entry in chosen:
                if entry.job is not None:
                    entry.job.cancel()
                self._entries.remove(entry)
            if not self._entries and self._scheduler is not None:
                self._scheduler.stop()
            return len(chosen)

    @property
    def entries(self) -> list[_Scheduled]:
        with self._lock:
            return list(self._entries)

    def rows(self) -> list[dict[str, str]]:
        rows = []
        for e in self.entries:
            job = e.job
            assert job is not None
            nxt = job.next_fire
            rows.append({
                "tasks": " ".join(e.names),
                "trigger": job.describe(),
                "next": "-" if nxt is None else nxt.strftime("%Y-%m-%d %H:%M:%S"),
                "runs": str(e.runs),
                "last": e.last,
            })
        return rows

    def close(self) -> None:
        self.stop(None)
        with self._lock:
            runner, self._runner = self._runner, None
            self._scheduler = None
        if runner is not None:
            runner.cancel_all()
            runner.shutdown(wait=False)


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 120:
        return f"{seconds:.2f}s"
    return f"{seconds / 60:.1f}min"


def _find_cycle(tasks: dict[str, CellTask], start: str) -> list[str] | None:
    """A path ``start -> ... -> start`` along defined ``after`` edges, or None."""
    # Iterative DFS: a long chain of cells must not hit the recursion limit.
    path: list[str] = [start]
    iters = [iter(tasks[start].after)]
    done: set[str] = set()
    while iters:
        nxt = next(iters[-1], None)
        if nxt is None:
            iters.pop()
            done.add(path.pop())
            continue
        if nxt == start:
            return [*path, start]
        if nxt in done or nxt in path or nxt not in tasks:
            continue
        path.append(nxt)
        iters.append(iter(tasks[nxt].after))
    return None


def _downstream(tasks: dict[str, CellTask], name: str) -> list[str]:
    """``name`` and every defined task that (transitively) runs after it."""
    children: dict[str, list[str]] = {}
    for cell in tasks.values():
        for parent in cell.after:
            children.setdefault(parent, []).append(cell.name)
    seen = {name}
    stack = [name]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return [n for n in tasks if n in seen]


def _upstream_defined(tasks: dict[str, CellTask], name: str) -> bool:
    stack = [name]
    seen: set[str] = set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        if n not in tasks:
            return False
        seen.add(n)
        stack.extend(tasks[n].after)
    return True


_PLAIN = (type(None), bool, int, float, complex, str, bytes)


def _code_fingerprint(obj: object) -> str:
    try:
        from ._fingerprint import code_fingerprint

        return code_fingerprint(obj)
    except Exception:  # an exotic object: fall back to what it is, not how it works
        return f"{type(obj).__qualname__}:{getattr(obj, '__qualname__', '')}"


class _Preloaded(Checkpointer):
    """Hands already-loaded records to ``TaskRunner.resume``; never written to."""

    def __init__(self, records: dict[str, Record]) -> None:
        self._records = records

    def load(self) -> dict[str, Record]:
        return self._records

    def save(self, records: Any) -> None:  # pragma: no cover - a priming runner never runs
        raise CheckpointError("the priming runner never saves")


def _is_kernel_shell(shell: Any) -> bool:
    from ._loop import get_kernel

    kernel = get_kernel()
    return kernel is not None and getattr(kernel, "shell", None) is shell


def notebook_path(user_ns: MutableMapping[str, Any] | None = None) -> Path | None:
    """The path of the notebook this kernel serves, when the frontend says so.

    VS Code puts it in ``__vsc_ipynb_file__``; Jupyter Server passes ``JPY_SESSION_NAME``
    (which ipykernel also exposes as ``__session__``).
    """
    ns = user_ns or {}
    for candidate in (ns.get("__vsc_ipynb_file__"), ns.get("__session__"),
                      os.environ.get("JPY_SESSION_NAME")):
        if isinstance(candidate, str) and candidate.endswith(".ipynb"):
            path = Path(candidate).expanduser()
            if not path.is_absolute():
                # Relative to the server's root; the kernel normally starts in the notebook's
                # folder, so fall back to the bare name there.
                path = path if path.exists() else Path(path.name)
                path = path.absolute()
            return path
    return None


def default_checkpoint_path(user_ns: MutableMapping[str, Any] | None = None) -> Path:
    """``.wfy/<notebook name>.ckpt`` beside the notebook, else ``.wfy/session.ckpt`` in cwd."""
    nb = notebook_path(user_ns)
    if nb is not None:
        return nb.parent / ".wfy" / f"{nb.stem}.ckpt"
    return Path.cwd() / ".wfy" / "session.ckpt"
