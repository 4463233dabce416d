"""Tasks that spawn tasks: a body submits to its own runner and waits, at any max_workers.

A waiting parent gives its slot back and takes it again when it resumes, so a tree of waits
never deadlocks, even with one worker. Each test has a hang guard; nothing times the run.
"""

from __future__ import annotations

from typing import Any

import pytest
from engine_helpers import HANG_GUARD, Gauge

from pyworkflowy_nb import TaskRunner, get_current_runner, task

pytestmark = pytest.mark.timeout(120)


@task
def leaf(x: int) -> int:
    return x


@task(backend="thread")
def tree_thread(depth: int, x: int) -> int:
    """Thread lane: waits with handle.result() in its worker thread."""
    runner = get_current_runner()
    assert runner is not None
    if depth == 0:
        return x
    kids = [tree_thread.submit(depth - 1, 2 * x + i) for i in range(2)]
    return sum(k.result(timeout=HANG_GUARD) for k in kids)


@task
async def tree_async(depth: int, x: int) -> int:
    """Asyncio lane: waits with await."""
    if depth == 0:
        return x
    kids = [tree_async.submit(depth - 1, 2 * x + i) for i in range(2)]
    total = 0
    for k in kids:
        total += await k
    return total


def expected(depth: int, x: int) -> int:
    if depth == 0:
        return x
    return sum(expected(depth - 1, 2 * x + i) for i in range(2))


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("body", [tree_thread, tree_async], ids=["thread", "asyncio"])
def test_three_levels_of_waiting_children_finish(body: Any, workers: int) -> None:
    with TaskRunner(max_workers=workers) as runner:
        root = body.submit(3, 1)
        future = runner.run_in_background()
        assert root.result(timeout=HANG_GUARD) == expected(3, 1)
        future.result(timeout=HANG_GUARD)
    assert len(runner.handles) == 1 + 2 + 4 + 8


def test_the_ambient_runner_in_a_thread_body_is_the_one_running_it() -> None:
    seen: list[Any] = []

    @task(backend="thread")
    def body() -> None:
        seen.append(get_current_runner())

    runner = TaskRunner()
    runner.submit(body)
    runner.run()
    runner.shutdown()
    assert seen == [runner]


def test_max_workers_still_bounds_running_bodies() -> None:
    gauge = Gauge()

    @task(backend="thread")
    def child(i: int) -> int:
        with gauge.inside():
            return i

    @task(backend="thread")
    def parent(n: int) -> int:
        with gauge.inside():
            pass  # counted while running, not while waiting (its slot is given back)
        return sum(h.result(timeout=HANG_GUARD) for h in child.map(range(n)))

    with TaskRunner(max_workers=2) as runner:
        hs = parent.map([3, 3, 3])
        runner.run()
    assert [h.result() for h in hs] == [3, 3, 3]
    assert gauge.peak <= 2


def test_slots_balance_after_waiting_parents() -> None:
    @task
    async def parent() -> int:
        child = leaf.submit(5)
        return await child

    with TaskRunner(max_workers=1) as runner:
        hs = [runner.submit(parent) for _ in range(3)]
        runner.run()
    assert [h.result() for h in hs] == [5, 5, 5]
    assert runner._dispatch.total_inflight == 0
