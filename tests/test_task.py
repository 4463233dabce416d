"""Tasks: the decorator (bare and with options), names, the class form, and direct calls."""

from __future__ import annotations

import asyncio
import pickle

import pytest

from pyworkflowy_nb import Task, TaskBase, TaskRunner, task
from pyworkflowy_nb._policy import RetryPolicy


@task
def double(x: int) -> int:
    return 2 * x


@task(name="custom", retries=3, timeout=10.0, backend="thread", priority=4, version="v1",
      on_dep_failure="skip", backoff="linear", backoff_base=0.5, backoff_max=2.0, jitter=0.1)
def configured(x: int) -> int:
    return x + 1


class Doubler(TaskBase):
    name = "doubler"
    backend = "thread"
    retries = 2
    timeout = 5.0

    def run(self, x: int) -> int:
        return 2 * x


class AsyncRun(TaskBase):
    async def run(self, x: int) -> int:  # type: ignore[override]
        await asyncio.sleep(0)
        return 3 * x


def test_bare_decorator_makes_a_task_with_defaults() -> None:
    assert isinstance(double, Task)
    assert double.name == f"{__name__}.double"
    assert double.backend == "asyncio"  # 0.1.0's default; it still follows the runner's
    assert double._backend is None
    assert double.retries == 0
    assert double.max_attempts == 1
    assert double.timeout is None
    assert double.priority == 0
    assert double.on_dep_failure == "fail"
    assert double.version is None
    assert double.is_async is False
    assert double.retry == RetryPolicy()


def test_parameterised_decorator_keeps_every_option() -> None:
    assert isinstance(configured, Task)
    assert configured.name == "custom"
    assert configured.backend == "thread"
    assert configured.retries == 3
    assert configured.max_attempts == 4
    assert configured.timeout == 10.0
    assert configured.priority == 4
    assert configured.version == "v1"
    assert configured.on_dep_failure == "skip"
    assert configured.retry.backoff == "linear"
    assert configured.retry.backoff_base == 0.5
    assert configured.retry.backoff_max == 2.0
    assert configured.retry.jitter == 0.1


def test_direct_call_bypasses_any_runner() -> None:
    assert double(5) == 10
    assert configured(1) == 2
    with TaskRunner() as runner:
        assert double(4) == 8
        assert runner.handles == []  # calling never submits


def test_names_come_from_module_and_qualname() -> None:
    class Holder:
        @staticmethod
        def method() -> int:
            return 1

    def nested() -> int:
        return 2

    assert task(Holder.method).name == (
        f"{__name__}.test_names_come_from_module_and_qualname.<locals>.Holder.method")
    assert task(nested).name == (
        f"{__name__}.test_names_come_from_module_and_qualname.<locals>.nested")


def test_lambdas_get_id_suffixed_names_that_do_not_collide() -> None:
    first = task(lambda: 1)
    second = task(lambda: 2)
    assert first.name != second.name
    for t in (first, second):
        assert t.name.startswith(f"{__name__}.")
        assert "<lambda>" in t.name
    assert first.name.endswith(f"-{id(first.fn):x}")
    assert second.name.endswith(f"-{id(second.fn):x}")
    # Both can be submitted to one runner and keep separate keys and results.
    with TaskRunner() as runner:
        h1, h2 = first.submit(), second.submit()
        runner.run()
    assert h1.key != h2.key
    assert (h1.result(), h2.result()) == (1, 2)


def test_async_functions_are_detected() -> None:
    @task
    async def fetch() -> int:
        return 1

    assert fetch.is_async is True
    assert double.is_async is False
    assert asyncio.run(fetch()) == 1  # the direct call returns the coroutine to await


def test_class_form_returns_a_task_with_class_options() -> None:
    doubler = Doubler()
    assert isinstance(doubler, Task)
    assert doubler.name == "doubler"
    assert doubler.backend == "thread"
    assert doubler.retries == 2
    assert doubler.timeout == 5.0
    assert doubler(21) == 42


def test_class_form_default_name_is_module_qualname() -> None:
    t = AsyncRun()
    assert t.name == f"{__name__}.AsyncRun"


def test_class_form_accepts_async_run_and_runs_it() -> None:
    t = AsyncRun()
    assert t.is_async
    with TaskRunner() as runner:
        h = t.submit(5)
        runner.run()
    assert h.result() == 15


