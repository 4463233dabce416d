"""Executor pools for the thread and process backends, created on first use.

Attempts are handed to the pools with ``loop.run_in_executor`` and awaited through asyncio
futures, so no thread is ever spent waiting on another thread.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

from ._context import TaskContext, _current_task

__all__ = ["Pools", "call_in_process", "call_in_thread", "call_plain"]


def _cpus() -> int:
    return os.cpu_count() or 1


class Pools:
    """Owns the runner's executors; sizes follow ``max_workers`` when it is given.

    Executors the user passes in (``TaskRunner(executors=...)``, e.g. a Dask client's) take
    precedence for their lane and are never shut down here: their owner does that.
    """

    def __init__(self, max_workers: int | None, mp_context: str | None = None,
                 supplied: Mapping[str, Executor] | None = None, *,
                 bound_clusters: bool = True) -> None:
        self._max_workers = max_workers
        # False when max_workers is only the default: a Dask cluster is then sized by its own
        # threads (it never runs more at once), and only a value the user chose bounds it.
        self._bound_clusters = bound_clusters
        self._mp_context = mp_context
        self._supplied = dict(supplied or {})
        self._thread: ThreadPoolExecutor | None = None
        self._process: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def capacity(self, backend: str) -> int:
        """How many attempts of ``backend`` may be in flight before the rest wait in line.

        A Dask cluster gets several per worker thread: with exactly one, each thread idles for
        a whole round trip (its result back to us, the gather, the next attempt out through
        the scheduler) between two tasks; with more already waiting at the scheduler the next
        starts at once. Attempts with a timeout are held to :meth:`size` instead (see there).
        """
        supplied = self._supplied.get(backend)
        if supplied is not None:
            size = _size_of(supplied)
            if _is_dask(supplied):
                size *= _DASK_DEPTH
            return self._bounded_by_max_workers(backend, size)
        if backend == "thread":
            return self._max_workers or min(32, _cpus() + 4)
        if backend == "process":
            return self._max_workers or _cpus()
        return self._max_workers or 0  # 0: the asyncio backend is bounded only by max_workers

    def size(self, backend: str) -> int:
        """How many attempts of ``backend`` run at once: an attempt with a timeout goes out only
        while fewer than this are in flight, so its clock never ticks in a queue inside the
        executor (where a cancel could no longer be exact either)."""
        supplied = self._supplied.get(backend)
        if supplied is not None:
            return self._bounded_by_max_workers(backend, _size_of(supplied))
        return self.capacity(backend)

    def bounded(self, backend: str) -> bool:
        """Whether ``max_workers`` bounds ``backend``: always, except a Dask cluster when
        max_workers is only the default."""
        supplied = self._supplied.get(backend)
        return self._bound_clusters or supplied is None or not _is_dask(supplied)

    def _bounded_by_max_workers(self, backend: str, size: int) -> int:
        if self._max_workers and self.bounded(backend):
            return min(self._max_workers, size)
        return size

    def get(self, backend: str) -> Executor:
        supplied = self._supplied.get(backend)
        if supplied is not None:
            return supplied
        with self._lock:
            if backend == "thread":
                if self._thread is None:
                    self._thread = ThreadPoolExecutor(
                        self.capacity("thread"), thread_name_prefix="wfy-worker")
                return self._thread
            if self._process is None:
                context = (multiprocessing.get_context(self._mp_context)
                           if self._mp_context else None)
                self._process = ProcessPoolExecutor(self.capacity("process"), mp_context=context)
            return self._process

    def lend_thread(self, delta: int) -> None:
        """Grow (or shrink back) the thread pool by ``delta`` threads: a thread-lane body that
        waits for its children gives its slot back but still sits on its thread, so the child
        needs a thread of its own. ``ThreadPoolExecutor`` reads ``_max_workers`` on each
        submit, so raising it lets the next submit start a thread; lowering it stops no
        thread (idle ones are reused). Supplied executors are the user's: left alone."""
        with self._lock:
            pool = self._thread
            if pool is not None and "thread" not in self._supplied:
                pool._max_workers += delta

    def discard(self, backend: str, pool: Executor) -> None:
        """Forget ``pool`` if it is still the current one (it broke); the next get() makes
        a new one."""
        with self._lock:
            if backend == "thread" and self._thread is pool:
                self._thread = None
            elif backend == "process" and self._process is pool:
                self._process = None
            else:
                return
        pool.shutdown(wait=False, cancel_futures=True)

    def shutdown(self, wait: bool = True) -> None:
        with self._lock:
            thread, process = self._thread, self._process
            self._thread = self._process = None
        if thread is not None:
            thread.shutdown(wait=wait, cancel_futures=True)
        if process is not None:
            process.shutdown(wait=wait, cancel_futures=True)


# Attempts in flight per Dask worker thread (see Pools.capacity).
_DASK_DEPTH = 4


def _is_dask(executor: Executor) -> bool:
    """A dask.distributed ClientExecutor, recognised without importing Dask."""
    return getattr(executor, "_client", None) is not None and \
        type(executor).__module__.startswith("distributed")


def _size_of(executor: Executor) -> int:
    """How many attempts a supplied executor runs at once, read without importing its library.

    Sending more than that would only queue them inside the executor, where their timeouts
    would already be ticking and a cancel could no longer be exact.
    """
    size = getattr(executor, "_max_workers", None)  # concurrent.futures pools
    if isinstance(size, int) and size > 0:
        return size
    client = getattr(executor, "_client", None)  # a dask.distributed ClientExecutor
    nthreads = getattr(client, "nthreads", None)
    if callable(nthreads):
        with contextlib.suppress(Exception):
            total = sum(int(n) for n in nthreads().values())
            if total > 0:
                return total
    return 1 << 30  # unknown: let the executor queue


def call_in_thread(ctx: TaskContext, fn: Callable[..., Any], args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> Any:
    """Run in a worker thread with ``current_task()`` bound, then unbind it."""
    token = _current_task.set(ctx)
    try:
        return fn(*args, **kwargs)
    finally:
        _current_task.reset(token)


def call_plain(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Entry point on a supplied executor (a Dask worker): the function travels by value."""
    return fn(*args, **kwargs)


def call_in_process(task: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Entry point in a worker process: ``task`` arrives re-imported by name."""
    return task.fn(*args, **kwargs)
