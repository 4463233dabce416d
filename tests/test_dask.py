"""The 'dask' lane: attempts sent to a dask.distributed cluster via ``TaskRunner(executors=...)``.

One small real cluster (two single-threaded worker processes) serves the whole module. Work on
the workers talks to the test through marker files in ``tmp_path``: a body announces that it
started by creating a file, and blocks until the test creates a "release" file. Every wait has
a hang guard only; nothing here measures time.

Functions the workers run either live at this module's top level (Dask pickles them by value or
by reference, both work) or are built in the test body (lambdas, closures, functions from a
``__main__``-like namespace), which is exactly what the lane promises to carry by value.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import HANG_GUARD, wait_until

from pyworkflowy_nb import (
    JSONCheckpointer,
    TaskEvent,
    TaskRunner,
    TaskStatus,
    current_task,
    task,
)
from pyworkflowy_nb.exceptions import (
    DependencyFailedError,
    TaskCancelledError,
    TaskTimeoutError,
)

distributed = pytest.importorskip("distributed")
np = pytest.importorskip("numpy")

pytestmark = pytest.mark.timeout(180)

# The cluster's worker processes compete with the test for two cores: twice the usual guard.
WORKER_GUARD = 2 * HANG_GUARD


# -- the cluster --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    # silence_logs: workers log every failing task at ERROR level, and several tests fail on
    # purpose; CRITICAL keeps the test output readable.
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        silence_logs=logging.CRITICAL)
    dask_client = distributed.Client(cluster)
    try:
        yield dask_client
    finally:
        dask_client.close()
        cluster.close()


@pytest.fixture
def dask_ex(client: Any) -> Executor:
    # pure=False: every attempt is a new computation. With Dask's default (pure=True) two
    # submissions of the same call share one result, and a retry gets the cached failure.
    executor: Executor = client.get_executor(pure=False)
    return executor


# -- helpers, run in the test process -------------------------------------------------------------

@contextmanager
def released(folder: Path, name: str = "release") -> Iterator[Path]:
    """Yield the release file's path and create it on the way out, so that a body blocked
    on it never keeps a worker busy after the test, whatever the test's outcome."""
    path = folder / name
    try:
        yield path
    finally:
        path.touch()


# -- bodies, run on the workers -----------------------------------------------------------------

def wait_for_file(path: str) -> None:
    deadline = time.monotonic() + WORKER_GUARD
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.005)


def blocker(folder: str, name: str) -> str:
    """Announce the start, wait for the release file, announce the end."""
    Path(folder, f"in-{name}").touch()
    wait_for_file(os.path.join(folder, "release"))
    Path(folder, f"out-{name}").touch()
    return name


def touch_and_return(folder: str, name: str) -> str:
    Path(folder, f"ran-{name}").touch()
    return name


def gated(folder: str, name: str) -> int:
    """Enter (one file in inside/), note how many bodies are inside, wait for release/<name>."""
    inside = Path(folder, "inside")
    (inside / name).touch()
    count = len(os.listdir(inside))
    wait_for_file(os.path.join(folder, "release", name))
    (inside / name).unlink()
    return count


def meet(folder: str, name: str, expected: int) -> int:
    """Enter, then wait until ``expected`` bodies are inside at the same time."""
    inside = Path(folder, "inside")
    (inside / name).touch()
    deadline = time.monotonic() + WORKER_GUARD
    while len(os.listdir(inside)) < expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name}: the others never arrived")
        time.sleep(0.005)
    return os.getpid()


@task(name="flaky_fetch", backend="dask", retries=2, backoff="none")
def flaky_fetch(folder: str) -> int:
    """Fails on its first attempt only; attempts are counted by files, across processes."""
    Path(folder, f"attempt-{uuid.uuid4().hex}").touch()
    attempts = len(os.listdir(folder))
    if attempts == 1:
        raise ConnectionError("the first attempt always fails")
    return attempts


@task(name="square_logged", backend="dask")
def square_logged(folder: str, x: int) -> int:
    Path(folder, f"ran-{x}-{uuid.uuid4().hex}").touch()
    return x * x


@task(name="gate", backend="dask")
def gate(folder: str) -> str:
    if not os.path.exists(os.path.join(folder, "allow")):
        raise PermissionError("the gate is closed")
    Path(folder, f"gate-ran-{uuid.uuid4().hex}").touch()
    return "open"