def test_class_form_forwards_submit_arguments_to_run() -> None:
    with TaskRunner() as runner:
        h = Doubler().submit(x=8)
        runner.run()
    assert h.result() == 16


def test_class_form_constructor_takes_no_arguments() -> None:
    with pytest.raises(TypeError, match=r"Doubler\(\) got arguments.*no constructor.*submit"):
        Doubler(3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="no constructor"):
        Doubler(x=3)  # type: ignore[call-arg]


def test_class_without_run_is_rejected() -> None:
    class NoRun(TaskBase):
        name = "no-run"

    with pytest.raises(TypeError, match="must define a run"):
        NoRun()
    with pytest.raises(TypeError, match="must define a run"):
        TaskBase()


def test_class_form_tasks_pickle_by_class() -> None:
    doubler = Doubler()
    clone = pickle.loads(pickle.dumps(doubler))
    assert isinstance(clone, Task)
    assert clone.name == "doubler"
    assert clone(4) == 8


def test_decorated_tasks_pickle_by_reference() -> None:
    clone = pickle.loads(pickle.dumps(double))
    assert clone is double  # re-imported by module and qualname, not copied


def test_max_attempts_is_sugar_for_retries() -> None:
    by_attempts = task(max_attempts=3)(lambda: None)
    by_retries = task(retries=2)(lambda: None)
    assert by_attempts.retries == 2 == by_retries.retries
    assert by_attempts.max_attempts == 3 == by_retries.max_attempts
    assert task(max_attempts=1)(lambda: None).retries == 0


def test_passing_both_retries_and_max_attempts_raises() -> None:
    with pytest.raises(ValueError, match=r"retries=2.*max_attempts=3"):
        task(retries=2, max_attempts=3)(lambda: None)


def test_class_form_max_attempts_and_both() -> None:
    class ThreeTries(TaskBase):
        max_attempts = 3

        def run(self) -> None:
            return None

    class Both(TaskBase):
        retries = 1
        max_attempts = 3

        def run(self) -> None:
            return None

    assert ThreeTries().retries == 2
    with pytest.raises(ValueError, match="not both"):
        Both()


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_async_task_rejected_on_pool_backends_at_decoration(backend: str) -> None:
    async def coro() -> None:
        return None

    with pytest.raises(ValueError, match=rf"async task .* {backend!r} backend.*asyncio"):
        task(backend=backend)(coro)


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_async_class_task_rejected_on_pool_backends(backend: str) -> None:
    class Bad(TaskBase):
        async def run(self) -> None:  # type: ignore[override]
            return None

    Bad.backend = backend
    with pytest.raises(ValueError, match="async task"):
        Bad()


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_async_task_rejected_on_pool_runner_default_at_submit(backend: str) -> None:
    @task
    async def coro() -> None:
        return None

    runner = TaskRunner(backend=backend)
    with pytest.raises(ValueError, match="async task"):
        runner.submit(coro)
    assert runner.handles == []


def test_task_rejects_a_non_callable() -> None:
    with pytest.raises(TypeError, match="needs a function"):
        Task(42)  # type: ignore[arg-type]


def test_bare_decorator_with_positional_and_options_is_refused() -> None:
    with pytest.raises(TypeError, match="keyword options"):
        task(double.fn, retries=2)  # type: ignore[call-overload]


def test_retry_on_accepts_a_class_or_tuple_only() -> None:
    assert task(retry_on=KeyError)(lambda: None).retry.retry_on == (KeyError,)
    assert task(retry_on=(KeyError, OSError))(lambda: None).retry.retry_on == (KeyError, OSError)
    with pytest.raises(TypeError, match=r"retry_on.*'nope'"):
        task(retry_on="nope")(lambda: None)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="retry_on"):
        task(retry_on=(KeyError, int))(lambda: None)  # type: ignore[call-overload]


def test_priority_and_version_types_checked() -> None:
    with pytest.raises(TypeError, match="priority"):
        task(priority=1.5)(lambda: None)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="priority"):
        task(priority=True)(lambda: None)
    with pytest.raises(TypeError, match="version"):
        task(version=3)(lambda: None)  # type: ignore[call-overload]


def test_repr_names_task_and_backend() -> None:
    assert repr(configured) == "<Task 'custom' backend=thread>"
    assert repr(double) == f"<Task '{__name__}.double' backend=default>"
