"""Handles as arguments: dependencies whose results replace them when the task runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pyworkflowy_nb import TaskRunner, TaskStatus, task
from pyworkflowy_nb._handle_args import find_handles
from pyworkflowy_nb.exceptions import DependencyFailedError

ROOT = Path(__file__).resolve().parents[1]


@task
def const(x: Any) -> Any:
    return x


@task
def add(a: int, b: int) -> int:
    return a + b


@task
def echo(*args: Any, **kwargs: Any) -> Any:
    return args, kwargs


@task
def boom() -> int:
    raise ValueError("boom")


@task(on_dep_failure="skip")
def skip_on_failure(x: int) -> int:
    return x


@task(on_dep_failure="run-anyway")
def anyway(x: Any) -> Any:
    return x


@pytest.mark.parametrize("backend", ["asyncio", "thread"])
def test_positional_and_keyword_handles_are_replaced_by_results(backend: str) -> None:
    with TaskRunner(backend=backend) as runner:
        a, b = const.submit(2), const.submit(3)
        total = add.submit(a, b=b)
        assert set(total.parents) == {a, b}
        runner.run()
    assert total.result() == 5


def test_handles_nested_in_containers() -> None:
    with TaskRunner() as runner:
        a, b, c = const.submit(1), const.submit("two"), const.submit(3)
        h = echo.submit([a, (b, {"deep": [c]})], {c, 4}, mapping={"k": a, "plain": 9})
        runner.run()
    args, kwargs = h.result()
    assert args == ([1, ("two", {"deep": [3]})], {3, 4})
    assert kwargs == {"mapping": {"k": 1, "plain": 9}}
    assert len(h.parents) == 3  # a repeated handle is one edge


def test_depends_on_still_passes_no_value() -> None:
    with TaskRunner() as runner:
        a = const.submit(1)
        h = echo.submit(depends_on=[a])
        runner.run()
    assert h.result() == ((), {})


def test_failed_argument_fails_the_task_under_the_default_policy() -> None:
    with TaskRunner(on_task_error="continue") as runner:
        bad = boom.submit()
        h = add.submit(bad, 1)
        runner.run()
    assert h.status is TaskStatus.FAILED
    assert isinstance(h.exception(), DependencyFailedError)


def test_failed_argument_skips_under_skip() -> None:
    with TaskRunner(on_task_error="continue") as runner:
        h = skip_on_failure.submit(boom.submit())
        runner.run()
    assert h.status is TaskStatus.SKIPPED


def test_run_anyway_receives_the_argument_s_exception() -> None:
    with TaskRunner(on_task_error="continue") as runner:
        bad = boom.submit()
        h = anyway.submit([bad])
        runner.run()
    (received,) = h.result()
    assert received is bad.exception()
    assert isinstance(received, ValueError)


def test_handle_of_another_runner_is_refused() -> None:
    other = TaskRunner()
    foreign = other.submit(const, 1)
    with TaskRunner(), pytest.raises(ValueError, match="different runner"):
        add.submit(foreign, 1)
    other.shutdown()


def test_keys_name_handle_arguments_by_key() -> None:
    with TaskRunner() as runner:
        a = const.submit(1)
        h = add.submit(a, 2)
        runner.run()
    assert h.key == f"{add.name}('<task {a.key}>', 2)"


def test_scan_walks_only_containers_and_handles() -> None:
    assert find_handles((1, "x", 2.0, None, b"b"), {"k": 3}) == []
    assert find_handles(([1, 2], {"a": (3,)}), {}) == []


def test_process_backend_gets_values_not_handles() -> None:
    with TaskRunner(backend="process", max_workers=1) as runner:
        a = const.submit(20)
        h = add.submit(a, 22)
        runner.run()
    assert h.result() == 42


@pytest.mark.usefixtures("key_file")
def test_resume_in_a_fresh_process_matches_handle_arguments(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    path = tmp_path / "ckpt.json"
    script = textwrap.dedent(f"""
        import json, sys
        from pyworkflowy_nb import TaskRunner, task
        calls = []
        @task(name="src")
        def src(x):
            calls.append("src")
            return x
        @task(name="plus")
        def plus(a, bs):
            calls.append("plus")
            return a + sum(bs)
        runner = TaskRunner.resume({str(path)!r})
        with runner:
            a = src.submit(1)
            b = src.submit(2)
            h = plus.submit(a, bs=[b, a])
            runner.run()
        print(json.dumps([h.key, h.result(), h.restored, calls]))
    """)

    def run() -> list[Any]:
        out = subprocess.run([sys.executable, "-c", script], env=env, timeout=120,
                             check=True, capture_output=True, text=True)
        result: list[Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result

    first, second = run(), run()
    assert first[:2] == second[:2] and first[1] == 4
    assert first[3] == ["src", "src", "plus"]
    assert second[2] is True and second[3] == []


def test_map_submits_one_task_per_item_in_order() -> None:
    with TaskRunner() as runner:
        handles = add.map([1, 2, 3], [10, 20, 30])
        runner.run()
    assert [h.result() for h in handles] == [11, 22, 33]


def test_map_with_common_kwargs_and_handle_items() -> None:
    with TaskRunner() as runner:
        sources = const.map(range(3))
        handles = add.map(sources, b=100)
        runner.run()
    assert [h.result() for h in handles] == [100, 101, 102]
    assert all(h.parents == (s,) for h, s in zip(handles, sources, strict=True))


def test_map_refuses_unequal_lengths_before_submitting() -> None:
    with TaskRunner() as runner:
        with pytest.raises(ValueError, match=r"different lengths \[2, 3\]"):
            add.map([1, 2], [1, 2, 3])
        assert runner.handles == []


def test_map_of_nothing_is_no_handles() -> None:
    with TaskRunner():
        assert add.map([]) == []
