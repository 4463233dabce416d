"""The three backends: the constraints/cancellation table, where bodies run, max_workers."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import engine_helpers
import pytest
from engine_helpers import HANG_GUARD, Gauge, wait_until

from pyworkflowy_nb import TaskBase, TaskContext, TaskRunner, TaskStatus, current_task, task


@task
def double(x: int) -> int:
    return 2 * x


# -- constraints -----------------------------------------------------------------------------

def test_asyncio_backend_runs_sync_and_async_tasks() -> None:
    @task
    async def a_double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    with TaskRunner(backend="asyncio") as runner:
        hs = double.submit(2)
        ha = a_double.submit(3)
        hsum = runner.submit(lambda: hs.result() + ha.result(), depends_on=[hs, ha])
        assert runner.run().ok
    assert (hs.result(), ha.result(), hsum.result()) == (4, 6, 10)


def test_thread_backend_runs_sync_tasks_in_worker_threads() -> None:
    names: list[str] = []

    @task(backend="thread")
    def where(x: int) -> int:
        names.append(threading.current_thread().name)
        return x

    with TaskRunner() as runner:
        hs = [where.submit(i) for i in range(4)]
        runner.run()
    assert [h.result() for h in hs] == [0, 1, 2, 3]
    assert names and all(n.startswith("wfy-worker") for n in names)
    assert threading.current_thread().name not in names


def test_thread_pool_is_created_lazily_and_shut_down_with_the_runner() -> None:
    pools = None
    with TaskRunner() as runner:
        pools = runner._dispatch.pools
        double.submit(1)
        runner.run()
        assert pools._thread is None  # nothing needed a thread yet
        task(backend="thread")(lambda: 1).submit()
        runner.run()
        assert pools._thread is not None
        workers = [t for t in threading.enumerate() if t.name.startswith("wfy-worker")]
        assert workers
    assert pools._thread is None
    for t in workers:
        t.join(HANG_GUARD)
        assert not t.is_alive()


def test_process_backend_runs_in_other_processes() -> None:
    with TaskRunner(backend="process", max_workers=2) as runner:
        pids = [runner.submit(engine_helpers.pid) for _ in range(3)]
        squares = [runner.submit(engine_helpers.square, i) for i in range(5)]
        total = runner.submit(engine_helpers.add, 2, b=3)
        assert runner.run().ok
    assert all(h.result() != os.getpid() for h in pids)
    assert [h.result() for h in squares] == [0, 1, 4, 9, 16]
    assert total.result() == 5


def test_process_backend_with_decorated_and_class_tasks() -> None:
    with TaskRunner() as runner:
        h = engine_helpers.process_square.submit(9)
        c = engine_helpers.ProcessDoubler().submit(21)
        assert runner.run().ok
    assert h.result() == 81
    value, worker_pid = c.result()
    assert value == 42 and worker_pid != os.getpid()


def test_process_failures_and_retries_cross_the_boundary(tmp_path: Path) -> None:
    flaky = task(backend="process", retries=2, backoff="none")(engine_helpers.fail_first)
    with TaskRunner(on_task_error="continue") as runner:
        bad = runner.submit(task(backend="process")(engine_helpers.fail_with_value_error),
                            "from a worker")
        ok = runner.submit(flaky, str(tmp_path), 2)
        runner.run()
    assert isinstance(bad.exception, ValueError)
    assert str(bad.exception) == "from a worker"
    assert ok.result() == 3
    assert ok.attempts == 3


@pytest.mark.parametrize("make", [
    lambda: (lambda x: x),
    lambda: _nested_function(),
], ids=["lambda", "nested-def"])
def test_process_backend_refuses_lambdas_and_nested_functions(make: Any) -> None:
    fn = make()
    with pytest.raises(ValueError, match="top-level def"):
        task(backend="process")(fn)
    runner = TaskRunner(backend="process")
    with pytest.raises(ValueError, match="top-level def"):
        runner.submit(fn, 1)
    assert runner.handles == []


def _nested_function() -> Any:
    def inner(x: int) -> int:
        return x

    return inner


def test_current_task_in_the_asyncio_and_thread_backends() -> None:
    seen: list[TaskContext | None] = []

    @task(name="ctx-thread", backend="thread", retries=1, backoff="none")
    def in_thread(x: int) -> int:
        ctx = current_task()
        seen.append(ctx)
        if ctx is not None and ctx.attempt == 1:
            raise RuntimeError("retry me")
        return x

    @task(name="ctx-async")
    async def in_async() -> None:
        seen.append(current_task())

    @task(name="ctx-inline")
    def inline() -> None:
        seen.append(current_task())

    assert current_task() is None
    with TaskRunner() as runner:
        h = in_thread.submit(5)
        runner.submit(in_async)
        runner.submit(inline)
        runner.run()
    assert current_task() is None
    by_name = {}
    for ctx in seen:
        assert isinstance(ctx, TaskContext)
        by_name.setdefault(ctx.name, []).append(ctx)
    assert set(by_name) == {"ctx-thread", "ctx-async", "ctx-inline"}
    thread_ctx = by_name["ctx-thread"][-1]
    assert thread_ctx.key == h.key and thread_ctx.attempt == 2
    assert not thread_ctx.cancel_event.is_set()
    assert "ctx-thread" in repr(thread_ctx)


def test_current_task_is_none_in_the_process_backend() -> None:
    with TaskRunner() as runner:
        a = engine_helpers.process_context_is_none.submit()
        b = runner.submit(task(backend="process")(engine_helpers.context_is_none))
        runner.run()
    assert a.result() is True and b.result() is True


def test_runner_default_backend_applies_to_plain_callables_only() -> None:
    where: dict[str, str] = {}

    def plain() -> None:
        where["plain"] = threading.current_thread().name

    @task(backend="asyncio")
    def pinned() -> None:
        where["pinned"] = threading.current_thread().name

    @task
    def unpinned() -> None:
        where["unpinned"] = threading.current_thread().name

    with TaskRunner(backend="thread") as runner:
        runner.submit(plain)
        runner.submit(pinned)
        runner.submit(unpinned)
        runner.run()
    assert where["plain"].startswith("wfy-worker")
    assert where["unpinned"].startswith("wfy-worker")  # no backend of its own: the default
    assert not where["pinned"].startswith("wfy-worker")


# -- max_workers bounds concurrency on every backend ---------------------------------------------

def test_max_workers_bounds_async_tasks() -> None:
    gauge = Gauge()
    limit = 3

    @task
    async def body(i: int) -> int:
        with gauge.inside():
            for _ in range(int(HANG_GUARD / 0.001)):
                if gauge.peak >= limit:
                    break
                await asyncio.sleep(0.001)
            for _ in range(5):  # give an over-admitted task every chance to overlap
                await asyncio.sleep(0)
        return i

    with TaskRunner(max_workers=limit) as runner:
        hs = [body.submit(i) for i in range(12)]
        assert runner.run().ok
    assert [h.result() for h in hs] == list(range(12))
    assert gauge.peak == limit


def test_without_max_workers_async_tasks_all_overlap() -> None:
    gauge = Gauge()
    n = 20

    @task
    async def body() -> None:
        with gauge.inside():
            for _ in range(int(HANG_GUARD / 0.001)):
                if gauge.peak >= n:
                    break
                await asyncio.sleep(0.001)

    with TaskRunner(max_workers=None) as runner:  # None: no cap (the default is 8)
        for _ in range(n):
            runner.submit(body)
        runner.run()
    assert gauge.peak == n


def test_max_workers_bounds_thread_tasks() -> None:
    gauge = Gauge()
    limit = 2

    @task(backend="thread")
    def body(i: int) -> int:
        with gauge.inside():
            wait_until(lambda: gauge.peak >= limit, "the pool to fill")
            threading.Event().wait(0.01)
        return i

    with TaskRunner(max_workers=limit) as runner:
        hs = [body.submit(i) for i in range(8)]
        assert runner.run().ok
    assert [h.result() for h in hs] == list(range(8))
    assert gauge.peak == limit


def test_inline_sync_tasks_share_one_slot_of_max_workers() -> None:
    # Sync bodies on the loop run one at a time, so they need one slot between them: while two
    # thread bodies hold both slots of max_workers=2 none may start, and no more than two
    # bodies of either kind are ever inside at once.
    gauge = Gauge()
    limit = 2

    @task(backend="thread")
    def slow(i: int) -> int:
        with gauge.inside():
            for _ in range(int(HANG_GUARD / 0.001)):
                if gauge.peak >= limit:
                    break
                threading.Event().wait(0.001)
            threading.Event().wait(0.01)  # room for an over-admitted inline body to overlap
        return i

    @task
    def quick(i: int) -> int:
        with gauge.inside():
            return i

    with TaskRunner(max_workers=limit) as runner:
        hs = [(slow if i % 5 == 0 else quick).submit(i) for i in range(40)]
        assert runner.run().ok
    assert [h.result() for h in hs] == list(range(40))
    assert gauge.peak == limit


def test_inline_sync_tasks_wait_as_ready_until_each_starts() -> None:
    # A batch of inline bodies is taken at once, but each stays READY until it starts: a body
    # sees itself as the only RUNNING handle, whatever max_workers is.
    seen: list[int] = []
    handles: list[Any] = []

    @task
    def look() -> None:
        seen.append(sum(h.status is TaskStatus.RUNNING for h in handles))

    for limit in (None, 8, 1):
        with TaskRunner(max_workers=limit) as runner:
            handles[:] = [look.submit() for _ in range(300)]
            assert runner.run().ok
    assert seen == [1] * 900


def test_max_workers_bounds_process_tasks(tmp_path: Path) -> None:
    limit = 2
    with TaskRunner(max_workers=limit, backend="process") as runner:
        hs = [runner.submit(engine_helpers.wait_for_peers, str(tmp_path), i, limit)
              for i in range(6)]
        assert runner.run().ok
    peaks = [h.result() for h in hs]
    assert max(peaks) == limit


def test_max_workers_is_a_total_across_backends() -> None:
    gauge = Gauge()
    limit = 2

    @task(backend="thread")
    def in_thread() -> None:
        with gauge.inside():
            wait_until(lambda: gauge.peak >= limit, "two bodies at once")
            threading.Event().wait(0.01)

    @task
    async def in_loop() -> None:
        with gauge.inside():
            for _ in range(int(HANG_GUARD / 0.001)):
                if gauge.peak >= limit:
                    break
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.01)

    with TaskRunner(max_workers=limit) as runner:
        for i in range(6):
            (in_thread if i % 2 else in_loop).submit(task_key=f"t{i}")
        assert runner.run().ok
    assert gauge.peak == limit


def test_max_workers_one_serialises_everything() -> None:
    gauge = Gauge()

    @task(backend="thread")
    def body() -> None:
        with gauge.inside():
            threading.Event().wait(0.002)

    @task
    async def abody() -> None:
        with gauge.inside():
            await asyncio.sleep(0.002)

    with TaskRunner(max_workers=1) as runner:
        for i in range(10):
            (body if i % 2 else abody).submit(task_key=f"k{i}")
        assert runner.run().ok
    assert gauge.peak == 1


def test_many_small_tasks_on_each_backend() -> None:
    with TaskRunner(max_workers=2) as runner:
        a = [double.submit(i) for i in range(200)]
        t = [task(backend="thread", name="tdouble")(lambda x: 2 * x).submit(i)
             for i in range(50)]
        p = [engine_helpers.process_square.submit(i) for i in range(10)]
        results = runner.run()
    assert results.ok and len(results.by_key()) == 260
    assert [h.result() for h in a] == [2 * i for i in range(200)]
    assert [h.result() for h in t] == [2 * i for i in range(50)]
    assert [h.result() for h in p] == [i * i for i in range(10)]
    assert all(h.status is TaskStatus.COMPLETED for h in a + t + p)


def test_process_backend_refuses_a_nested_class_form_task_up_front() -> None:
    class Local(TaskBase):
        backend = "process"

        def run(self) -> int:
            return 1

    with pytest.raises(ValueError, match=r"top-level def or class.*backend='thread'"):
        Local()

    class LocalDefault(TaskBase):  # no backend of its own: checked against the runner's
        def run(self) -> int:
            return 1

    with pytest.raises(ValueError, match="process"):
        TaskRunner(backend="process").submit(LocalDefault())
    with TaskRunner(backend="thread") as runner:
        h = runner.submit(LocalDefault())
        runner.run()
    assert h.result() == 1



def test_a_dead_process_worker_fails_its_task_but_not_the_backend() -> None:
    with TaskRunner(backend="process", on_task_error="continue") as runner:
        dead = runner.submit(engine_helpers.die, 3)
        runner.run()
        assert dead.status is TaskStatus.FAILED
        assert "terminated abruptly" in str(dead.exception)
        # Later process tasks get a fresh pool instead of the broken one.
        after = [runner.submit(engine_helpers.square, i) for i in range(3)]
        runner.run()
    assert [h.result() for h in after] == [0, 1, 4]
