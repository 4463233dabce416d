"""The dispatcher: ready queues, worker slots, attempts, retries, settling and cancellation.

Everything that changes a handle's state happens here, under the runner's lock, and each
transition touches only the handle and its direct children: a ready queue per execution lane
(by priority; equal priorities first-ready, first-run) and per-handle counters of unfinished
parents mean nothing ever rescans all handles. Sync tasks on the asyncio lane run inline on the
loop (no asyncio.Task per call), which is what makes 100,000 small tasks cheap; the loop is
yielded every few milliseconds so timers, cancellations and cross-thread submissions still get
through. Because those inline bodies run one at a time, they share a single slot of
``max_workers`` per batch instead of taking one each: the bound on how many bodies run at once
holds, and the default ``max_workers=8`` does not chop a pass of small tasks into batches of 8.

With a file checkpointer, a completed attempt is not settled at once: it waits in ``commits``
until the end of the dispatcher's pass, when :meth:`Dispatcher.commit` appends the whole group
to the journal with one write and only then settles it (status, waiters, children, the run's
end). So no dependent starts, and nobody sees the completion, before its record is with the
operating system, while a pass of many small tasks still costs one write.

The dispatcher is built from the pieces it uses (the lock, the event bus, the pools, the
handle registry, the ``on_task_error`` policy and, with a checkpoint, the :class:`PersistHooks`
that :mod:`._persist` implements) and never names the runner, so it can be read, tested and
changed without it. It alone changes ``unfinished`` (admission, restoring, settling). Handles
call back only through its public methods (:class:`~._handle.HandleControl`). ``settle`` is a
loop over small steps: the transition, the waiters, the event, the record, the failure's log
line, the children, and at the end the abort policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import BrokenExecutor, Executor
from concurrent.futures import Future as PoolFuture
from typing import Any, Protocol

from . import _graph
from ._cache import CacheStore, cache_key
from ._context import TaskContext, _current_task
from ._events import EventBus
from ._gc import LARGE, GcHold
from ._handle import TaskHandle, TaskStatus, dependency_outcome
from ._handle_args import call_args
from ._pools import Pools, call_in_process, call_in_thread, call_plain
from .exceptions import (
    DependencyFailedError,
    RetryExhaustedError,
    TaskCancelledError,
    TaskTimeoutError,
)

__all__ = ["ActiveRun", "Dispatcher", "PersistHooks"]

logger = logging.getLogger("pyworkflowy_nb")

_PENDING = TaskStatus.PENDING
_READY = TaskStatus.READY
_RUNNING = TaskStatus.RUNNING
_RETRYING = TaskStatus.RETRYING
_COMPLETED = TaskStatus.COMPLETED
_FAILED = TaskStatus.FAILED
_SKIPPED = TaskStatus.SKIPPED
_CANCELLED = TaskStatus.CANCELLED
_TERMINAL = (_COMPLETED, _FAILED, _SKIPPED, _CANCELLED)  # tuple: identity checks, no hashing
_LANES = ("asyncio", "thread", "process", "dask")
# Ready queues: the lanes, plus "inline" for the sync tasks that run on the loop itself.
_QUEUES = ("inline", "asyncio", "thread", "process", "dask")
_REMOTE = ("process", "dask")  # lanes whose running attempts cannot be interrupted
_BATCH = 256
_YIELD_EVERY = 0.005  # seconds of inline work before the loop gets a turn


def lane_of(handle: TaskHandle[Any]) -> str:
    """Where an attempt physically runs. A sync task with a timeout cannot be interrupted on
    the loop, so on the asyncio backend it runs in the thread pool instead."""
    lane = handle._backend
    if lane == "asyncio" and not handle.task.is_async and handle.task.timeout is not None:
        return "thread"
    return lane


def _hold_nothing(lane: str) -> None:
    """release() for a handle that holds no slot (an inline body)."""


def queue_of(handle: TaskHandle[Any]) -> str:
    """The ready queue of ``handle``: its lane, or "inline" for a sync body run on the loop."""
    lane = lane_of(handle)
    if lane == "asyncio" and not handle.task.is_async:
        return "inline"
    return lane


class ReadyQueue:
    """The ready handles of one lane, best first.

    Default-priority handles go to a FIFO, the rest to a heap keyed by (-priority, seq): the
    common case then costs no tuple per task (fewer objects for the cyclic GC to walk).
    """

    __slots__ = ("fifo", "heap")

    def __init__(self) -> None:
        self.fifo: deque[TaskHandle[Any]] = deque()
        self.heap: list[tuple[int, int, TaskHandle[Any]]] = []

    def push(self, h: TaskHandle[Any]) -> None:
        priority = h.task.priority
        if priority == 0:
            self.fifo.append(h)
        else:
            heapq.heappush(self.heap, (-priority, h._seq, h))

    def __bool__(self) -> bool:
        return bool(self.fifo) or bool(self.heap)

    def _heap_first(self) -> bool:
        heap = self.heap
        return bool(heap) and (heap[0][0] < 0 or not self.fifo)

    def head_key(self) -> tuple[int, int]:
        """(-priority, seq) of the handle pop() would return; the queue must not be empty."""
        if self._heap_first():
            top = self.heap[0]
            return top[0], top[1]
        return 0, self.fifo[0]._seq

    def peek(self) -> TaskHandle[Any]:
        """The handle pop() would return; the queue must not be empty."""
        return self.heap[0][2] if self._heap_first() else self.fifo[0]

    def pop(self) -> TaskHandle[Any]:
        if self._heap_first():
            return heapq.heappop(self.heap)[2]
        return self.fifo.popleft()


class PersistHooks(Protocol):
    """What the dispatcher asks of a checkpoint (see :mod:`pyworkflowy_nb._persist`)."""

    durable: bool  # completions must be committed before they become visible

    def prime(self, h: TaskHandle[Any]) -> bool: ...

    def commit(self, completed: list[TaskHandle[Any]]) -> None: ...

    def ended(self, h: TaskHandle[Any]) -> None: ...


class ActiveRun:
    """One drive of the dispatcher (``arun``, ``serve``...): the loop it drives, how to wake it,
    and whether it idles (``serving``) instead of ending when nothing is left."""

    __slots__ = ("abort_error", "future", "loop", "serving", "thread_id", "wake_scheduled",
                 "wakeup")

    def __init__(self, *, serving: bool = False) -> None:
        self.serving = serving
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread_id = 0
        self.wakeup: asyncio.Event | None = None
        self.wake_scheduled = False
        self.abort_error: BaseException | None = None
        self.future: PoolFuture[Any] | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread_id = threading.get_ident()
        self.wakeup = asyncio.Event()

    def on_loop_thread(self) -> bool:
        return self.thread_id == threading.get_ident()

    def _wake_from_afar(self) -> None:
        self.wake_scheduled = False
        assert self.wakeup is not None
        self.wakeup.set()


class Dispatcher:
    """Runs admitted handles to a terminal state; built from the pieces it needs.

    ``lock`` guards every handle's state (the runner's submissions take it too); ``bus`` gets
    the events; ``pools`` run the thread/process/dask lanes; ``handles`` is the registry an
    abort walks; ``persistence`` (None without a checkpoint) is called on admission, commit and
    end; ``on_task_error`` is the policy applied when a task fails; ``owner`` is what task
    bodies see as ``current_task().runner`` (opaque here: the dispatcher never calls it);
    ``now`` is the clock's ``time`` (epoch seconds), the source of every timestamp.
    """

    def __init__(self, *, lock: threading.RLock, bus: EventBus, pools: Pools,
                 handles: Mapping[str, TaskHandle[Any]], max_workers: int | None,
                 on_task_error: str, persistence: PersistHooks | None = None,
                 owner: Any = None, now: Callable[[], float] = time.time,
                 cache: CacheStore | None = None) -> None:
        self.lock = lock
        self.bus = bus
        self.pools = pools
        self.handles = handles
        self.owner = owner
        self.on_task_error = on_task_error
        self.persistence = persistence
        self.max_workers = max_workers
        self.queues: dict[str, ReadyQueue] = {n: ReadyQueue() for n in _QUEUES}
        self.inflight = dict.fromkeys(_LANES, 0)
        self.caps = {n: self.pools.capacity(n) for n in _LANES}
        # Where caps allow more in flight than run at once (Dask), attempts with a timeout
        # still wait for a free worker thread (Pools.size).
        self.sizes = {n: self.pools.size(n) for n in _LANES if n in _REMOTE}
        # Lanes whose attempts count against max_workers (a Dask cluster under the default
        # bounds itself, see Pools.bounded).
        self.counted = {n: self.pools.bounded(n) for n in _LANES}
        self.total_inflight = 0
        self.inline_slot = False  # the current batch's inline bodies hold one slot (take())
        self.unfinished = 0  # admitted handles not yet terminal; changed only in this class
        self.gc_hold = GcHold()  # taken while unfinished >= LARGE, given back as a run ends
        self.run: ActiveRun | None = None
        self.rng = random.Random()
        self.now = now  # every timestamp; the loop's timers keep the loop's own time
        # Pool attempts whose outcome the loop has not seen yet: while any is out, a MockClock
        # may not jump past their timeouts (see busy()).
        self.awaiting: set[PoolFuture[Any]] = set()
        self.durable = persistence is not None and persistence.durable
        # Completed attempts waiting for their group's journal write: (handle, attempt, value).
        self.commits: list[tuple[TaskHandle[Any], int, Any]] = []
        # Bodies that waited for other tasks and want their slot back, first come first
        # served, ahead of the ready queues: (handle, what to call once the slot is theirs).
        self.rejoiners: deque[tuple[TaskHandle[Any], Callable[[], None]]] = deque()
        # The result cache (None: cache=True is ignored), the handle running each cache key
        # now, and identical calls waiting for it: they complete from its value, run once.
        self.cache = cache
        self.cache_owners: dict[str, TaskHandle[Any]] = {}
        self.cache_waiting: dict[str, list[TaskHandle[Any]]] = {}

    # -- admission -------------------------------------------------------------------------------
    def admit(self, h: TaskHandle[Any]) -> None:
        """Take a new handle (lock held): restore it, settle it on a failed parent, queue it,
        or leave it waiting for its parents."""
        bus = self.bus
        if bus.active:
            bus.emit("submitted", h)
        persistence = self.persistence
        if persistence is not None and persistence.prime(h):
            if bus.active:
                bus.emit("restored", h, h.attempts)
            return
        if h.task.cache and self.cache is not None and not h.parents \
                and self._hit_on_admission(h):
            return
        self.unfinished += 1
        if self.unfinished == LARGE:
            self.gc_hold.take()  # a large graph: defer full collections until it has run
        failed = _graph.wire(h)
        if failed is not None and h.task.on_dep_failure != "run-anyway":
            self.settle_on_failed_parent(h, failed)
        elif h._waiting == 0:
            self.push_ready(h)

    def settle_on_failed_parent(self, h: TaskHandle[Any], parent: TaskHandle[Any]) -> None:
        status, error = dependency_outcome(h, parent)
        self.settle(h, status, None, error)

    # -- what handles ask ------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.run is not None

    def add_waiter(self, h: TaskHandle[Any], callback: Callable[[], None]) -> None:
        """Call ``callback`` once ``h`` is terminal (now, if it already is)."""
        with self.lock:
            if h.status not in _TERMINAL:
                if h._waiters is None:
                    h._waiters = []
                h._waiters.append(callback)
                return
        callback()

    def check_can_wait(self, h: TaskHandle[Any], timeout: float | None, method: str) -> None:
        """Raise if a blocking wait on ``h`` could never end (or would block the run)."""
        run = self.run
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

    # -- tasks that wait for tasks ----------------------------------------------------------------
    def secede(self) -> TaskHandle[Any] | None:
        """Called before a wait on a handle: if the caller is a running body of this
        dispatcher, give its worker slot back (the first of its concurrent waits does) and
        return its handle, the token for :meth:`rejoin`; else None (nothing to give back)."""
        ctx = _current_task.get()
        if ctx is None:
            return None
        with self.lock:
            h = self.handles.get(ctx.key)
            if h is None or h._ctx is not ctx or h.status is not _RUNNING \
                    or queue_of(h) == "inline":  # an inline body holds no slot of its own
                return None
            ctx._seceded += 1
            if ctx._seceded == 1:
                lane = lane_of(h)
                self.release(lane)
                if lane == "thread":
                    self.pools.lend_thread(1)  # the body keeps its thread: add one
                self.wake()
        return h

    def rejoin(self, h: TaskHandle[Any], wake: Callable[[], None]) -> bool:
        """After the wait: take the slot back. True if it was free (or another wait of the
        same body is still going); else False, and ``wake()`` is called once it is granted."""
        with self.lock:
            ctx = h._ctx
            assert ctx is not None
            if ctx._seceded > 1:
                ctx._seceded -= 1
                return True
            if self._has_slot(lane_of(h)):
                self._reacquire(h)
                return True
            self.rejoiners.append((h, wake))
            return False

    def _has_slot(self, lane: str) -> bool:
        limit = self.max_workers
        return ((not limit or not self.counted[lane] or self.total_inflight < limit)
                and (lane == "asyncio" or self.inflight[lane] < self.caps[lane]))

    def _reacquire(self, h: TaskHandle[Any]) -> None:
        assert h._ctx is not None
        h._ctx._seceded -= 1
        lane = lane_of(h)
        self.inflight[lane] += 1
        if self.counted[lane]:
            self.total_inflight += 1
        if lane == "thread":
            self.pools.lend_thread(-1)

    def _grant_rejoins(self, force: bool = False) -> None:
        """Hand freed slots to waiting rejoiners before new tasks (``force``: all of them,
        over capacity, because the run is ending and they must be let go)."""
        rejoiners = self.rejoiners
        while rejoiners:
            h, wake = rejoiners[0]
            ctx = h._ctx
            assert ctx is not None
            if ctx._seceded > 1:  # it seceded again meanwhile: the slot stays given back
                ctx._seceded -= 1
            elif force or self._has_slot(lane_of(h)):
                self._reacquire(h)
            else:
                break
            rejoiners.popleft()
            wake()

    # -- queueing --------------------------------------------------------------------------------
    def push_ready(self, h: TaskHandle[Any]) -> None:
        if h.status is _PENDING:
            h.status = _READY  # a retry stays RETRYING while it waits for its slot
        self.queues[queue_of(h)].push(h)
        self.wake()

    def wake(self) -> None:
        run = self.run
        if run is None or run.loop is None:
            return
        if run.on_loop_thread():
            assert run.wakeup is not None
            run.wakeup.set()
        elif not run.wake_scheduled:
            run.wake_scheduled = True
            try:
                run.loop.call_soon_threadsafe(run._wake_from_afar)
            except RuntimeError:  # the loop closed in between: that run is over
                run.wake_scheduled = False

    def take(self) -> list[TaskHandle[Any]]:
        """Pop up to a batch of startable handles, best priority first, within capacity.

        Inline sync bodies run one at a time on the loop, so together they need one slot of
        ``max_workers``, not one each: the first inline handle of a batch reserves a slot
        (given back by :meth:`end_batch`), the others ride on it and stay READY until
        :meth:`launch` starts each. With the default ``max_workers=8`` a batch of small sync
        tasks is then as long as without a limit, and no more bodies run at once than allowed.
        """
        out: list[TaskHandle[Any]] = []
        queues, inflight, caps = self.queues, self.inflight, self.caps
        limit = self.max_workers
        if self.rejoiners:
            self._grant_rejoins()
        inline = queues["inline"]
        if not inline.heap and not any(queues[lane] for lane in _LANES):
            # Only default-priority inline work (the bulk of a big graph of small tasks, and
            # every step of a chain): pop it without weighing the lanes against each other.
            fifo = inline.fifo
            if not fifo or (limit is not None and self.total_inflight >= limit
                            and not self.inline_slot):
                return out
            while fifo and len(out) < _BATCH:
                h = fifo.popleft()
                if (h.status is _READY or h.status is _RETRYING) and not h._waiting:
                    out.append(h)
            if out and not self.inline_slot:
                self.inline_slot = True
                self.total_inflight += 1
            return out
        counted = self.counted
        while len(out) < _BATCH:
            full = limit is not None and self.total_inflight >= limit
            best: ReadyQueue | None = None
            best_key = (0, 0)
            best_lane = ""
            for lane in _QUEUES:
                queue = queues[lane]
                if not queue:
                    continue
                if lane == "inline":
                    if full and not self.inline_slot:
                        continue
                elif (full and counted[lane]) or (
                        lane != "asyncio" and inflight[lane] >= caps[lane]):
                    continue  # no slot under max_workers, or the lane is at its capacity
                elif lane == "dask" and inflight[lane] >= self.sizes[lane] \
                        and queue.peek().task.timeout is not None:
                    continue  # its clock must not tick while it queues inside Dask
                key = queue.head_key()
                if best is None or key < best_key:
                    best, best_key, best_lane = queue, key, lane
            if best is None:
                break
            h = best.pop()
            if (h.status is not _READY and h.status is not _RETRYING) or h._waiting:
                continue  # cancelled while queued, or given a new dependency since
            if best_lane == "inline":
                if not self.inline_slot:
                    self.inline_slot = True
                    self.total_inflight += 1
            else:
                h.status = _RUNNING
                inflight[best_lane] += 1
                if counted[best_lane]:
                    self.total_inflight += 1
            out.append(h)
        return out

    def end_batch(self) -> None:
        """Give back the slot the batch's inline bodies shared (lock held)."""
        if self.inline_slot:
            self.inline_slot = False
            self.total_inflight -= 1

    def release(self, lane: str) -> None:
        self.inflight[lane] -= 1
        if self.counted[lane]:
            self.total_inflight -= 1

    def busy(self) -> bool:
        """True while a real worker runs an attempt for this run (read by virtual loops)."""
        return bool(self.awaiting)

    # -- driving -------------------------------------------------------------------------------
    async def drive(self, run: ActiveRun) -> None:
        assert run.wakeup is not None
        wakeup = run.wakeup
        lock = self.lock
        next_yield = time.perf_counter() + _YIELD_EVERY
        while True:
            if self.commits:
                self.commit()
            with lock:
                batch = self.take()
                if not batch:
                    if self.commits:  # completions that arrived since: commit them first
                        continue
                    if self.unfinished <= 0 and not run.serving:
                        # Ending the run under the lock that submit() takes: a submission
                        # either lands before this (and runs now) or sees no run (and waits
                        # for the next one); none can slip in between.
                        if self.run is run:
                            self.run = None
                        self.gc_hold.give()
                        return
                    wakeup.clear()
            if batch:
                try:
                    for h in batch:
                        self.launch(h, run)
                finally:
                    with lock:
                        self.end_batch()
                if time.perf_counter() >= next_yield:
                    await asyncio.sleep(0)
                    next_yield = time.perf_counter() + _YIELD_EVERY
                continue
            await wakeup.wait()

    def launch(self, h: TaskHandle[Any], run: ActiveRun) -> None:
        task = h.task
        lane = lane_of(h)
        inline = lane == "asyncio" and not task.is_async
        if inline:
            with self.lock:
                status = h.status
                if (status is not _READY and status is not _RETRYING) or h._waiting:
                    return  # cancelled, or given a new dependency, since take() popped it
                h.status = _RUNNING
        ctx = h._ctx
        if ctx is None:
            ctx = h._ctx = TaskContext(h.name, h.key, 0, self.owner)
        elif ctx._cancelled or h.status is not _RUNNING:
            # Cancelled between leaving the queue and starting: give the slot back unused.
            with self.lock:
                if not inline:
                    self.release(lane)
                if h.status is _RUNNING:
                    self.settle(h, _CANCELLED, None, TaskCancelledError(
                        f"task {h.key!r} was cancelled before it started", task=h.key))
            return
        if task.cache and h._cache_key is None and self.cache is not None \
                and self._from_cache(h):
            return
        h.attempts += 1
        attempt = ctx.attempt = h.attempts
        now = self.now()
        if h.started_at is None:
            h.started_at = now
        if self.bus.active:
            self.bus.emit("started", h, attempt, None, now)
        if lane == "asyncio":
            if task.is_async:
                assert run.loop is not None
                h._inflight = run.loop.create_task(self._run_coroutine(h, ctx, attempt))
                return
            # Inline: no slot of its own to release (the batch's shared one, see take()).
            args, kwargs = (h.args, h.kwargs) if h._refs is None else call_args(h)
            token = _current_task.set(ctx)
            try:
                value = task.fn(*args, **kwargs)
            except Exception as exc:
                _current_task.reset(token)
                self.attempt_done(h, attempt, None, exc, None)
                return
            except BaseException as exc:  # KeyboardInterrupt, SystemExit: fail it, then stop
                _current_task.reset(token)
                self.attempt_done(h, attempt, None, exc, None)
                raise
            _current_task.reset(token)
            self.attempt_done(h, attempt, value, None, None)
            return
        self._launch_in_pool(h, ctx, attempt, lane, run)

    def _launch_in_pool(self, h: TaskHandle[Any], ctx: TaskContext, attempt: int, lane: str,
                        run: ActiveRun) -> None:
        loop = run.loop
        assert loop is not None
        # Armed before the attempt reaches a worker: once the body runs, its deadline is set
        # (a test moving a MockClock by hand relies on that). The timer runs on this loop, so
        # it always finds h._inflight set below.
        timer = None
        if h.task.timeout is not None:
            timer = loop.call_later(h.task.timeout, self._pool_timeout, h, attempt)
        try:
            pool = self.pools.get(lane)
            try:
                cf = self._submit_to(pool, lane, h, ctx)
            except BrokenExecutor:
                # A worker died (os._exit, an OOM kill) and took the pool with it; the attempt
                # that was running there has failed, but later ones get a fresh pool.
                self.pools.discard(lane, pool)
                cf = self._submit_to(self.pools.get(lane), lane, h, ctx)
        except Exception as exc:  # a broken or shut-down pool fails the attempt, not the run
            if timer is not None:
                timer.cancel()
            self.attempt_done(h, attempt, None, exc, lane)
            return
        h._inflight = cf
        self.awaiting.add(cf)

        def done(f: PoolFuture[Any]) -> None:  # runs on a worker or pool-manager thread
            with self.lock:
                self.release(lane)
            # RuntimeError: the run's loop is gone; this attempt was abandoned and settled.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._pool_finished, h, attempt, f, timer)

        cf.add_done_callback(done)

    @staticmethod
    def _submit_to(pool: Executor, lane: str, h: TaskHandle[Any],
                   ctx: TaskContext) -> PoolFuture[Any]:
        args, kwargs = call_args(h)
        if lane == "thread":
            return pool.submit(call_in_thread, ctx, h.task.fn, args, kwargs)
        if lane == "process":
            return pool.submit(call_in_process, h.task, args, kwargs)
        # A supplied executor (Dask) serialises the function itself, by value if need be.
        return pool.submit(call_plain, h.task.fn, args, kwargs)

    def _pool_finished(self, h: TaskHandle[Any], attempt: int, f: PoolFuture[Any],
                       timer: asyncio.TimerHandle | None) -> None:
        self.awaiting.discard(f)
        if timer is not None:
            timer.cancel()
        if f.cancelled():
            self.attempt_done(h, attempt, None, TaskCancelledError(
                f"task {h.key!r} was cancelled before its worker started", task=h.key), None)
        else:
            exc = f.exception()
            self.attempt_done(h, attempt, None if exc else f.result(), exc, None)
        self.wake()

    def _pool_timeout(self, h: TaskHandle[Any], attempt: int) -> None:
        cf = h._inflight
        assert isinstance(cf, PoolFuture)
        self.awaiting.discard(cf)  # abandoned: its outcome no longer matters to the clock
        with self.lock:
            if h.attempts != attempt or h.status is not _RUNNING:
                return
            if h._ctx is not None:
                h._ctx.request_cancel()  # a cooperative body can notice and stop early
            self._withdraw(h, cf)
            self.settle(h, _FAILED, None, self._timeout_error(h, attempt))

    @staticmethod
    def _withdraw(h: TaskHandle[Any], cf: PoolFuture[Any]) -> None:
        """Cancel a pool attempt if it has not started. A Dask executor's futures never say
        they are running, so cancelling one always "succeeds" and would free the slot while
        the body still runs remotely: there, the attempt is left to finish and holds its slot."""
        if lane_of(h) != "dask":
            cf.cancel()

    @staticmethod
    def _timeout_error(h: TaskHandle[Any], attempt: int) -> TaskTimeoutError:
        timeout = h.task.timeout or 0.0
        return TaskTimeoutError(
            f"task {h.key!r} attempt {attempt} exceeded its timeout of {timeout:g} s "
            "(timeouts are not retried; raise timeout= if the work needs longer)",
            task=h.key, timeout=timeout, attempts=attempt, elapsed=timeout)

    async def _run_coroutine(self, h: TaskHandle[Any], ctx: TaskContext, attempt: int) -> None:
        _current_task.set(ctx)  # this asyncio.Task runs in its own copy of the context
        timeout = h.task.timeout
        scope = None
        args, kwargs = call_args(h)
        try:
            if timeout is None:
                value = await h.task.fn(*args, **kwargs)
            else:
                async with asyncio.timeout(timeout) as scope:
                    value = await h.task.fn(*args, **kwargs)
        except asyncio.CancelledError:
            with self.lock:
                self.release("asyncio")
                if h.status is _RUNNING and h.attempts == attempt:
                    self.settle(h, _CANCELLED, None, TaskCancelledError(
                        f"task {h.key!r} was cancelled while running", task=h.key))
            self.wake()
            return
        except TimeoutError as exc:
            error: BaseException = exc
            if scope is not None and scope.expired():
                error = self._timeout_error(h, attempt)
            self.attempt_done(h, attempt, None, error, "asyncio")
        except Exception as exc:
            self.attempt_done(h, attempt, None, exc, "asyncio")
        except BaseException as exc:
            self.attempt_done(h, attempt, None, exc, "asyncio")
            raise
        else:
            self.attempt_done(h, attempt, value, None, "asyncio")
        self.wake()

    # -- the result cache ---------------------------------------------------------------------
    def _from_cache(self, h: TaskHandle[Any]) -> bool:
        """Before the first attempt of a ``cache=True`` task: complete it from the store, or
        park it behind an identical call already running, and return True; or make it its
        key's owner (its value is stored when it completes) and return False."""
        store = self.cache
        assert store is not None
        task = h.task
        lane = lane_of(h)
        # An inline body holds no slot of its own (see take()): nothing to give back then.
        give_back = self.release if queue_of(h) != "inline" else _hold_nothing
        args, kwargs = call_args(h)
        try:
            key = cache_key(task.name, task.cache_prefix(), task.fn, args, kwargs,
                            task.cache_key_fn)
        except Exception as exc:  # a failing cache_key_fn fails the task, visibly
            with self.lock:
                give_back(lane)
                self.settle(h, _FAILED, None, exc)
            return True
        try:
            value = store.get(key)
        except Exception:  # a broken store must not fail the task: it runs uncached
            logger.warning("result cache lookup for %s failed; running it", h.key,
                           exc_info=True)
            value = store.MISS
        with self.lock:
            if h.status is not _RUNNING:
                give_back(lane)  # cancelled meanwhile
                return True
            if value is not store.MISS:
                give_back(lane)
                self._complete_cached(h, value)
                return True
            owner = self.cache_owners.get(key)
            if owner is not None:
                give_back(lane)
                h.status = _READY  # not queued: released when its owner ends
                self.cache_waiting.setdefault(key, []).append(h)
                return True
            self.cache_owners[key] = h
            h._cache_key = key
        return False

    def _hit_on_admission(self, h: TaskHandle[Any]) -> bool:
        """A ``cache=True`` task with nothing to wait for: its arguments are final, so look
        it up now, and on a hit complete it without ever queueing it (cheaper than a no-op
        run). A miss, or a key that cannot be made, is left to :meth:`_from_cache`."""
        store = self.cache
        assert store is not None
        task = h.task
        try:
            key = cache_key(task.name, task.cache_prefix(), task.fn, h.args, h.kwargs,
                            task.cache_key_fn)
            value = store.get(key)
        except Exception:
            return False
        if value is store.MISS:
            return False
        self.unfinished += 1
        self._complete_cached(h, value)
        return True

    def _complete_cached(self, h: TaskHandle[Any], value: Any) -> None:
        h.cached = True
        if self.bus.active:
            self.bus.emit("cached", h, h.attempts)
        if self.durable:
            h.status = _RUNNING
            self.commits.append((h, h.attempts, value))
        else:
            self.settle(h, _COMPLETED, value, None)

    def _cache_store(self, h: TaskHandle[Any], value: Any) -> None:
        store = self.cache
        assert store is not None and h._cache_key is not None
        try:
            store.put(h._cache_key, value, h.task.cache_ttl)
        except Exception:  # an unpicklable value, a full disk: the result still counts
            logger.warning("could not store the result of %s in the cache", h.key,
                           exc_info=True)

    def _cache_owner_ended(self, x: TaskHandle[Any], st: TaskStatus, val: Any,
                           work: list[tuple[TaskHandle[Any], TaskStatus, Any,
                                            BaseException | None]]) -> None:
        """The owner of a cache key ended: identical calls complete from its value, or, if
        it did not complete, go back to their queue and run themselves."""
        key = x._cache_key
        assert key is not None
        if self.cache_owners.get(key) is x:
            del self.cache_owners[key]
        for w in self.cache_waiting.pop(key, ()):
            if w.status is not _READY:
                continue  # cancelled while it waited
            if st is _COMPLETED:
                w.cached = True
                if self.bus.active:
                    self.bus.emit("cached", w, w.attempts)
                work.append((w, _COMPLETED, val, None))
            else:
                self.queues[queue_of(w)].push(w)
                self.wake()

    # -- outcomes -------------------------------------------------------------------------------
    def attempt_done(self, h: TaskHandle[Any], attempt: int, value: Any,
                     exc: BaseException | None, lane: str | None) -> None:
        with self.lock:
            if lane is not None:
                self.release(lane)
            if h.attempts != attempt or h.status is not _RUNNING:
                return  # timed out or cancelled meanwhile: this outcome is stale
            ctx = h._ctx
            cancelled = ctx is not None and ctx._cancelled
            if exc is None:
                if cancelled:
                    self.settle(h, _CANCELLED, None, TaskCancelledError(
                        f"task {h.key!r} stopped after a cancel request", task=h.key,
                        result=value))
                    return
                if h._cache_key is not None:
                    self._cache_store(h, value)
                if self.durable:
                    self.commits.append((h, attempt, value))  # settled by commit()
                else:
                    self.settle(h, _COMPLETED, value, None)
                return
            if cancelled:
                error = TaskCancelledError(
                    f"task {h.key!r} stopped after a cancel request", task=h.key)
                error.__cause__ = exc
                self.settle(h, _CANCELLED, None, error)
                return
            policy = h.task.retry
            run = self.run
            if (run is not None and run.abort_error is None and isinstance(exc, Exception)
                    and policy.should_retry(exc, attempt)):
                h.status = _RETRYING
                if self.bus.active:
                    self.bus.emit("retrying", h, attempt, exc)
                delay = policy.delay(attempt, self.rng)
                if delay <= 0 or run.loop is None:
                    self.push_ready(h)
                else:
                    h._inflight = run.loop.call_later(delay, self._requeue, h)
                return
            if (attempt > 1 and isinstance(exc, policy.retry_on)
                    and not isinstance(exc, TaskTimeoutError)):
                now = self.now()
                started = h.started_at if h.started_at is not None else now
                wrapped = RetryExhaustedError(
                    f"task {h.key!r} failed {attempt} times; last error: {exc!r}",
                    task=h.key, attempts=attempt, elapsed=now - started)
                wrapped.__cause__ = exc
                exc = wrapped
            self.settle(h, _FAILED, None, exc)

    def _requeue(self, h: TaskHandle[Any]) -> None:
        with self.lock:
            if h.status is _RETRYING:
                self.push_ready(h)

    def commit(self) -> None:
        """Journal the waiting completions with one write, then settle them."""
        persistence = self.persistence
        assert persistence is not None
        with self.lock:
            group, self.commits = self.commits, []
            live: list[TaskHandle[Any]] = []
            for h, attempt, value in group:
                if h.attempts != attempt or h.status is not _RUNNING:
                    continue  # timed out, or cancelled and settled, while it waited
                ctx = h._ctx
                if ctx is not None and ctx._cancelled:
                    self.settle(h, _CANCELLED, None, TaskCancelledError(
                        f"task {h.key!r} stopped after a cancel request", task=h.key,
                        result=value))
                    continue
                h._value = value
                live.append(h)
            if not live:
                return
            now = self.now()
            for h in live:
                h.finished_at = now
            persistence.commit(live)
            for h in live:
                self.settle(h, _COMPLETED, h._value, None, now)

    def settle(self, h: TaskHandle[Any], status: TaskStatus, value: Any,
               error: BaseException | None, committed_at: float | None = None) -> None:
        """Make ``h`` terminal and carry the consequences to its children (lock held).

        ``committed_at``: ``h`` completed and its record is already in the journal, written
        at that time. Each step is its own method: the transition, the waiters, the event,
        the record, the failure's log line, the children, and last the abort policy.
        """
        work = [(h, status, value, error)]
        origin_failure: BaseException | None = None
        persistence = self.persistence
        while work:
            x, st, val, err = work.pop()
            if x.status in _TERMINAL:
                continue
            self._transition(x, st, val, err, committed_at if x is h else None)
            if x._waiters is not None:
                self._wake_waiters(x)
            if self.bus.active:
                self.bus.emit(st._value_, x, x.attempts, err, x.finished_at)
            if persistence is not None and not (x is h and committed_at is not None):
                persistence.ended(x)
            if st is _FAILED and not isinstance(err, DependencyFailedError):
                origin_failure = origin_failure or err
                self._log_failure(x, err)
            if x._children:
                self._release_children(x, st, work)
            if x._cache_key is not None:
                self._cache_owner_ended(x, st, val, work)
        if self.unfinished <= 0:
            # The last handle can end off the normal path (a timeout or cancel while its
            # worker still runs); without this the loop would sleep until that worker returns.
            self.wake()
        if origin_failure is not None:
            self._apply_abort_policy(h, origin_failure)

    def _transition(self, x: TaskHandle[Any], st: TaskStatus, val: Any,
                    err: BaseException | None, stamp: float | None) -> None:
        x.status = st
        x._value = val
        x._exception = err
        x.finished_at = stamp if stamp is not None else self.now()
        x._inflight = None
        # A terminal handle needs its context only for the progress it reported (handle.progress
        # reads it; every other path checks the status first); a million finished handles
        # would otherwise keep a million contexts alive.
        ctx = x._ctx
        if ctx is not None and ctx._progress is None:
            x._ctx = None
        self.unfinished -= 1

    @staticmethod
    def _wake_waiters(x: TaskHandle[Any]) -> None:
        waiters, x._waiters = x._waiters, None
        for wake in waiters or ():
            wake()

    def _log_failure(self, x: TaskHandle[Any], err: BaseException | None) -> None:
        if self.on_task_error == "log":
            logger.error("task %s failed: %r", x.key, err, exc_info=err)

    def _release_children(self, x: TaskHandle[Any], st: TaskStatus,
                          work: list[tuple[TaskHandle[Any], TaskStatus, Any,
                                           BaseException | None]]) -> None:
        """One parent fewer for each child; a child whose parent failed ends by its policy."""
        ok = st is _COMPLETED
        for c in x._children or ():
            if c.status is not _PENDING:
                continue
            if ok or c.task.on_dep_failure == "run-anyway":
                c._waiting -= 1
                if c._waiting == 0:
                    self.push_ready(c)
            else:
                status, error = dependency_outcome(c, x)
                work.append((c, status, None, error))

    def _apply_abort_policy(self, h: TaskHandle[Any], failure: BaseException) -> None:
        """on_task_error='raise': the first failure ends the run (a serve too), the rest is
        cancelled."""
        run = self.run
        if self.on_task_error == "raise" and run is not None and run.abort_error is None:
            run.abort_error = failure
            run.serving = False
            self.abort(f"the run stopped because {h.key!r} failed (on_task_error='raise')")

    # -- cancellation ----------------------------------------------------------------------------
    def cancel(self, h: TaskHandle[Any], reason: str | None = None) -> bool:
        """Cancel ``h``; with a ``reason`` (an abort) settle it at once whatever it is doing."""
        with self.lock:
            status = h.status
            if status in _TERMINAL:
                return False
            if reason is None and h._ctx is not None and h._ctx._cancelled:
                return False  # already asked to stop (a cooperative body is winding down)
            if h._ctx is None:  # not launched yet: the flag must still reach the body later
                h._ctx = TaskContext(h.name, h.key, h.attempts, self.owner)
            h._ctx.request_cancel()
            message = reason or f"task {h.key!r} was cancelled"
            inflight = h._inflight
            if status is not _RUNNING or reason is not None or lane_of(h) in _REMOTE:
                # Waiting (dependencies, a slot, a retry timer), aborting, or in a process that
                # cannot be interrupted: stop waiting for it now.
                self.settle(h, _CANCELLED, None, TaskCancelledError(message, task=h.key))
                if isinstance(inflight, PoolFuture):
                    self._withdraw(h, inflight)  # only if the worker has not picked it up
            if isinstance(inflight, asyncio.Task):
                run = self.run
                if run is not None and run.loop is not None and not run.on_loop_thread():
                    run.loop.call_soon_threadsafe(inflight.cancel)
                else:
                    inflight.cancel()
            # Thread-lane and inline sync bodies are cooperative: they end when they return.
            return True

    def abort(self, reason: str) -> None:
        """Cancel every unfinished handle, settling them now (lock held)."""
        if self.commits:
            self.commit()  # those did complete: they end completed, not cancelled
        self._grant_rejoins(force=True)
        for h in list(self.handles.values()):
            if h.status not in _TERMINAL:
                self.cancel(h, reason)
