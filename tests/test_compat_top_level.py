"""pyWorkflowy 0.1.0's top level, as its users spell it: names, TaskStatus, aliases, errors."""

from __future__ import annotations

import enum
import typing

import pytest

import pyworkflowy_nb as pyworkflowy

TOP_LEVEL = ["task", "Task", "TaskBase", "TaskRunner", "TaskHandle", "TaskStatus", "TaskContext",
             "TaskResult", "current_task", "get_current_runner", "Checkpointer",
             "JSONCheckpointer", "PickleCheckpointer", "Backend", "Backoff", "DepFailurePolicy",
             "TaskError", "TaskTimeoutError", "TaskCancelledError", "CycleError",
             "DependencyFailedError", "RetryExhaustedError", "CheckpointError"]


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_every_name_of_the_top_level_imports(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from pyworkflowy_nb import {name}", namespace)
    assert namespace[name] is getattr(pyworkflowy, name)
    assert name in pyworkflowy.__all__


def test_all_is_sorted() -> None:
    assert pyworkflowy.__all__ == sorted(pyworkflowy.__all__)


def test_task_status_is_a_str_enum_with_the_eight_members() -> None:
    status = pyworkflowy.TaskStatus
    assert issubclass(status, enum.StrEnum)
    assert [s.value for s in status] == ["pending", "ready", "running", "retrying", "completed",
                                         "failed", "cancelled", "skipped"]
    assert status.COMPLETED == "completed"
    assert status("skipped") is status.SKIPPED
    assert f"{status.FAILED}" == "failed"
    assert {"completed": 1}[status.COMPLETED] == 1  # hashes like its string


def test_ready_means_dependencies_met_and_waiting() -> None:
    with pyworkflowy.TaskRunner() as runner:
        first = runner.submit(lambda: 1)
        second = runner.submit(lambda: 2, depends_on=[first])
        assert first.status == "ready"  # nothing to wait for but a run
        assert second.status == "pending"  # waits for `first`
        runner.run()
    assert (first.status, second.status) == ("completed", "completed")


@pytest.mark.parametrize(("alias", "choices"), [
    ("Backend", {"asyncio", "thread", "process"}),
    ("Backoff", {"none", "linear", "exponential"}),
    ("DepFailurePolicy", {"fail", "skip", "run-anyway"}),
])
def test_type_aliases_are_literals_of_the_option_strings(alias: str, choices: set[str]) -> None:
    literal = getattr(pyworkflowy, alias)
    assert typing.get_origin(literal) is typing.Literal
    assert set(typing.get_args(literal)) >= choices  # Backend also names our "dask" lane


def test_exceptions_derive_from_task_error() -> None:
    for name in ["TaskTimeoutError", "TaskCancelledError", "CycleError", "DependencyFailedError",
                 "RetryExhaustedError", "CheckpointError"]:
        assert issubclass(getattr(pyworkflowy, name), pyworkflowy.TaskError)
    assert issubclass(pyworkflowy.TaskError, Exception)


def test_task_timeout_error_constructor() -> None:
    err = pyworkflowy.TaskTimeoutError("too slow", elapsed=1.5)
    assert str(err) == "too slow" and err.elapsed == 1.5
    assert pyworkflowy.TaskTimeoutError("too slow").elapsed is None


def test_dependency_failed_error_constructor() -> None:
    err = pyworkflowy.DependencyFailedError("upstream broke", failed=("load", "parse"))
    assert err.failed == ("load", "parse")
    assert pyworkflowy.DependencyFailedError("upstream broke").failed == ()


def test_retry_exhausted_error_constructor_and_cause() -> None:
    last = ConnectionError("down")
    try:
        try:
            raise last
        except ConnectionError as exc:
            raise pyworkflowy.RetryExhaustedError("gave up", attempts=3) from exc
    except pyworkflowy.TaskError as caught:
        assert isinstance(caught, pyworkflowy.RetryExhaustedError)
        assert caught.attempts == 3 and caught.__cause__ is last


def test_engine_raised_errors_carry_the_zero_one_fields() -> None:
    @pyworkflowy.task(name="slow", timeout=0.05)
    async def slow() -> None:
        import asyncio

        await asyncio.sleep(30)

    @pyworkflowy.task(name="boom", retries=1, backoff="none")
    def boom() -> None:
        raise KeyError("k")

    @pyworkflowy.task(name="after")
    def after() -> None: ...

    with pyworkflowy.TaskRunner(on_task_error="continue") as runner:
        timed_out = slow.submit()
        failed = boom.submit()
        blocked = after.submit(depends_on=[failed])
        runner.run()
    timeout_error = timed_out.exception()
    assert isinstance(timeout_error, pyworkflowy.TaskTimeoutError)
    assert timeout_error.elapsed == 0.05
    exhausted = failed.exception()
    assert isinstance(exhausted, pyworkflowy.RetryExhaustedError)
    assert exhausted.attempts == 2 and isinstance(exhausted.__cause__, KeyError)
    dep_error = blocked.exception()
    assert isinstance(dep_error, pyworkflowy.DependencyFailedError)
    assert dep_error.failed == ("boom",)  # names, as in 0.1.0
