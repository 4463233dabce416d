"""The public face: every exported name exists and is what it claims to be (trio style)."""

from __future__ import annotations

import abc
import dataclasses
import enum
import inspect
import typing
from collections.abc import Mapping

import pytest

import pyworkflowy_nb
import pyworkflowy_nb.exceptions as exceptions
from pyworkflowy_nb import _cache, _checkpoint, _context, _events, _handle, _policy, _run, _task

# name -> (the private object it must be, what kind of thing it is)
EXPECTED = {
    "task": (_task.task, "function"),
    "Task": (_task.Task, "class"),
    "TaskBase": (_task.TaskBase, "class"),
    "TaskRunner": (_run.TaskRunner, "class"),
    "TaskHandle": (_handle.TaskHandle, "class"),
    "TaskStatus": (_handle.TaskStatus, "enum"),
    "TaskContext": (_context.TaskContext, "class"),
    "TaskResult": (_handle.TaskResult, "frozen-dataclass"),
    # Not frozen on purpose (freezing slows building an event); documented as read-only.
    "TaskEvent": (_events.TaskEvent, "dataclass"),
    "RunResults": (_handle.RunResults, "mapping"),
    "EventLog": (_events.EventLog, "class"),
    "MemoryStore": (_cache.MemoryStore, "class"),
    "DiskStore": (_cache.DiskStore, "class"),
    "current_task": (_context.current_task, "function"),
    "get_current_runner": (_context.get_current_runner, "function"),
    "Checkpointer": (_checkpoint.Checkpointer, "abc"),
    "FileCheckpointer": (_checkpoint.FileCheckpointer, "abc"),
    "JSONCheckpointer": (_checkpoint.JSONCheckpointer, "checkpointer"),
    "PickleCheckpointer": (_checkpoint.PickleCheckpointer, "checkpointer"),
    # The signed-pickle base a codec subclasses (the notebook's cloudpickle checkpointer).
    "SignedCheckpointer": (_checkpoint.SignedCheckpointer, "abc"),
    "load_ipython_extension": (None, "function"),
    "unload_ipython_extension": (None, "function"),
    # pyWorkflowy 0.1.0 exports its option Literal types and the seven errors at the top level.
    "Backend": (_policy.Backend, "literal"),
    "Backoff": (_policy.Backoff, "literal"),
    "DepFailurePolicy": (_policy.DepFailurePolicy, "literal"),
    **{name: (getattr(exceptions, name), "exception") for name in exceptions.__all__},
}

REFERENCE_NAMES = {"task", "Task", "TaskBase", "TaskRunner", "TaskHandle", "TaskStatus",
                   "TaskContext", "TaskResult", "current_task", "get_current_runner",
                   "Checkpointer", "JSONCheckpointer", "PickleCheckpointer",
                   "Backend", "Backoff", "DepFailurePolicy", "TaskError", "TaskTimeoutError",
                   "TaskCancelledError", "CycleError", "DependencyFailedError",
                   "RetryExhaustedError", "CheckpointError"}


def test_all_is_sorted_unique_and_covers_the_reference_api() -> None:
    names = pyworkflowy_nb.__all__
    assert names == sorted(names)
    assert len(names) == len(set(names))
    assert set(names) >= REFERENCE_NAMES
    assert set(names) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_export_is_what_it_claims(name: str) -> None:
    obj = getattr(pyworkflowy_nb, name)
    private, kind = EXPECTED[name]
    if private is not None:
        assert obj is private
    if kind == "literal":
        assert typing.get_origin(obj) is typing.Literal
        assert all(isinstance(choice, str) for choice in typing.get_args(obj))
        return
    if kind == "exception":
        assert issubclass(obj, exceptions.TaskError)
    if kind == "function":
        assert inspect.isfunction(obj)
        assert obj.__doc__
    else:
        assert inspect.isclass(obj)
        assert obj.__module__.startswith("pyworkflowy_nb.")
        assert obj.__doc__
    if kind == "enum":
        assert issubclass(obj, enum.Enum)
    if kind in ("dataclass", "frozen-dataclass"):
        assert dataclasses.is_dataclass(obj)
    if kind == "frozen-dataclass":
        assert obj.__dataclass_params__.frozen  # type: ignore[attr-defined]
    if kind == "mapping":
        assert issubclass(obj, Mapping)
    if kind == "abc":
        assert inspect.isabstract(obj)
    if kind == "checkpointer":
        assert issubclass(obj, _checkpoint.Checkpointer) and not inspect.isabstract(obj)


