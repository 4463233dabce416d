"""Dependencies: ordering, the on-dependency-failure policies table, cycles, random DAGs."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from engine_helpers import wait_until
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyworkflowy_nb import TaskHandle, TaskRunner, TaskStatus, task
from pyworkflowy_nb.exceptions import CycleError, DependencyFailedError, TaskError


class Boom(Exception):
    pass


def recorder() -> tuple[list[str], Any]:
    order: list[str] = []
    lock = threading.Lock()

    def make(label: str, *, fail: bool = False, **options: Any) -> Any:
        def body(*args: Any, **kwargs: Any) -> str:
            with lock:
                order.append(label)
            if fail:
                raise Boom(label)
            return label
        return task(name=label, **options)(body)

    return order, make


def test_chain_runs_in_dependency_order() -> None:
    order, make = recorder()
    with TaskRunner() as runner:
        h_load = make("load").submit("data.csv")
        h_clean = make("clean").submit(depends_on=[h_load])
        h_write = make("write").submit(depends_on=[h_clean])
        results = runner.run()
    assert order == ["load", "clean", "write"]
    assert results.ok
    assert h_write.parents == (h_clean,)
    assert h_clean.parents == (h_load,)


def test_children_submitted_before_parents_wait_for_them() -> None:
    order, make = recorder()
    with TaskRunner(backend="thread") as runner:
        gate = threading.Event()

        @task(backend="thread")
        def root() -> str:
            gate.wait(30)
            order.append("root")
            return "root"

        h_root = root.submit()
        leaves = [make(f"leaf{i}").submit(depends_on=[h_root]) for i in range(5)]
        gate.set()
        runner.run()
    assert order[0] == "root"
    assert sorted(order[1:]) == [f"leaf{i}" for i in range(5)]
    assert all(h.result().startswith("leaf") for h in leaves)


def test_diamond_waits_for_every_parent() -> None:
    order, make = recorder()
    with TaskRunner(max_workers=1) as runner:
        a = make("a").submit()
        b = make("b").submit(depends_on=[a])
        c = make("c").submit(depends_on=[a])
        d = make("d").submit(depends_on=[b, c])
        runner.run()
    assert order[0] == "a" and order[-1] == "d"
    assert set(order[1:3]) == {"b", "c"}
    assert d.parents == (b, c)


def test_values_are_not_threaded_into_children_but_readable_inside() -> None:
    seen: list[Any] = []

    @task
    def produce() -> int:
        return 41

    with TaskRunner() as runner:
        h_a = produce.submit()

        @task
        def consume(*args: Any) -> int:
            seen.append(args)
            return h_a.result() + 1

        h_b = consume.submit(depends_on=[h_a])
        runner.run()
    assert seen == [()]  # no automatic argument from the parent
    assert h_b.result() == 42


def test_depends_on_accepts_a_single_handle_and_dedups() -> None:
    order, make = recorder()
    with TaskRunner() as runner:
        a = make("a").submit()
        b = make("b").submit(depends_on=a)
        c = make("c").submit(depends_on=[a, a, b, b])
        runner.run()
    assert b.parents == (a,)
    assert c.parents == (a, b)
    assert order == ["a", "b", "c"]


def test_depending_on_an_already_completed_handle() -> None:
    order, make = recorder()
    with TaskRunner() as runner:
        a = make("a").submit()
        runner.run()
        b = make("b").submit(depends_on=[a])
        assert b.status is TaskStatus.READY  # its only dependency is done: it waits for a run
        runner.run()
    assert order == ["a", "b"]
    assert b.result() == "b"


# -- the policies table ---------------------------------------------------------------------

def test_policy_fail_is_the_default_and_marks_failed_with_dependency_error() -> None:
    order, make = recorder()
    with TaskRunner(on_task_error="continue") as runner:
        bad = make("bad", fail=True).submit()
        child = make("child").submit(depends_on=[bad])
        grandchild = make("grandchild").submit(depends_on=[child])
        runner.run()
    assert order == ["bad"]
    assert child.status is TaskStatus.FAILED
    err = child.exception
    assert isinstance(err, DependencyFailedError)
    assert isinstance(err, TaskError)
    assert err.dependency == "bad"
    assert err.dependency_status == "failed"
    assert err.task == "child"
    assert "bad" in str(err)
    assert grandchild.status is TaskStatus.FAILED
    assert isinstance(grandchild.exception, DependencyFailedError)
    assert grandchild.exception.dependency == "child"
    with pytest.raises(DependencyFailedError):
        child.result()


def test_policy_skip_marks_skipped_and_downstream_sees_the_skip() -> None:
    order, make = recorder()
    with TaskRunner(on_task_error="continue") as runner:
        bad = make("bad", fail=True).submit()
        skipper = make("skipper", on_dep_failure="skip").submit(depends_on=[bad])
        fail_below = make("fail-below").submit(depends_on=[skipper])
        skip_below = make("skip-below", on_dep_failure="skip").submit(depends_on=[skipper])
        anyway_below = make("anyway-below", on_dep_failure="run-anyway").submit(
            depends_on=[skipper])
        results = runner.run()
    assert skipper.status is TaskStatus.SKIPPED
    assert skip_below.status is TaskStatus.SKIPPED
    assert fail_below.status is TaskStatus.FAILED
    assert isinstance(fail_below.exception, DependencyFailedError)
    assert fail_below.exception.dependency_status == "skipped"
    assert anyway_below.status is TaskStatus.COMPLETED
    assert sorted(order) == ["anyway-below", "bad"]
    assert not results.ok
    assert {r.key for r in results.failed} == {"bad", "fail-below"}


def test_policy_run_anyway_runs_with_its_own_arguments() -> None:
    received: list[tuple[Any, ...]] = []

    @task
    def bad() -> None:
        raise Boom("bad")

    @task(on_dep_failure="run-anyway")
    def cleanup(*args: Any) -> str:
        received.append(args)
        return "cleaned"

    with TaskRunner(on_task_error="continue") as runner:
        h_bad = bad.submit()
        h_clean = cleanup.submit("tmp", 3, depends_on=[h_bad])
        runner.run()
    assert received == [("tmp", 3)]
    assert h_clean.result() == "cleaned"
    assert h_bad.status is TaskStatus.FAILED


def test_run_anyway_waits_for_all_parents_to_end() -> None:
    order, make = recorder()
    release = threading.Event()

    @task(backend="thread")
    def slow() -> str:
        release.wait(30)
        order.append("slow")
        return "slow"

    with TaskRunner(on_task_error="continue") as runner:
        bad = make("bad", fail=True).submit()
        s = slow.submit()
        after = make("after", on_dep_failure="run-anyway").submit(depends_on=[bad, s])
        future = runner.run_in_background()
        # "after" must not start before the slow parent ends, whatever "bad" did.
        wait_until(bad.done, "the failing parent to end")
        assert after.status is TaskStatus.PENDING
        release.set()
        future.result(30)
    assert order.index("slow") < order.index("after")


def test_dependency_already_failed_at_submit_time_applies_policy_at_once() -> None:
    order, make = recorder()
    with TaskRunner(on_task_error="continue") as runner:
        bad = make("bad", fail=True).submit()
        runner.run()
        failing = make("f").submit(depends_on=[bad])
        skipping = make("s", on_dep_failure="skip").submit(depends_on=[bad])
        anyway = make("r", on_dep_failure="run-anyway").submit(depends_on=[bad])
        assert failing.status is TaskStatus.FAILED  # decided during submit, no run needed
        assert skipping.status is TaskStatus.SKIPPED
        assert anyway.status is TaskStatus.READY
        runner.run()
    assert anyway.result() == "r"
    assert order == ["bad", "r"]


def test_cancelled_dependency_counts_as_not_completed() -> None:
    order, make = recorder()
    with TaskRunner(on_task_error="continue") as runner:
        a = make("a").submit()
        b = make("b").submit(depends_on=[a])
        c = make("c", on_dep_failure="skip").submit(depends_on=[a])
        assert a.cancel()
        runner.run()
    assert a.status is TaskStatus.CANCELLED
    assert b.status is TaskStatus.FAILED
    assert isinstance(b.exception, DependencyFailedError)
    assert b.exception.dependency_status == "cancelled"
    assert c.status is TaskStatus.SKIPPED
    assert order == []


# -- cycles -----------------------------------------------------------------------------------

def test_add_dependency_closing_a_loop_raises_cycle_error_listing_it() -> None:
    _, make = recorder()
    runner = TaskRunner()
    a = make("a").submit(runner=runner)
    b = make("b").submit(depends_on=[a], runner=runner)
    c = make("c").submit(depends_on=[b], runner=runner)
    with pytest.raises(CycleError) as info:
        runner.add_dependency(a, c)
    err = info.value
    assert isinstance(err, TaskError)
    # Listed in the direction work flows: a feeds b feeds c, and the new edge c -> a.
    assert err.cycle == ("a", "b", "c", "a")
    assert "a -> b -> c -> a" in str(err)
    # The refused edge left no trace: the graph still runs.
    assert a.parents == ()
    results = runner.run()
    assert results.ok
    runner.shutdown()


def test_self_dependency_is_a_cycle() -> None:
    _, make = recorder()
    runner = TaskRunner()
    a = make("a").submit(runner=runner)
    with pytest.raises(CycleError) as info:
        runner.add_dependency(a, a)
    assert info.value.cycle == ("a", "a")


def test_add_dependency_gates_the_handle() -> None:
    order, make = recorder()
    with TaskRunner(max_workers=1) as runner:
        first = make("first").submit()
        second = make("second").submit()
        runner.add_dependency(first, second)  # now first waits for second
        runner.run()
    assert order == ["second", "first"]
    assert first.parents == (second,)


def test_add_dependency_on_a_failed_parent_applies_the_policy() -> None:
    _, make = recorder()
    with TaskRunner(on_task_error="continue") as runner:
        bad = make("bad", fail=True).submit()
        runner.run()
        late = make("late").submit()
        runner.add_dependency(late, bad)
        assert late.status is TaskStatus.FAILED
        assert isinstance(late.exception, DependencyFailedError)
        runner.run()


def test_add_dependency_after_start_is_refused() -> None:
    _, make = recorder()
    with TaskRunner() as runner:
        a = make("a").submit()
        b = make("b").submit()
        runner.run()
        with pytest.raises(ValueError, match="already completed"):
            runner.add_dependency(a, b)


def test_submit_never_closes_a_cycle() -> None:
    # A new node only points at existing ones, so a long chain plus cross edges stays acyclic
    # and no submission raises.
    _, make = recorder()
    with TaskRunner() as runner:
        handles: list[TaskHandle[Any]] = []
        for i in range(30):
            parents = handles[max(0, i - 3):i]
            handles.append(make(f"n{i}").submit(depends_on=parents))
        assert runner.run().ok


# -- random DAGs against a pure-Python reference ----------------------------------------------

POLICIES = ("fail", "skip", "run-anyway")


@st.composite
def dags(draw: st.DrawFn) -> list[tuple[list[int], bool, str]]:
    n = draw(st.integers(min_value=1, max_value=14))
    nodes = []
    for i in range(n):
        parents = draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else []
        nodes.append((parents, draw(st.booleans()), draw(st.sampled_from(POLICIES))))
    return nodes


def reference(nodes: list[tuple[list[int], bool, str]]) -> list[str]:
    status: list[str] = []
    for parents, fails, policy in nodes:
        all_ok = all(status[p] == "completed" for p in parents)
        if all_ok or policy == "run-anyway":
            status.append("failed" if fails else "completed")
        elif policy == "skip":
            status.append("skipped")
        else:
            status.append("failed")
    return status


def run_dag(nodes: list[tuple[list[int], bool, str]], backend: str,
            on_task_error: str = "continue") -> tuple[list[TaskHandle[Any]], BaseException | None]:
    ran: list[int] = []

    def make(i: int, fails: bool, policy: str) -> Any:
        def body() -> int:
            ran.append(i)
            if fails:
                raise Boom(str(i))
            return i
        return task(name=f"n{i}", on_dep_failure=policy, backend=backend)(body)

    raised: BaseException | None = None
    with TaskRunner(on_task_error=on_task_error) as runner:
        handles: list[TaskHandle[Any]] = []
        for i, (parents, fails, policy) in enumerate(nodes):
            handles.append(make(i, fails, policy).submit(
                depends_on=[handles[p] for p in parents]))
        try:
            results = runner.run()
        except Boom as exc:
            raised = exc
        else:
            assert results.ok == all(
                h.status in (TaskStatus.COMPLETED, TaskStatus.SKIPPED) for h in handles)
    assert all(h.done() for h in handles)  # terminal after run(), even after an abort
    # Each body ran at most once, and only once its parents had ended.
    assert len(ran) == len(set(ran))
    for i in ran:
        assert all(handles[p].done() for p in nodes[i][0])
    return handles, raised


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_random_dags_match_the_reference_on_asyncio(
        nodes: list[tuple[list[int], bool, str]]) -> None:
    handles, raised = run_dag(nodes, "asyncio")
    assert raised is None
    assert [h.status.value for h in handles] == reference(nodes)
    for h, (parents, fails, policy) in zip(handles, nodes, strict=True):
        if h.status is TaskStatus.FAILED and not (fails and (
                policy == "run-anyway" or all(handles[p].status is TaskStatus.COMPLETED
                                              for p in parents))):
            assert isinstance(h.exception, DependencyFailedError)
            assert h.exception.dependency in {handles[p].key for p in parents}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_random_dags_match_the_reference_on_threads(
        nodes: list[tuple[list[int], bool, str]]) -> None:
    handles, raised = run_dag(nodes, "thread", on_task_error="log")
    assert raised is None
    assert [h.status.value for h in handles] == reference(nodes)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dags())
def test_random_dags_under_raise_leave_every_handle_terminal(
        nodes: list[tuple[list[int], bool, str]]) -> None:
    expected = reference(nodes)
    any_body_fails = any(fails and status == "failed"
                         for (_, fails, _), status in zip(nodes, expected, strict=True))
    handles, raised = run_dag(nodes, "asyncio", on_task_error="raise")
    if not any_body_fails:
        assert raised is None
        assert [h.status.value for h in handles] == expected
        return
    assert isinstance(raised, Boom)
    origin = handles[int(str(raised))]
    assert origin.status is TaskStatus.FAILED and origin.exception() is raised
    # The abort cancels whatever had not ended; the policies then carry that cancellation
    # downstream (a "fail" child of a cancelled parent fails, a "skip" child is skipped).
    def cancelled_above(h: TaskHandle[Any]) -> bool:
        return any(p.status is TaskStatus.CANCELLED or cancelled_above(p) for p in h.parents)

    for h, want in zip(handles, expected, strict=True):
        if h.status.value == want or h.status is TaskStatus.CANCELLED:
            continue
        assert cancelled_above(h), (h.key, h.status, want)
        if h.status is TaskStatus.FAILED:
            assert isinstance(h.exception, DependencyFailedError)
        else:
            assert h.status is TaskStatus.SKIPPED
