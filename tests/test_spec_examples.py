"""Every code example of the engine spec, adapted minimally (local functions instead of HTTP,
tiny backoff bases instead of seconds), plus the errors table row by row."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import HANG_GUARD

from pyworkflowy_nb import (
    Task,
    TaskBase,
    TaskRunner,
    TaskStatus,
    current_task,
    task,
)
from pyworkflowy_nb.exceptions import (
    CheckpointError,
    CycleError,
    DependencyFailedError,
    RetryExhaustedError,
    TaskCancelledError,
    TaskError,
    TaskTimeoutError,
)

# -- Tasks: decorator form ---------------------------------------------------------------------


@task
def square(x: int) -> int:
    return x * x


@task(name="checkout", retries=3, timeout=10.0, backend="thread")
def checkout(cart_id: int) -> dict[str, Any]:
    return {"cart": cart_id, "paid": True}


def test_decorator_form() -> None:
    assert isinstance(square, Task) and isinstance(checkout, Task)
    assert (checkout.name, checkout.retries, checkout.timeout, checkout.backend) == (
        "checkout", 3, 10.0, "thread")
    with TaskRunner() as runner:
        handle = square.submit(5)
        h_checkout = checkout.submit(7)
        runner.run()
        assert handle.result() == 25
    assert h_checkout.result() == {"cart": 7, "paid": True}

    # direct call — no runner involved
    assert square(5) == 25


# -- Tasks: class form -------------------------------------------------------------------------

USERS = {42: {"id": 42, "name": "Ada"}}


def http_get_user(user_id: int) -> dict[str, Any]:
    """Stands in for ``http.get(f"/users/{user_id}").json()``."""
    return dict(USERS[user_id])


class FetchUser(TaskBase):
    name = "fetch-user"
    backend = "thread"
    retries = 2
    timeout = 5.0

    def run(self, user_id: int) -> dict[str, Any]:
        return http_get_user(user_id)


class AsyncFetchUser(TaskBase):
    name = "async-fetch-user"

    async def run(self, user_id: int) -> dict[str, Any]:  # type: ignore[override]
        await asyncio.sleep(0)
        return http_get_user(user_id)


def test_class_form() -> None:
    fetch_user = FetchUser()
    assert isinstance(fetch_user, Task)  # the same type the decorator produces
    with TaskRunner() as runner:
        handle = fetch_user.submit(42)
        a_handle = AsyncFetchUser().submit(42)
        runner.run()
    assert handle.result() == {"id": 42, "name": "Ada"}
    assert a_handle.result() == {"id": 42, "name": "Ada"}
    assert AsyncFetchUser().is_async and not fetch_user.is_async
    with pytest.raises(TypeError, match="no constructor"):
        FetchUser(42)  # type: ignore[call-arg]


def test_max_attempts_vs_retries() -> None:
    assert task(max_attempts=3)(lambda: None).retries == 2
    with pytest.raises(ValueError):
        task(max_attempts=3, retries=2)(lambda: None)


# -- Backends ----------------------------------------------------------------------------------

@task(backend="thread")
def cpu_bound(x: int) -> int:
    return sum(range(x))


@task(backend="process")
def heavy(x: int) -> int:
    return sum(i * i for i in range(x))


def test_backends_example() -> None:
    with TaskRunner() as runner:
        a = cpu_bound.submit(10)
        b = heavy.submit(10)
        runner.run()
    assert (a.result(), b.result()) == (45, 285)


def test_async_tasks_on_non_asyncio_backends_are_rejected_at_decoration() -> None:
    for backend in ("thread", "process"):
        with pytest.raises(ValueError, match="async"):
            @task(backend=backend)
            async def fetch() -> None:
                return None


# -- DAG ---------------------------------------------------------------------------------------

def test_dag_example(tmp_path: Path) -> None:
    db: list[dict[str, str]] = []
    rows: list[dict[str, str]] = []

    @task
    def load_csv(path: str) -> int:
        rows.extend({"name": f" n{i} "} for i in range(3))
        return len(rows)

    @task
    def clean_rows() -> int:
        for r in rows:
            r["name"] = r["name"].strip()
        return len(rows)

    @task
    def write_db() -> int:
        db.extend(rows)
        return len(db)

    with TaskRunner() as runner:
        h_load = load_csv.submit(str(tmp_path / "data.csv"))
        h_clean = clean_rows.submit(depends_on=[h_load])
        h_write = write_db.submit(depends_on=[h_clean])
        runner.run()
    assert h_write.result() == 3
    assert [r["name"] for r in db] == ["n0", "n1", "n2"]


# -- Retries / timeouts / cancellation ---------------------------------------------------------

class TransientError(Exception):
    pass


def test_retries_example() -> None:
    calls: list[str] = []

    @task(retries=3, backoff="exponential", backoff_base=0.001, backoff_max=30.0,
          retry_on=(TransientError,), timeout=15.0)
    def fetch(url: str) -> str:
        calls.append(url)
        if len(calls) < 3:
            raise TransientError("flaky network")
        return f"body of {url}"

    with TaskRunner() as runner:
        h = fetch.submit("https://example.invalid/")
        runner.run()
    assert h.result() == "body of https://example.invalid/"
    assert len(calls) == 3 and h.attempts == 3


def test_long_loop_example() -> None:
    started = threading.Event()
    done_chunks: list[int] = []

    def do_chunk(i: int) -> None:
        done_chunks.append(i)
        started.set()
        threading.Event().wait(0.001)

    @task(backend="thread")
    def long_loop(n: int) -> str | None:
        ctx = current_task()
        assert ctx is not None
        for i in range(n):
            if ctx.cancel_event.is_set():
                return "stopped early"
            do_chunk(i)
        return None

    with TaskRunner() as runner:
        h = long_loop.submit(1_000_000)
        future = runner.run_in_background()
        assert started.wait(HANG_GUARD)
        runner.cancel_all()  # sets the cancel flag on every non-terminal handle
        future.result(HANG_GUARD)
    assert h.status is TaskStatus.CANCELLED
    assert isinstance(h.exception, TaskCancelledError)
    assert h.exception.result == "stopped early"
    assert len(done_chunks) < 1_000_000


# -- Runner ------------------------------------------------------------------------------------

def test_runner_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the spec writes "state.json" in the working directory
    runner = TaskRunner(
        max_workers=8,
        backend="asyncio",           # default for tasks that don't specify
        on_task_error="raise",       # "raise" | "log" | "continue"
        checkpoint_path="state.json",
        checkpoint_interval=5.0,
    )
    with runner:
        h = square.submit(9)
        runner.run()
    assert h.result() == 81
    assert (tmp_path / "state.json").exists()


# -- Persistence / resume ----------------------------------------------------------------------

def test_persistence_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runs: list[int] = []

    @task(name="persisted")
    def persisted(x: int) -> int:
        runs.append(x)
        return x + 1

    with TaskRunner(checkpoint_path="state.json", checkpoint_interval=5.0) as runner:
        persisted.submit(1)
        persisted.submit(2)
        runner.run()

    runner = TaskRunner.resume("state.json")
    # Re-submit the same tasks; previously-completed ones get their results primed.
    h2 = runner.submit(persisted, 2)
    h1 = runner.submit(persisted, 1)
    runner.run()
    runner.shutdown()
    assert runs == [1, 2]
    assert h1.restored and h2.restored and (h1.result(), h2.result()) == (2, 3)


# -- Async -------------------------------------------------------------------------------------

@task
async def fetch_async(url: str) -> dict[str, str]:
    await asyncio.sleep(0)  # stands in for an httpx round trip
    return {"url": url}


@pytest.mark.anyio
async def test_async_example() -> None:
    runner = TaskRunner()
    h = runner.submit(fetch_async, "https://example.com")
    await runner.arun()
    assert await h == {"url": "https://example.com"}   # handles are awaitable
    runner.shutdown()


def test_sync_handles_block_with_result_timeout() -> None:
    with TaskRunner() as runner:
        h = runner.submit(fetch_async, "u")
        runner.run()
    assert h.result(timeout=HANG_GUARD) == {"url": "u"}


# -- the errors table ---------------------------------------------------------------------------

def test_task_error_catches_every_engine_error() -> None:
    for cls in (TaskTimeoutError, TaskCancelledError, CycleError, DependencyFailedError,
                RetryExhaustedError, CheckpointError):
        assert issubclass(cls, TaskError)


def test_errors_table_each_raised_in_its_situation(tmp_path: Path) -> None:
    @task(timeout=0.01)
    async def too_slow() -> None:
        await asyncio.sleep(HANG_GUARD)

    @task(retries=1, backoff="none")
    def always_fails() -> None:
        raise TransientError("down")

    with TaskRunner(on_task_error="continue") as runner:
        timed_out = too_slow.submit()
        cancelled = square.submit(1)
        cancelled.cancel()
        exhausted = always_fails.submit()
        dep_failed = square.submit(2, depends_on=[exhausted])
        a = square.submit(3)
        b = square.submit(4, depends_on=[a])
        with pytest.raises(CycleError):
            runner.add_dependency(a, b)
        runner.run()
    assert isinstance(timed_out.exception, TaskTimeoutError)
    assert isinstance(cancelled.exception, TaskCancelledError)
    assert isinstance(exhausted.exception, RetryExhaustedError)
    assert isinstance(exhausted.exception.__cause__, TransientError)
    assert isinstance(dep_failed.exception, DependencyFailedError)
    with TaskRunner(checkpoint_path=tmp_path / "s.json") as runner, \
            pytest.raises(CheckpointError):
        runner.submit(square, object())
    for h in (timed_out, cancelled, exhausted, dep_failed):
        with pytest.raises(TaskError):
            h.result()


def test_current_task_exposes_name_attempt_and_cancel_event() -> None:
    seen: list[tuple[str, int, bool]] = []

    @task(name="introspective", retries=1, backoff="none")
    def introspective() -> None:
        ctx = current_task()
        assert ctx is not None
        seen.append((ctx.name, ctx.attempt, ctx.cancel_event.is_set()))
        if ctx.attempt == 1:
            raise TransientError("again")

    with TaskRunner() as runner:
        introspective.submit()
        runner.run()
    assert seen == [("introspective", 1, False), ("introspective", 2, False)]


def test_process_backend_notes() -> None:
    from engine_helpers import process_context_is_none, process_square

    with TaskRunner() as runner:
        ctx_none = process_context_is_none.submit()
        sq = process_square.submit(12)
        runner.run()
    assert ctx_none.result() is True  # separate interpreter: no current task
    assert sq.result() == 144
    with pytest.raises(ValueError, match="top-level"):
        task(backend="process")(lambda x: x)