def test_taskbase_instances_are_tasks() -> None:
    class T(pyworkflowy_nb.TaskBase):
        def run(self) -> int:
            return 1

    assert isinstance(T(), pyworkflowy_nb.Task)
    assert isinstance(pyworkflowy_nb.task(lambda: 1), pyworkflowy_nb.Task)


def test_checkpointer_has_the_save_load_contract() -> None:
    cp = pyworkflowy_nb.Checkpointer
    assert isinstance(cp, abc.ABCMeta)
    assert cp.__abstractmethods__ == frozenset({"save", "load"})
    assert callable(cp.check)


def test_task_event_fields() -> None:
    fields = [f.name for f in dataclasses.fields(pyworkflowy_nb.TaskEvent)]
    assert fields == ["kind", "handle", "time", "attempt", "error", "progress"]


def test_task_result_fields() -> None:
    fields = [f.name for f in dataclasses.fields(pyworkflowy_nb.TaskResult)]
    assert fields == ["key", "name", "status", "value", "error", "attempts", "started_at",
                      "finished_at", "restored", "cached"]


SEVEN = ["TaskError", "TaskTimeoutError", "TaskCancelledError", "CycleError",
         "DependencyFailedError", "RetryExhaustedError", "CheckpointError"]


def test_exceptions_module_exports_seven_errors_under_task_error() -> None:
    assert sorted(exceptions.__all__) == sorted(SEVEN)
    base = exceptions.TaskError
    assert issubclass(base, Exception) and base.__bases__ == (Exception,)
    for name in SEVEN[1:]:
        cls = getattr(exceptions, name)
        assert cls.__bases__ == (base,), name
        assert cls.__module__ == "pyworkflowy_nb.exceptions"
        assert cls.__doc__


@pytest.mark.parametrize(("cls", "kwargs", "fields"), [
    (exceptions.TaskError, {"task": "t"}, {"task": "t"}),
    (exceptions.TaskTimeoutError, {"task": "t", "timeout": 2.0, "attempts": 1},
     {"timeout": 2.0, "attempts": 1}),
    (exceptions.TaskCancelledError, {"task": "t", "result": 5}, {"result": 5}),
    (exceptions.CycleError, {"cycle": ("a", "b", "a")}, {"cycle": ("a", "b", "a")}),
    (exceptions.DependencyFailedError, {"task": "t", "dependency": "d",
                                        "dependency_status": "failed"},
     {"dependency": "d", "dependency_status": "failed"}),
    (exceptions.RetryExhaustedError, {"task": "t", "attempts": 3, "elapsed": 1.5},
     {"attempts": 3, "elapsed": 1.5}),
    (exceptions.CheckpointError, {"path": "/x"}, {"path": "/x"}),
])
def test_errors_carry_structured_fields(cls: type[exceptions.TaskError], kwargs: dict[str, object],
                                        fields: dict[str, object]) -> None:
    err = cls("message", **kwargs)  # type: ignore[arg-type]
    assert str(err) == "message"
    for attr, value in fields.items():
        assert getattr(err, attr) == value
    with pytest.raises(exceptions.TaskError):
        raise err


def test_version_and_notebook_layer_not_exported() -> None:
    assert isinstance(pyworkflowy_nb.__version__, str)
    assert pyworkflowy_nb.__version__.count(".") >= 1
    assert "notebook" not in pyworkflowy_nb.__all__


def test_schedule_module_is_public() -> None:
    import pyworkflowy_nb.schedule as schedule

    assert hasattr(schedule, "Scheduler")


def test_testing_module_is_public() -> None:
    import pyworkflowy_nb.testing as testing
    from pyworkflowy_nb import _mockclock
    from pyworkflowy_nb.schedule import Clock

    assert testing.__all__ == ["MockClock"]
    assert testing.MockClock is _mockclock.MockClock
    assert testing.MockClock.__doc__
    assert isinstance(testing.MockClock(), Clock)  # the engine's one clock protocol