def read_staged(folder: str, i: int) -> tuple[int, int]:
    """Reads the file a thread-lane parent wrote: it only exists if the parent finished."""
    values = [int(v) for v in Path(folder, "staged.txt").read_text().split(",")]
    return values[i] * 10, os.getpid()


def chunk_stats(chunk: Any) -> Any:
    return np.array([chunk.sum(), chunk.min(), chunk.max(), (chunk ** 2).mean()])


def whoami() -> tuple[bool, int]:
    return current_task() is None, os.getpid()


# -- the lane runs tasks ------------------------------------------------------------------------

def test_dag_mixes_asyncio_thread_and_dask_lanes_in_dependency_order(
        tmp_path: Path, dask_ex: Executor) -> None:
    events: list[tuple[str, str]] = []

    @task(name="fetch")
    async def fetch(n: int) -> list[int]:
        await asyncio.sleep(0)
        return list(range(1, n + 1))

    @task(name="stage", backend="thread")
    def stage() -> int:
        values = fetched.result()
        Path(tmp_path, "staged.txt").write_text(",".join(map(str, values)))
        return len(values)

    crunch = task(name="crunch", backend="dask")(read_staged)

    @task(name="total")
    async def total() -> int:
        return sum(h.result()[0] for h in crunched)

    def listen(event: TaskEvent) -> None:
        if event.handle is not None:
            events.append((event.kind, event.handle.key))

    with TaskRunner(executors={"dask": dask_ex}) as runner:
        runner.subscribe(listen)
        fetched = fetch.submit(4)
        staged = stage.submit(depends_on=[fetched])
        crunched = [crunch.submit(str(tmp_path), i, depends_on=[staged]) for i in range(4)]
        summed = total.submit(depends_on=crunched)
        results = runner.run()

    assert results.ok
    assert summed.result() == 100
    assert [h.result()[0] for h in crunched] == [10, 20, 30, 40]
    assert all(h.result()[1] != os.getpid() for h in crunched), "dask tasks ran in this process"
    assert [fetched.backend, staged.backend, summed.backend] == ["asyncio", "thread", "asyncio"]
    assert {h.backend for h in crunched} == {"dask"}
    # Every child started only after each of its parents completed.
    for child in [staged, *crunched, summed]:
        started = events.index(("started", child.key))
        for parent in child.parents:
            assert events.index(("completed", parent.key)) < started, (child.key, parent.key)


def test_lambda_closure_and_main_namespace_function_travel_by_value(dask_ex: Executor) -> None:
    # What a notebook cell defines: a function whose module is __main__, and one from a module
    # the workers could never import; neither can be imported by name on a worker.
    main_ns: dict[str, Any] = {"__name__": "__main__"}
    exec("def cell_fn(x):\n    return [x, x ** 2, 'from a cell']\n", main_ns)
    orphan_ns: dict[str, Any] = {"__name__": "wfy_cell_module_that_does_not_exist"}
    exec("def orphan_fn(x, *, sep):\n    return sep.join([str(x)] * 3)\n", orphan_ns)
    offset = 7
    calls: list[tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]] = [
        (lambda x: x * 3, (5,), {}),
        (lambda x: x + offset, (5,), {}),  # a closure: the captured value travels too
        (main_ns["cell_fn"], (4,), {}),
        (orphan_ns["orphan_fn"], (2,), {"sep": "-"}),
    ]

    def run_on(backend: str, executors: dict[str, Executor]) -> list[Any]:
        runner = TaskRunner(backend=backend, executors=executors)
        handles = [runner.submit(fn, *args, **kwargs) for fn, args, kwargs in calls]
        assert runner.run().ok
        runner.shutdown()
        assert {h.backend for h in handles} == {backend}
        return [h.result() for h in handles]

    remote = run_on("dask", {"dask": dask_ex})
    local = run_on("asyncio", {})
    assert remote == local == [15, 12, [4, 16, "from a cell"], "2-2-2"]
    # The process lane, by contrast, imports tasks by name and refuses these.
    with pytest.raises(ValueError, match="top-level"):
        TaskRunner(backend="process").submit(lambda x: x, 1)


def test_numpy_arguments_and_results_match_local_execution(dask_ex: Executor) -> None:
    rng = np.random.default_rng(12345)
    chunks = [rng.normal(size=1_000) for _ in range(3)]
    stats = task(name="chunk_stats", backend="dask")(chunk_stats)

    runner = TaskRunner(executors={"dask": dask_ex})
    handles = [runner.submit(stats, c) for c in chunks]
    assert runner.run().ok
    for chunk, h in zip(chunks, handles, strict=True):
        assert isinstance(h.result(), np.ndarray)
        np.testing.assert_array_equal(h.result(), chunk_stats(chunk))


