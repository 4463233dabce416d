"""``--backend process``: a cell and the values it reads, sent to a spawned worker by cloudpickle.

The engine's process backend imports functions by name, which a cell cannot offer; so the
session runs such a cell as an asyncio task that ships its source plus the namespace values it
references to a worker, and turns the worker's answer back into a value or an exception.
"""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import os
from collections.abc import Callable
from typing import Any

from ._cells import CellTask, compile_cell, referenced_names, register_source
from ._tracebacks import user_traceback

__all__ = ["WorkerError", "fresh_pool", "run_in_worker"]


class WorkerError(RuntimeError):
    """A ``--backend process`` cell raised something that could not be sent back as is."""


def fresh_pool(
    pool: concurrent.futures.ProcessPoolExecutor | None, max_workers: int | None
) -> concurrent.futures.ProcessPoolExecutor:
    """``pool`` if it still works, else a new pool of spawn-started workers."""
    if pool is not None and getattr(pool, "_broken", False):
        pool.shutdown(wait=False, cancel_futures=True)
        pool = None  # a worker died (killed, out of memory): start afresh
    if pool is None:
        import multiprocessing

        # spawn, not fork: the kernel has live threads (zmq, the run's loop thread) that a
        # forked child would inherit in an undefined state.
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=max_workers or min(4, os.cpu_count() or 1),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_ignore_sigint,
        )
    return pool


async def run_in_worker(
    pool: Callable[[], concurrent.futures.Executor], cell: CellTask, g: dict[str, Any]
) -> Any:
    """Run ``cell`` over what it reads of ``g`` in a worker of ``pool()`` (a process pool or
    a Dask executor); its last value."""
    payload = _pack_for_worker(cell, g)  # first: a value that cannot be sent starts no pool
    loop = asyncio.get_running_loop()
    data = await loop.run_in_executor(pool(), _run_packed, payload)
    return _unpack_result(data, cell.name)


def _pack_for_worker(cell: CellTask, g: dict[str, Any]) -> bytes:
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
    """Worker-process initializer: interrupting the kernel (SIGINT to its process group)
    cancels the run in the kernel; it must not kill the pool's workers."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_packed(payload: bytes) -> bytes:
    """Worker-process side: rebuild the namespace, run, send back the value or the error."""
    import cloudpickle

    _name, code, filename, g = cloudpickle.loads(payload)
    g.setdefault("__builtins__", builtins)
    g.setdefault("__name__", "__main__")
    try:
        register_source(filename, code)
        body, last, _ = compile_cell(code, filename)
        exec(body, g)
        value = None if last is None else eval(last, g)
        return bytes(cloudpickle.dumps(("ok", value, "")))
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
