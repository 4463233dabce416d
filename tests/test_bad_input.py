"""Bad input: every mistake gets a clear error that names the bad value and the fix."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from pyworkflowy_nb import JSONCheckpointer, TaskBase, TaskRunner, task
from pyworkflowy_nb.exceptions import CheckpointError


def noop() -> None:
    return None


@task
def square(x: int) -> int:
    return x * x


# -- unknown choices -------------------------------------------------------------------------

@pytest.mark.parametrize(("make", "value", "choices"), [
    (lambda v: task(backend=v)(noop), "threads", ("'asyncio'", "'thread'", "'process'")),
    (lambda v: TaskRunner(backend=v), "gpu", ("'asyncio'", "'thread'", "'process'")),
    (lambda v: task(on_dep_failure=v)(noop), "ignore", ("'fail'", "'skip'", "'run-anyway'")),
    (lambda v: task(backoff=v)(noop), "fibonacci", ("'none'", "'linear'", "'exponential'")),
    (lambda v: TaskRunner(on_task_error=v), "warn", ("'raise'", "'log'", "'continue'")),
], ids=["task-backend", "runner-backend", "dep-policy", "backoff", "on_task_error"])
def test_unknown_choice_names_the_value_and_lists_the_choices(
        make: Any, value: str, choices: tuple[str, ...]) -> None:
    with pytest.raises(ValueError) as info:
        make(value)
    message = str(info.value)
    assert repr(value) in message
    for choice in choices:
        assert choice in message


def test_near_miss_gets_a_suggestion() -> None:
    with pytest.raises(ValueError, match=r"did you mean 'thread'"):
        task(backend="threads")(noop)
    with pytest.raises(ValueError, match=r"did you mean 'run-anyway'"):
        task(on_dep_failure="run_anyway")(noop)
    with pytest.raises(ValueError, match=r"did you mean 'exponential'"):
        task(backoff="exponentail")(noop)


def test_non_string_choice() -> None:
    with pytest.raises(ValueError, match=r"unknown backend 3"):
        TaskRunner(backend=3)  # type: ignore[arg-type]


# -- numbers ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "pattern"), [
    ({"retries": -1}, r"retries must be >= 0, got -1"),
    ({"max_attempts": 0}, r"max_attempts must be greater than 0, got 0"),
    ({"timeout": -1.0}, r"timeout must be a finite number of seconds > 0 .*, got -1.0"),
    ({"timeout": 0}, r"timeout must be a finite number of seconds > 0 .*, got 0"),
    ({"timeout": math.nan}, r"timeout must be a finite number of seconds .*, got nan"),
    ({"timeout": math.inf}, r"got inf: use timeout=None for no timeout"),
    ({"backoff_base": -0.5}, r"backoff_base must be a finite number of seconds >= 0 "),
    ({"backoff_max": -1}, r"backoff_max must be a finite number of seconds >= 0 "),
    ({"jitter": -0.1}, r"jitter must be a finite number of seconds >= 0 "),
    ({"jitter": 10**400}, r"jitter must be .*, got an integer of about 401 digits"),
    ({"retry_on": ()}, r"retry_on=\(\) retries nothing"),
])
def test_negative_numbers_on_tasks(options: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        task(**options)(noop)


@pytest.mark.parametrize(("options", "pattern"), [
    ({"retries": 1.5}, r"retries must be an integer"),
    ({"retries": "3"}, r"retries must be an integer, got '3'"),
    ({"retries": True}, r"retries must be an integer"),
    ({"timeout": "10"}, r"timeout must be a number of seconds, got '10' \(str\)"),
    ({"backoff_base": True}, r"backoff_base must be a number of seconds, got True \(bool\)"),
])
def test_wrong_number_types_on_tasks(options: dict[str, Any], pattern: str) -> None:
    with pytest.raises(TypeError, match=pattern):
        task(**options)(noop)


@pytest.mark.parametrize(("kwargs", "error", "pattern"), [
    ({"max_workers": -2}, ValueError, r"max_workers must be greater than 0, got -2"),
    ({"max_workers": 0}, ValueError, r"max_workers must be greater than 0, got 0"),
    ({"max_workers": 2.5}, TypeError, r"max_workers must be an integer"),
    ({"checkpoint_interval": -1}, ValueError,
     r"checkpoint_interval must be a finite number of seconds >= 0 and <= 31536000, got -1"),
    ({"checkpoint_interval": None}, TypeError, r"checkpoint_interval must be a number"),
    ({"checkpoint_interval": math.inf}, ValueError, r"checkpoint_interval .*, got inf"),
    ({"max_workers": 10**7}, ValueError, r"max_workers must be <= 1000000, got 10000000"),
    ({"executors": ["pool"]}, TypeError, r"executors must be a mapping .*\{'thread': pool\}"),
])
def test_bad_runner_numbers(kwargs: dict[str, Any], error: type[Exception],
                            pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        TaskRunner(**kwargs)


def test_retries_with_max_attempts() -> None:
    with pytest.raises(ValueError, match=r"not both.*max_attempts=N means retries=N-1"):
        task(retries=1, max_attempts=2)(noop)


def test_class_form_validates_the_same_options() -> None:
    class Bad(TaskBase):
        retries = -3

        def run(self) -> None:
            return None

    with pytest.raises(ValueError, match="retries must be >= 0, got -3"):
        Bad()


# -- backends --------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["thread", "process"])
def test_async_task_on_a_pool_backend(backend: str) -> None:
    async def coro() -> None:
        return None

    with pytest.raises(ValueError) as info:
        task(backend=backend)(coro)
    message = str(info.value)
    assert "async task" in message and repr(backend) in message
    assert "backend='asyncio'" in message  # the fix


def test_empty_task_name() -> None:
    with pytest.raises(ValueError, match="non-empty string"):
        task(name="")(noop)


# -- submitting ------------------------------------------------------------------------------

def test_submit_with_no_runner() -> None:
    with pytest.raises(RuntimeError) as info:
        square.submit(3)
    message = str(info.value)
    assert square.name in message
    assert "with TaskRunner() as runner:" in message and "runner=" in message


def test_submit_a_non_callable() -> None:
    with pytest.raises(TypeError, match=r"submit\(\) needs a task or a callable, got 42"):
        TaskRunner().submit(42)  # type: ignore[call-overload]


def test_depends_on_a_handle_of_another_runner() -> None:
    one, two = TaskRunner(), TaskRunner()
    foreign = one.submit(square, 1)
    with pytest.raises(ValueError) as info:
        two.submit(square, 2, depends_on=[foreign])
    assert repr(foreign.key) in str(info.value)
    assert "different runner" in str(info.value) and "same TaskRunner" in str(info.value)
    assert two.handles == []
    with pytest.raises(ValueError, match="different runner"):
        two.add_dependency(two.submit(square, 3), foreign)


@pytest.mark.parametrize("bad", ["a-string-key", 42, object(), [None]],
                         ids=["string", "int", "object", "list-of-none"])
def test_depends_on_something_that_is_not_a_handle(bad: Any) -> None:
    runner = TaskRunner()
    with pytest.raises(TypeError, match=r"depends_on .* TaskHandle"):
        runner.submit(square, 1, depends_on=bad)
    assert runner.handles == []


def test_depends_on_a_list_mixing_handles_and_junk() -> None:
    runner = TaskRunner()
    good = runner.submit(square, 1)
    with pytest.raises(TypeError, match=r"got 'oops' \(str\)"):
        runner.submit(square, 2, depends_on=[good, "oops"])
    assert runner.handles == [good]


def test_unserialisable_arguments_with_a_checkpointer(tmp_path: Path) -> None:
    from pyworkflowy_nb import PickleCheckpointer

    json_runner = TaskRunner(checkpoint_path=tmp_path / "a.json")
    with pytest.raises(CheckpointError) as info:
        json_runner.submit(square, object())
    assert "argument 0" in str(info.value) and "PickleCheckpointer" in str(info.value)
    pickle_runner = TaskRunner(checkpointer=PickleCheckpointer(tmp_path / "b.pkl"))
    with pytest.raises(CheckpointError, match="cannot be pickled"):
        pickle_runner.submit(square, (i for i in range(3)))
    assert json_runner.handles == [] and pickle_runner.handles == []


def test_duplicate_task_key() -> None:
    runner = TaskRunner()
    first = runner.submit(square, 1, task_key="k")
    with pytest.raises(ValueError) as info:
        runner.submit(square, 2, task_key="k")
    assert "'k'" in str(info.value) and "pick another" in str(info.value)
    assert runner.handles == [first]


def test_bad_task_key_type() -> None:
    with pytest.raises(TypeError, match="task_key must be a non-empty string, got 3"):
        TaskRunner().submit(square, 1, task_key=3)  # type: ignore[arg-type]


def test_checkpoint_path_of_the_wrong_type() -> None:
    with pytest.raises(TypeError, match="checkpoint_path must be a file path"):
        TaskRunner(checkpoint_path=3)  # type: ignore[arg-type]


def test_resume_from_a_path_with_nothing_yet_starts_fresh_there(tmp_path: Path) -> None:
    # Issue 9: nothing written yet is not an error; the runner checkpoints at that path.
    missing = tmp_path / "missing.json"
    runner = TaskRunner.resume(missing)
    assert isinstance(runner.checkpointer, JSONCheckpointer)
    assert runner.checkpointer.path == missing


def test_resume_keeps_other_runner_options_validated(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    with TaskRunner(checkpoint_path=path) as runner:
        runner.submit(square, 1)
        runner.run()
    with pytest.raises(ValueError, match="unknown backend"):
        TaskRunner.resume(path, backend="nope")
    resumed = TaskRunner.resume(path, max_workers=2, backend="thread")
    assert resumed.max_workers == 2 and resumed.backend == "thread"