# -- failures -------------------------------------------------------------------------------------

def test_retry_on_the_dask_lane_runs_the_body_again(tmp_path: Path, dask_ex: Executor) -> None:
    kinds: list[str] = []
    runner = TaskRunner(executors={"dask": dask_ex})
    runner.subscribe(lambda e: kinds.append(e.kind))
    h = runner.submit(flaky_fetch, str(tmp_path))
    assert runner.run().ok
    assert h.status is TaskStatus.COMPLETED
    assert h.attempts == 2
    assert h.result() == 2
    assert len(list(tmp_path.glob("attempt-*"))) == 2, "the retry did not reach a worker"
    assert kinds.count("retrying") == 1


def test_timeout_on_the_dask_lane_stops_waiting(tmp_path: Path, dask_ex: Executor) -> None:
    slow = task(name="slow", backend="dask", timeout=0.3, retries=2)(blocker)
    runner = TaskRunner(executors={"dask": dask_ex}, on_task_error="continue")
    with released(tmp_path):
        h = runner.submit(slow, str(tmp_path), "slow")
        results = runner.run()
        # The run is over while the body is still blocked on the worker: the runner stopped
        # waiting for it rather than interrupting it.
        assert not (tmp_path / "out-slow").exists()
    assert not results.ok
    assert h.status is TaskStatus.FAILED
    assert isinstance(h.exception, TaskTimeoutError)
    assert "timeout" in str(h.exception)
    assert h.attempts == 1, "timeouts are not retried"
    wait_until((tmp_path / "out-slow").exists, "the released body to finish", WORKER_GUARD)


def test_dependency_policies_after_a_failing_dask_task(tmp_path: Path, dask_ex: Executor) -> None:
    @task(name="bad_chunk", backend="dask")
    def bad_chunk(i: int) -> int:
        raise ValueError(f"chunk {i} is corrupt")

    @task(name="after_fail", backend="dask")
    def after_fail() -> str:
        return "ran"

    after_skip = task(name="after_skip", backend="dask", on_dep_failure="skip")(after_fail.fn)
    after_anyway = task(name="after_anyway", backend="dask",
                        on_dep_failure="run-anyway")(touch_and_return)

    runner = TaskRunner(executors={"dask": dask_ex}, on_task_error="continue")
    bad = runner.submit(bad_chunk, 3)
    failed = runner.submit(after_fail, depends_on=[bad])
    grandchild = runner.submit(after_fail, task_key="grandchild", depends_on=[failed])
    skipped = runner.submit(after_skip, depends_on=[bad])
    anyway = runner.submit(after_anyway, str(tmp_path), "anyway", depends_on=[bad])
    results = runner.run()

    assert not results.ok
    assert bad.status is TaskStatus.FAILED
    assert type(bad.exception()) is ValueError  # the task's own error, unwrapped by the lane
    assert str(bad.exception) == "chunk 3 is corrupt"
    assert failed.status is TaskStatus.FAILED
    assert isinstance(failed.exception, DependencyFailedError)
    assert failed.exception.dependency == bad.key
    assert grandchild.status is TaskStatus.FAILED
    assert skipped.status is TaskStatus.SKIPPED
    assert anyway.status is TaskStatus.COMPLETED and anyway.result() == "anyway"
    assert (tmp_path / "ran-anyway").exists()
    assert failed.attempts == skipped.attempts == 0
    assert sorted(r.key for r in results.failed) == sorted([bad.key, failed.key, "grandchild"])

    # With the default on_task_error="raise", run() raises the worker's exception itself.
    strict = TaskRunner(executors={"dask": dask_ex})
    strict.submit(bad_chunk, 4)
    with pytest.raises(ValueError, match="chunk 4 is corrupt"):
        strict.run()


# -- cancellation and capacity ---------------------------------------------------------------------

