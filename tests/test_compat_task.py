"""pyWorkflowy 0.1.0's Task, TaskBase and task.submit, called as its users call them."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import pytest

import pyworkflowy_nb as pyworkflowy


@pyworkflowy.task
def double(x: int) -> int:
    return 2 * x


@pyworkflowy.task
async def adouble(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


def test_task_defaults_are_the_zero_one_defaults() -> None:
    assert double.fn(4) == 8
    assert double.name.endswith("double")
    assert double.backend == "asyncio"
    assert double.retries == 0
    assert double.timeout is None
    assert double.backoff == "exponential"
    assert double.backoff_base == 1.0
    assert double.backoff_max == 30.0
    assert double.retry_on == (Exception,)
    assert double.on_dep_failure == "fail"
    assert double.max_attempts == 1
    assert double.is_async is False and adouble.is_async is True


def test_task_options_are_readable_attributes() -> None:
    @pyworkflowy.task(name="fetch", backend="thread", retries=3, timeout=2.5, backoff="linear",
                      backoff_base=0.5, backoff_max=4.0, retry_on=KeyError,
                      on_dep_failure="skip")
    def fetch(url: str) -> str:
        return url

    assert (fetch.name, fetch.backend, fetch.retries, fetch.timeout) == ("fetch", "thread", 3, 2.5)
    assert (fetch.backoff, fetch.backoff_base, fetch.backoff_max) == ("linear", 0.5, 4.0)
    assert fetch.retry_on == (KeyError,)
    assert fetch.on_dep_failure == "skip"
    assert fetch.max_attempts == 4


def test_class_form_defaults_match_the_decorator() -> None:
    class Plain(pyworkflowy.TaskBase):
        def run(self) -> int:
            return 1

    made = Plain()
    assert isinstance(made, pyworkflowy.Task)
    assert (made.backend, made.retries, made.backoff, made.backoff_max) == (
        "asyncio", 0, "exponential", 30.0)


def test_exponential_default_backoff_is_what_a_retry_waits() -> None:
    @pyworkflowy.task(retries=3)
    def flaky() -> None: ...

    policy = flaky.retry
    assert [policy.delay(n) for n in (1, 2, 3, 6, 7)] == [1.0, 2.0, 4.0, 30.0, 30.0]


def test_submit_signature_and_default_depends_on() -> None:
    params = inspect.signature(pyworkflowy.Task.submit).parameters
    assert params["depends_on"].default == ()
    assert params["runner"].default is None
    runner = pyworkflowy.TaskRunner()
    first = double.submit(1, runner=runner)
    second = double.submit(2, depends_on=(first,), runner=runner)
    runner.run()
    assert (first.result(), second.result()) == (2, 4)
    assert second.depends_on == (first,)


def test_submit_with_no_runner_is_a_runtime_error_naming_the_fix() -> None:
    with pytest.raises(RuntimeError, match="no runner") as info:
        double.submit(1)
    assert "with TaskRunner() as runner:" in str(info.value)
    assert double.name in str(info.value)


def test_submit_finds_the_runner_bound_by_with() -> None:
    with pyworkflowy.TaskRunner() as runner:
        h = double.submit(21)
        assert pyworkflowy.get_current_runner() is runner
        runner.run()
    assert h.result() == 42 and h.runner is runner


@pytest.mark.parametrize(("args", "kwargs"), [((1,), {}), ((), {"x": 1})])
def test_task_base_with_constructor_arguments_is_a_type_error(
        args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    class Configured(pyworkflowy.TaskBase):
        def run(self, x: int) -> int:
            return x

    with pytest.raises(TypeError, match="no constructor") as info:
        Configured(*args, **kwargs)
    assert "Configured()" in str(info.value) and "submit(" in str(info.value)


def test_calling_a_task_directly_bypasses_the_runner() -> None:
    assert double(5) == 10
    assert asyncio.run(adouble(5)) == 10
