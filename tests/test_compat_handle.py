"""pyWorkflowy 0.1.0's TaskHandle and TaskResult, as its users call them."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Iterator

import pytest
from engine_helpers import HANG_GUARD

import pyworkflowy_nb as pyworkflowy
from pyworkflowy_nb import TaskStatus


@pyworkflowy.task(name="add")
def add(a: int, b: int = 0) -> int:
    return a + b


@pyworkflowy.task(name="fails")
def fails() -> None:
    raise ValueError("broken")


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # never leave a worker blocked


def test_handle_attributes() -> None:
    with pyworkflowy.TaskRunner() as runner:
        first = add.submit(1, b=2)
        second = add.submit(3, depends_on=[first])
        assert (first.name, first.task, first.args, first.kwargs) == ("add", add, (1,), {"b": 2})
        assert isinstance(first.id, str) and first.id != second.id
        assert first.depends_on == () and second.depends_on == (first,)
        assert isinstance(second.depends_on, tuple)
        assert first.status is TaskStatus.READY and not first.done()
        runner.run()
    assert first.done() and first.status == "completed"


def test_wait_returns_true_once_terminal_and_false_on_timeout(gate: threading.Event) -> None:
    runner = pyworkflowy.TaskRunner()
    held = runner.submit(pyworkflowy.task(backend="thread")(gate.wait))
    future = runner.run_in_background()
    assert held.wait(0.05) is False
    gate.set()
    assert held.wait(HANG_GUARD) is True
    assert held.wait() is True  # terminal: returns at once
    future.result(HANG_GUARD)
    runner.shutdown()


@pytest.mark.parametrize("method", ["result", "exception", "get_result"])
def test_timeouts_raise_builtin_timeout_error_while_running(
        method: str, gate: threading.Event) -> None:
    runner = pyworkflowy.TaskRunner()
    held = runner.submit(pyworkflowy.task(backend="thread")(gate.wait))
    future = runner.run_in_background()
    with pytest.raises(TimeoutError, match=f"still .* after 0.05 s.*{method}"):
        getattr(held, method)(timeout=0.05)
    gate.set()
    future.result(HANG_GUARD)
    runner.shutdown()


@pytest.mark.parametrize("method", ["result", "exception", "get_result"])
def test_timeouts_raise_timeout_error_before_any_run(method: str) -> None:
    runner = pyworkflowy.TaskRunner()
    h = add.submit(1, runner=runner)
    with pytest.raises(TimeoutError, match=r"no run is going: call runner.run\(\)"):
        getattr(h, method)(timeout=0.05)
    assert h.wait(0.05) is False


@pytest.mark.parametrize("method", ["result", "exception", "get_result", "wait"])
def test_no_timeout_and_no_run_fails_at_once_instead_of_hanging(method: str) -> None:
    runner = pyworkflowy.TaskRunner()
    h = add.submit(1, runner=runner)
    with pytest.raises(RuntimeError, match=rf"no run is going.*{method}\(timeout=\.\.\.\)"):
        getattr(h, method)()


def test_a_run_started_by_another_thread_ends_the_wait() -> None:
    runner = pyworkflowy.TaskRunner()
    h = add.submit(20, b=22, runner=runner)
    starter = threading.Timer(0.05, runner.run)
    starter.start()
    assert h.result(timeout=HANG_GUARD) == 42
    starter.join(HANG_GUARD)


def test_result_exception_and_get_result_after_the_run() -> None:
    with pyworkflowy.TaskRunner(on_task_error="continue") as runner:
        good = add.submit(2, b=3)
        bad = fails.submit()
        runner.run()
    assert good.result() == 5 and good.exception() is None
    with pytest.raises(ValueError, match="broken"):
        bad.result()
    error = bad.exception()
    assert isinstance(error, ValueError) and error is bad.exception(timeout=1)
    record = bad.get_result()  # never raises the task's error
    assert isinstance(record, pyworkflowy.TaskResult)
    assert (record.name, record.status, record.value, record.error) == (
        "fails", TaskStatus.FAILED, None, error)
    assert not record.ok and record.attempts == 1
    assert good.get_result(timeout=1).ok and good.get_result().value == 5


def test_exception_still_reads_as_an_attribute() -> None:
    with pyworkflowy.TaskRunner(on_task_error="continue") as runner:
        good = add.submit(1)
        bad = fails.submit()
        runner.run()
    # Older code of this package read `handle.exception` without calling it.
    assert isinstance(bad.exception, ValueError)
    assert str(bad.exception) == "broken" and bad.exception.args == ("broken",)
    assert bad.exception == bad.exception() and bool(bad.exception)
    assert not good.exception and good.exception == None  # noqa: E711 - the point of the test
    assert repr(bad.exception) == repr(bad.exception())


def test_task_result_record() -> None:
    fields = {f.name for f in dataclasses.fields(pyworkflowy.TaskResult)}
    assert fields >= {"name", "status", "value", "error", "attempts", "started_at",
                      "finished_at"}
    with pyworkflowy.TaskRunner() as runner:
        h = add.submit(1)
        runner.run()
    record = h.get_result()
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.value = 2  # type: ignore[misc]
    assert record.duration is not None and record.duration >= 0
    pending = add.submit(2, runner=pyworkflowy.TaskRunner()).to_result()
    assert pending.duration is None and not pending.ok


def test_cancel_is_false_when_terminal_or_already_cancelling(gate: threading.Event) -> None:
    @pyworkflowy.task(backend="thread")
    def cooperative() -> str:
        ctx = pyworkflowy.current_task()
        assert ctx is not None
        gate.wait(HANG_GUARD)
        return "stopped" if ctx.cancel_event.is_set() else "ran"

    runner = pyworkflowy.TaskRunner(on_task_error="continue")
    started = threading.Event()
    runner.subscribe(lambda e: started.set() if e.kind == "started" else None)
    h = runner.submit(cooperative)
    done = add.submit(1, runner=runner)
    future = runner.run_in_background()
    assert started.wait(HANG_GUARD)
    assert h.cancel() is True
    assert h.cancel() is False  # already cancelling: the body has not returned yet
    gate.set()
    future.result(HANG_GUARD)
    assert h.status is TaskStatus.CANCELLED
    assert h.cancel() is False and done.cancel() is False  # terminal
    runner.shutdown()


def test_handles_are_awaitable() -> None:
    async def main() -> tuple[int, BaseException | None]:
        runner = pyworkflowy.TaskRunner(on_task_error="continue")
        h = runner.submit(add, 4, 5)
        bad = runner.submit(fails)
        await runner.arun()
        try:
            await bad
        except ValueError as exc:
            caught: BaseException | None = exc
        else:
            caught = None
        runner.shutdown()
        return await h, caught

    value, caught = asyncio.run(main())
    assert value == 9 and isinstance(caught, ValueError)


def test_the_exception_view_pickles_as_the_error_itself() -> None:
    import pickle

    with pyworkflowy.TaskRunner(on_task_error="continue") as runner:
        bad = fails.submit()
        runner.run()
    copied = pickle.loads(pickle.dumps(bad.exception))
    assert type(copied) is ValueError and copied.args == ("broken",)