def test_cancel_of_a_dask_task_that_has_not_started(tmp_path: Path, dask_ex: Executor) -> None:
    runner = TaskRunner(max_workers=1, backend="dask", executors={"dask": dask_ex})
    with released(tmp_path) as release:
        first = runner.submit(blocker, str(tmp_path), "first")
        second = runner.submit(touch_and_return, str(tmp_path), "second")
        future = runner.run_in_background()
        wait_until((tmp_path / "in-first").exists, "the first task to start on a worker",
                   WORKER_GUARD)
        assert second.status is TaskStatus.READY  # the only slot is taken
        assert second.cancel() is True
        assert second.status is TaskStatus.CANCELLED
        release.touch()
        results = future.result(timeout=WORKER_GUARD)
    assert first.status is TaskStatus.COMPLETED and first.result() == "first"
    assert isinstance(second.exception, TaskCancelledError)
    assert second.attempts == 0
    assert not (tmp_path / "ran-second").exists(), "a cancelled task reached a worker"
    assert [r.key for r in results.values() if r.status is TaskStatus.CANCELLED] == [second.key]


def test_cancel_of_a_running_dask_attempt_settles_at_once(
        tmp_path: Path, dask_ex: Executor) -> None:
    runner = TaskRunner(backend="dask", executors={"dask": dask_ex}, on_task_error="continue")
    with released(tmp_path):
        h = runner.submit(blocker, str(tmp_path), "running")
        future = runner.run_in_background()
        wait_until((tmp_path / "in-running").exists, "the body to start on a worker", WORKER_GUARD)
        assert h.status is TaskStatus.RUNNING
        assert h.cancel() is True
        # Settled without waiting for the worker: the body is still blocked.
        assert h.status is TaskStatus.CANCELLED
        with pytest.raises(TaskCancelledError):
            h.result(timeout=WORKER_GUARD)
        future.result(timeout=WORKER_GUARD)
        assert not (tmp_path / "out-running").exists()
    wait_until((tmp_path / "out-running").exists, "the released body to finish", WORKER_GUARD)


def test_max_workers_bounds_concurrent_dask_attempts(tmp_path: Path, dask_ex: Executor) -> None:
    (tmp_path / "inside").mkdir()
    (tmp_path / "release").mkdir()
    runner = TaskRunner(max_workers=1, backend="dask", executors={"dask": dask_ex})
    handles = [runner.submit(gated, str(tmp_path), f"g{i}") for i in range(3)]
    future = runner.run_in_background()
    try:
        for _ in handles:
            wait_until(lambda: len(os.listdir(tmp_path / "inside")) == 1, "a body to enter",
                       WORKER_GUARD)
            (name,) = os.listdir(tmp_path / "inside")
            # The cluster has two idle workers, yet only one attempt is out at a time.
            running = [h for h in handles if h.status is TaskStatus.RUNNING]
            assert [h.args[1] for h in running] == [name]
            (tmp_path / "release" / name).touch()
            (entered,) = running
            wait_until(entered.done, f"{name} to complete", WORKER_GUARD)
        results = future.result(timeout=WORKER_GUARD)
    finally:
        for i in range(3):
            (tmp_path / "release" / f"g{i}").touch()
    assert results.ok
    assert [h.result() for h in handles] == [1, 1, 1], "a body saw another one inside"


def test_without_max_workers_dask_attempts_overlap(
        tmp_path: Path, client: Any, dask_ex: Executor) -> None:
    # The counterpart of the test above: unbounded, both workers hold a body at the same time
    # (each body waits until it sees the other), so the marker counting can see overlap.
    # Start from an idle cluster, so Dask places one body on each worker.
    wait_until(lambda: not any(client.processing().values()), "the workers to be idle",
               WORKER_GUARD)
    (tmp_path / "inside").mkdir()
    runner = TaskRunner(backend="dask", executors={"dask": dask_ex})
    handles = [runner.submit(meet, str(tmp_path), f"m{i}", 2) for i in range(2)]
    assert runner.run().ok
    assert len({h.result() for h in handles}) == 2, "both bodies ran in the same worker"


def test_current_task_is_none_on_a_dask_worker(dask_ex: Executor) -> None:
    @task(name="local_probe", backend="thread")
    def local_probe() -> str | None:
        ctx = current_task()
        return None if ctx is None else ctx.key

    runner = TaskRunner(executors={"dask": dask_ex})
    remote = runner.submit(task(name="remote_probe", backend="dask")(whoami))
    local = runner.submit(local_probe)
    assert runner.run().ok
    is_none, pid = remote.result()
    assert is_none is True
    assert pid != os.getpid()
    assert local.result() == "local_probe"  # the thread lane does bind it


# -- wiring, bad input and ownership ------------------------------------------------------------

