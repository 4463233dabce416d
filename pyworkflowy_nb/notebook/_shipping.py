"""Cells that run elsewhere: a cell and the values it reads, sent by value with cloudpickle.

Design decisions:
- The engine's process backend imports a task's function by name, which a cell cannot offer.
  A ``--backend process`` cell is still an ordinary engine task on the process lane
  (:class:`ShippedCell`), so worker slots, ``max_workers``, timeouts, cancellation and the
  replacement of a broken pool are the engine's: in particular a timed-out attempt keeps its
  slot until its worker is really free, and the next cell's timeout starts only once it has a
  worker. What differs is how the task is pickled: by value (its source plus the namespace
  values it references), at the moment the engine hands it to the pool, when the upstream
  results it reads are known.
- The answer comes back by value too: the worker returns (or raises) a small wrapper whose
  pickled form is the cloudpickle of the value (or exception), so the kernel receives the plain
  value even when its class exists only in the notebook.
- Workers ignore SIGINT once they ran a cell: interrupting the kernel signals its whole process
  group, and that must cancel the run in the kernel, not kill a worker that may serve the next
  attempt.
- ``--backend dask`` cells ship the same payload through :func:`run_in_worker`, an asyncio task
  awaiting the cluster's answer as bytes.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
from collections.abc import Callable, Mapping
from typing import Any

from .. import Task
from ._cells import CellTask, compile_cell, referenced_names, register_source
from ._tracebacks import user_traceback

__all__ = ["ShippedCell", "WorkerError", "run_in_worker"]


class WorkerError(RuntimeError):
    """A ``--backend process`` cell raised something that could not be sent back as is."""


class ShippedCell(Task[[], Any]):
    """A ``--backend process`` cell as an engine task that pickles by value.

    ``namespace`` gives the globals the cell runs in (the user namespace plus its upstream
    results); it is called when the engine sends the attempt to a worker.
    """

    def __init__(self, cell: CellTask, namespace: Callable[[], dict[str, Any]],
                 **options: Any) -> None:
        self.cell = cell
        self.namespace = namespace

        def run_here() -> Any:  # calling the task directly runs the cell in this process
            return _InWorker(_pack_for_worker(cell, namespace()), cell.name)().value()

        super().__init__(run_here, name=cell.name, backend="process", **options)

    def check_backend(self, backend: str) -> None:
        """Any lane will do: this task travels by value, not by its function's name."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Runs when the pool sends the attempt: a value that cannot be sent fails the attempt
        # with a message naming it (see _pack_for_worker).
        return (_worker_task, (_pack_for_worker(self.cell, self.namespace()), self.cell.name))


def _worker_task(payload: bytes, name: str) -> Any:
    """Worker-process side of ShippedCell's pickle: a plain task running the shipped cell."""
    return Task(_InWorker(payload, name), name=name)


class _ByValue:
    """A value (or exception) that pickles as its cloudpickle: it unpickles as itself."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __reduce__(self) -> tuple[Any, ...]:
        import cloudpickle

        return (cloudpickle.loads, (self.data,))

    def value(self) -> Any:
        import cloudpickle

        return cloudpickle.loads(self.data)


class _ErrorByValue(Exception):
    """Raised in the worker for the cell's exception; it unpickles as that exception."""

    def __init__(self, data: bytes) -> None:
        super().__init__()
        self.data = data

    def __reduce__(self) -> tuple[Any, ...]:
        import cloudpickle

        return (cloudpickle.loads, (self.data,))


class _InWorker:
    """The shipped cell in the worker: run it, answer by value."""

    def __init__(self, payload: bytes, name: str) -> None:
        self.payload = payload
        self.name = name

    def __call__(self) -> _ByValue:
        import cloudpickle

        _ignore_sigint()
        try:
            value = _execute(self.payload)
        except BaseException as exc:
            tb = user_traceback(exc)
            try:
                cloudpickle.dumps(exc)
            except Exception:  # a class or value the kernel could not rebuild
                exc = RuntimeError(repr(exc))
            exc.add_note(f"raised in the worker process of task {self.name!r}:\n{tb}")
            raise _ErrorByValue(bytes(cloudpickle.dumps(exc))) from None
        return _ByValue(bytes(cloudpickle.dumps(value)))


async def run_in_worker(
    pool: Callable[[], concurrent.futures.Executor], cell: CellTask, g: dict[str, Any]
) -> Any:
    """Run ``cell`` over what it reads of ``g`` in a worker of ``pool()`` (a Dask executor);
    its last value."""
    payload = _pack_for_worker(cell, g)  # first: a value that cannot be sent starts nothing
    loop = asyncio.get_running_loop()
    data = await loop.run_in_executor(pool(), _run_packed, payload)
    return _unpack_result(data, cell.name)


def _pack_for_worker(cell: CellTask, g: Mapping[str, Any]) -> bytes:
    import cloudpickle

    shipped = {
        k: g[k] for k in sorted(referenced_names(cell.body, cell.last))
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
    """Interrupting the kernel (SIGINT to its process group) cancels the run in the kernel;
    it must not kill the workers."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _execute(payload: bytes) -> Any:
    """Worker side: rebuild the namespace, run the cell, return its last value."""
    import cloudpickle

    _name, code, filename, g = cloudpickle.loads(payload)
    g.setdefault("__builtins__", builtins)
    g.setdefault("__name__", "__main__")
    register_source(filename, code)
    body, last, _ = compile_cell(code, filename)
    exec(body, g)
    return None if last is None else eval(last, g)


def _run_packed(payload: bytes) -> bytes:
    """Worker side for Dask: the value or the error, as bytes."""
    import cloudpickle

    try:
        return bytes(cloudpickle.dumps(("ok", _execute(payload), "")))
    except BaseException as exc:
        tb = user_traceback(exc)
        try:
            return bytes(cloudpickle.dumps(("error", exc, tb)))
        except Exception:
            return bytes(cloudpickle.dumps(("error", RuntimeError(repr(exc)), tb)))


def _unpack_result(data: bytes, name: str) -> Any:
    import cloudpickle

    kind, value, tb = cloudpickle.loads(data)
    if kind == "ok":
        return value
    if isinstance(value, BaseException):
        value.add_note(f"raised in the worker process of task {name!r}:\n{tb}")
        raise value
    raise WorkerError(f"task {name!r} failed in its worker process:\n{tb}")  # pragma: no cover