def test_bad_dask_wiring_is_rejected_with_the_fix(dask_ex: Executor) -> None:
    with pytest.raises(ValueError, match=r"executors=.*'dask'"):
        TaskRunner(backend="dask")
    with pytest.raises(ValueError, match=r"asyncio backend .* takes no executor"):
        TaskRunner(executors={"asyncio": dask_ex})
    with pytest.raises(TypeError, match=r"executors\['dask'\] must be a concurrent.futures"):
        TaskRunner(executors={"dask": "tcp://127.0.0.1:8786"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="did you mean 'dask'"):
        TaskRunner(executors={"dsak": dask_ex})

    remote = task(name="remote", backend="dask")(lambda: 1)
    with pytest.raises(ValueError, match=r"'remote' wants the 'dask' backend.*executors="):
        TaskRunner().submit(remote)

    with pytest.raises(ValueError, match="async task 'fetch' cannot run on the 'dask'"):
        @task(name="fetch", backend="dask")
        async def fetch() -> int:
            return 1

    async def plain_async() -> int:
        return 1

    # A plain async callable on a runner whose default lane is dask is refused at submit().
    with pytest.raises(ValueError, match="cannot run on the 'dask' backend"):
        TaskRunner(backend="dask", executors={"dask": dask_ex}).submit(plain_async)


def test_shutdown_leaves_the_users_client_open(client: Any, dask_ex: Executor) -> None:
    with TaskRunner(backend="dask", executors={"dask": dask_ex}) as runner:
        h = runner.submit(lambda: "first")
        runner.run()
    runner.shutdown()
    runner.shutdown(wait=False)
    assert h.result() == "first"
    assert client.status == "running"
    assert client.submit(pow, 2, 5).result(timeout=WORKER_GUARD) == 32
    assert dask_ex.submit(pow, 3, 2).result(timeout=WORKER_GUARD) == 9
    # The same executor serves the next runner as well.
    again = TaskRunner(backend="dask", executors={"dask": dask_ex})
    h2 = again.submit(lambda: "second")
    assert again.run().ok and h2.result() == "second"


def test_checkpoint_resume_primes_completed_dask_tasks(tmp_path: Path, dask_ex: Executor) -> None:
    work = tmp_path / "work"
    work.mkdir()
    ckpt = tmp_path / "run.json"

    @task(name="report")
    def report() -> str:
        return f"{sum(h.result() for h in squares)} {opened.result()}"

    def submit_all(runner: TaskRunner) -> tuple[list[Any], Any, Any]:
        squares = [runner.submit(square_logged, str(work), x) for x in range(4)]
        opened = runner.submit(gate, str(work))
        summary = runner.submit(report, depends_on=[*squares, opened])
        return squares, opened, summary

    first = TaskRunner(executors={"dask": dask_ex}, on_task_error="continue",
                       checkpointer=JSONCheckpointer(ckpt))
    squares, opened, summary = submit_all(first)
    first.run()
    first.shutdown()
    assert [h.status for h in squares] == [TaskStatus.COMPLETED] * 4
    assert opened.status is TaskStatus.FAILED and summary.status is TaskStatus.FAILED
    assert len(list(work.glob("ran-*"))) == 4

    (work / "allow").touch()
    second = TaskRunner.resume(ckpt, executors={"dask": dask_ex}, on_task_error="continue")
    squares, opened, summary = submit_all(second)
    assert second.run().ok
    second.shutdown()
    assert all(h.restored and h.status is TaskStatus.COMPLETED for h in squares)
    assert [h.result() for h in squares] == [0, 1, 4, 9]
    assert len(list(work.glob("ran-*"))) == 4, "a completed dask task ran again"
    assert not opened.restored and opened.result() == "open"
    assert len(list(work.glob("gate-ran-*"))) == 1
    assert summary.result() == "14 open"


def test_a_cancelled_running_attempt_keeps_its_slot_until_the_body_ends(
        tmp_path: Path, dask_ex: Executor) -> None:
    # Dask's futures never report "running", so cancelling one would always "succeed"; the
    # slot must stay taken while the body still runs, or max_workers would be exceeded.
    runner = TaskRunner(max_workers=1, backend="dask", executors={"dask": dask_ex},
                        on_task_error="continue")
    with released(tmp_path):
        first = runner.submit(blocker, str(tmp_path), "first")
        second = runner.submit(touch_and_return, str(tmp_path), "second")
        future = runner.run_in_background()
        wait_until((tmp_path / "in-first").exists, "the first body to start", WORKER_GUARD)
        assert first.cancel() is True
        assert first.status is TaskStatus.CANCELLED
        # Cancelling a concurrent future runs its callbacks at once, so a slot given back on
        # cancel would already show here.
        assert runner._dispatch.inflight["dask"] == 1
        assert second.status is TaskStatus.READY  # no slot while the first body runs
        assert not (tmp_path / "ran-second").exists()
    future.result(timeout=WORKER_GUARD)
    assert second.result() == "second"
    assert (tmp_path / "out-first").exists()  # the slot came back only after the body ended


def test_the_dask_lane_keeps_more_attempts_out_than_the_cluster_has_threads(
        client: Any, dask_ex: Executor) -> None:
    # One attempt per thread would leave each thread idle for a round trip between tasks, so
    # the lane keeps several per thread in flight; only a max_workers the user chose bounds it
    # (the default 8 bounds the local lanes; the cluster never runs more than its threads).
    threads = sum(client.nthreads().values())
    default = TaskRunner(executors={"dask": dask_ex})._dispatch
    assert default.caps["dask"] == 4 * threads
    assert not default.counted["dask"] and default.counted["thread"]
    assert TaskRunner(max_workers=None, executors={"dask": dask_ex})._dispatch.caps["dask"] == \
        4 * threads
    assert TaskRunner(max_workers=1, executors={"dask": dask_ex})._dispatch.caps["dask"] == 1
    assert TaskRunner(max_workers=3, executors={"dask": dask_ex})._dispatch.caps["dask"] == 3
    assert TaskRunner(max_workers=8, executors={"dask": dask_ex})._dispatch.counted["dask"]
    # Attempts with a timeout are held to one per thread (see the test below).
    assert default.sizes["dask"] == threads


def test_queued_attempts_are_already_out_while_every_thread_is_busy(
        tmp_path: Path, client: Any, dask_ex: Executor) -> None:
    threads = sum(client.nthreads().values())
    wait_until(lambda: not any(client.processing().values()), "the workers to be idle",
               WORKER_GUARD)
    runner = TaskRunner(backend="dask", executors={"dask": dask_ex})
    with released(tmp_path):
        hs = [runner.submit(blocker, str(tmp_path), f"b{i}") for i in range(3 * threads)]
        future = runner.run_in_background()
        wait_until(lambda: len(list(tmp_path.glob("in-*"))) == threads,
                   "every worker thread to hold a body", WORKER_GUARD)
        # The next attempts wait at Dask's scheduler, not behind a round trip through us.
        assert runner._dispatch.inflight["dask"] == 3 * threads
        assert all(h.status is TaskStatus.RUNNING for h in hs)
    assert future.result(timeout=WORKER_GUARD).ok
    assert sorted(h.result() for h in hs) == sorted(f"b{i}" for i in range(3 * threads))


def test_an_attempt_with_a_timeout_waits_for_a_free_thread(
        tmp_path: Path, client: Any, dask_ex: Executor) -> None:
    # Its clock starts when it goes out: queued inside Dask it would tick before the body runs.
    threads = sum(client.nthreads().values())
    wait_until(lambda: not any(client.processing().values()), "the workers to be idle",
               WORKER_GUARD)
    timed = task(name="timed_touch", backend="dask", timeout=WORKER_GUARD)(touch_and_return)
    runner = TaskRunner(backend="dask", executors={"dask": dask_ex})
    with released(tmp_path) as release:
        busy = [runner.submit(blocker, str(tmp_path), f"b{i}") for i in range(threads)]
        h = runner.submit(timed, str(tmp_path), "timed")
        future = runner.run_in_background()
        wait_until(lambda: len(list(tmp_path.glob("in-*"))) == threads,
                   "every worker thread to hold a body", WORKER_GUARD)
        assert h.status is TaskStatus.READY
        assert runner._dispatch.inflight["dask"] == threads
        release.touch()
        assert future.result(timeout=WORKER_GUARD).ok
    assert h.result() == "timed" and all(b.done() for b in busy)


def test_a_pure_dask_executor_is_refused(client: Any) -> None:
    with pytest.raises(ValueError, match=r"pure=True.*get_executor\(pure=False\)"):
        TaskRunner(executors={"dask": client.get_executor()})


def test_handles_cannot_travel_to_a_worker(dask_ex: Executor) -> None:
    import pickle

    runner = TaskRunner(executors={"dask": dask_ex})
    h = runner.submit(touch_and_return, "/nonexistent", "x")
    with pytest.raises(TypeError, match=r"cannot be pickled.*handle.result\(\)"):
        pickle.dumps(h)
