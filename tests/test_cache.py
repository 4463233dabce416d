"""The result cache: hits and misses, TTL, eviction, disk sharing, signatures, dedup."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import HANG_GUARD

from pyworkflowy_nb import TaskRunner, TaskStatus, task
from pyworkflowy_nb._cache import DiskStore, MemoryStore, code_fingerprint

pytestmark = [pytest.mark.usefixtures("key_file"), pytest.mark.timeout(120)]
ROOT = Path(__file__).resolve().parents[1]
CALLS: list[Any] = []


@task(cache=True)
def square(x: int) -> int:
    CALLS.append(x)
    return x * x


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run_square(store: Any, *xs: int) -> list[Any]:
    with TaskRunner(cache=store) as runner:
        hs = [square.submit(x) for x in xs]
        runner.run()
    return hs


def test_second_run_hits_and_does_not_call() -> None:
    CALLS.clear()
    store = MemoryStore()
    (first,) = run_square(store, 3)
    (second,) = run_square(store, 3)
    (other,) = run_square(store, 4)
    assert CALLS == [3, 4]
    assert (first.cached, second.cached, other.cached) == (False, True, False)
    assert second.result() == 9 and second.status is TaskStatus.COMPLETED
    assert second.get_result().cached and second.attempts == 0


def test_a_hit_emits_a_cached_event() -> None:
    store = MemoryStore()
    run_square(store, 5)
    kinds: list[str] = []
    with TaskRunner(cache=store) as runner:
        runner.subscribe(lambda e: kinds.append(e.kind))
        square.submit(5)
        runner.run()
    assert "cached" in kinds and "started" not in kinds


def test_cache_false_on_the_runner_ignores_the_option() -> None:
    CALLS.clear()
    run_square(False, 7)
    run_square(False, 7)
    assert CALLS == [7, 7]


def test_ttl_expires_with_the_store_s_clock() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock)

    @task(cache=True, cache_ttl=60)
    def stamp(x: int) -> int:
        CALLS.append(("stamp", x))
        return x

    CALLS.clear()
    for advance in (0, 59, 2):
        clock.now += advance
        with TaskRunner(cache=store) as runner:
            stamp.submit(1)
            runner.run()
    assert CALLS == [("stamp", 1), ("stamp", 1)]  # the 59 s run hit, the 61 s run missed


def test_memory_store_evicts_least_recently_used() -> None:
    store = MemoryStore(max_entries=2)
    store.put("a", 1, None)
    store.put("b", 2, None)
    assert store.get("a") == 1  # a is now more recent than b
    store.put("c", 3, None)
    assert store.get("b") is store.MISS
    assert (store.get("a"), store.get("c")) == (1, 3)


def test_disk_store_evicts_by_last_use(tmp_path: Path) -> None:
    clock = Clock()
    store = DiskStore(tmp_path / "c.sqlite", max_bytes=3000, clock=clock)
    for name in "abc":
        clock.now += 1
        store.put(name, b"x" * 900, None)
    clock.now += 1
    assert store.get("a") == b"x" * 900  # refreshes a
    clock.now += 1
    store.put("d", b"x" * 900, None)
    assert store.get("b") is store.MISS
    assert set(store.keys()) == {"a", "c", "d"}


def test_disk_store_ttl(tmp_path: Path) -> None:
    clock = Clock()
    store = DiskStore(tmp_path / "c.sqlite", clock=clock)
    store.put("k", [1], 10.0)
    clock.now += 9.5
    assert store.get("k") == [1]
    clock.now += 1
    assert store.get("k") is store.MISS


class Marker:
    """Unpickling this writes a file: proof that a payload was (or was not) unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (Path(self.path).touch, ())


def test_tampered_entry_is_refused_without_unpickling(tmp_path: Path) -> None:
    import pickle

    db_path = tmp_path / "c.sqlite"
    store = DiskStore(db_path)
    store.put("k", "honest", None)
    marker = tmp_path / "unpickled"
    evil = pickle.dumps(Marker(str(marker)))
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE entries SET value = ? WHERE key = 'k'", (evil,))
    assert store.get("k") is store.MISS
    assert not marker.exists()
    assert "k" not in list(store.keys())  # the bad row is gone


def test_two_processes_share_a_disk_store(tmp_path: Path) -> None:
    db_path = tmp_path / "shared.sqlite"
    script = textwrap.dedent(f"""
        import json
        from pyworkflowy_nb import TaskRunner, task
        from pyworkflowy_nb._cache import DiskStore
        calls = []
        @task(cache=True, name="shared-square")
        def sq(x):
            calls.append(x)
            return x * x
        with TaskRunner(cache=DiskStore({str(db_path)!r})) as runner:
            h = sq.submit(12)
            runner.run()
        print(json.dumps([h.result(), h.cached, calls]))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run() -> list[Any]:
        out = subprocess.run([sys.executable, "-c", script], env=env, timeout=120,
                             check=True, capture_output=True, text=True)
        got: list[Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return got

    assert run() == [144, False, [12]]
    assert run() == [144, True, []]


def test_changed_body_is_a_different_key() -> None:
    source = "def f(x):\n    return x + {n}\n"
    namespace_a: dict[str, Any] = {}
    namespace_b: dict[str, Any] = {}
    namespace_c: dict[str, Any] = {}
    exec(compile(source.format(n=1), "/tmp/cell-1.py", "exec"), namespace_a)
    exec(compile("\n\n" + source.format(n=1), "/tmp/cell-2.py", "exec"), namespace_c)
    exec(compile(source.format(n=2), "/tmp/cell-1.py", "exec"), namespace_b)
    a, b, c = namespace_a["f"], namespace_b["f"], namespace_c["f"]
    assert code_fingerprint(a) != code_fingerprint(b)
    assert code_fingerprint(a) == code_fingerprint(c)  # other file and line: same code

    store = MemoryStore()
    results = []
    for fn in (a, c, b):
        with TaskRunner(cache=store) as runner:
            h = runner.submit(task(cache=True, name="cell-f")(fn), 10)
            runner.run()
        results.append((h.result(), h.cached))
    assert results == [(11, False), (11, True), (12, False)]


def test_cache_key_fn_decides_the_key() -> None:
    store = MemoryStore()
    seen: list[Any] = []

    @task(cache=True, cache_key_fn=lambda fn, args, kwargs: str(args[0] % 10))
    def last_digit(x: int) -> int:
        seen.append(x)
        return x % 10

    with TaskRunner(cache=store) as runner:
        a = last_digit.submit(13)
        runner.run()
    with TaskRunner(cache=store) as runner:
        b = last_digit.submit(23)
        runner.run()
    assert seen == [13] and b.cached and b.result() == 3 and not a.cached


def test_identical_calls_in_flight_run_once() -> None:
    started = threading.Event()
    release = threading.Event()
    ran: list[int] = []

    @task(cache=True, backend="thread")
    def slow(x: int) -> int:
        ran.append(x)
        started.set()
        assert release.wait(HANG_GUARD)
        return x + 1

    with TaskRunner(cache=MemoryStore(), max_workers=4) as runner:
        hs = [slow.submit(1) for _ in range(3)]
        future = runner.run_in_background()
        assert started.wait(HANG_GUARD)
        release.set()
        future.result(timeout=HANG_GUARD)
    assert ran == [1]
    assert [h.result() for h in hs] == [2, 2, 2]
    assert sorted(h.cached for h in hs) == [False, True, True]


def test_a_failed_owner_lets_the_waiting_calls_run() -> None:
    attempts: list[int] = []

    @task(cache=True)
    async def flaky(x: int) -> int:
        attempts.append(x)
        if len(attempts) == 1:
            raise ValueError("first fails")
        return x

    with TaskRunner(cache=MemoryStore(), on_task_error="continue") as runner:
        hs = [flaky.submit(1) for _ in range(2)]
        runner.run()
    assert [h.status for h in hs] == [TaskStatus.FAILED, TaskStatus.COMPLETED]
    assert len(attempts) == 2


def test_handle_arguments_key_by_value() -> None:
    CALLS.clear()
    store = MemoryStore()

    @task
    def three() -> int:
        return 3

    for _ in range(2):
        with TaskRunner(cache=store) as runner:
            h = square.submit(three.submit())
            runner.run()
    assert h.cached and h.result() == 9 and CALLS == [3]


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="need cache=True"):
        task(cache_ttl=5)(lambda: 1)
    with pytest.raises(TypeError, match="cache must be"):
        TaskRunner(cache="redis")


def test_a_hit_under_a_checkpoint_is_journaled_and_resumes(tmp_path: Path) -> None:
    CALLS.clear()
    store = MemoryStore()
    run_square(store, 6)
    path = tmp_path / "ck.json"
    with TaskRunner(cache=store, checkpoint_path=path) as runner:
        hit = square.submit(6)
        runner.run()
    assert hit.cached and hit.result() == 36
    resumed = TaskRunner.resume(path, cache=False)
    with resumed:
        again = square.submit(6)
        resumed.run()
    assert again.restored and again.result() == 36 and CALLS == [6]


def test_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    db_path = tmp_path / "busy.sqlite"
    DiskStore(db_path)  # create the table before the writers race
    script = textwrap.dedent(f"""
        import sys
        from pyworkflowy_nb._cache import DiskStore
        store = DiskStore({str(db_path)!r})
        for i in range(40):
            store.put(f"{{sys.argv[1]}}-{{i}}", i, None)
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", script, tag], env=env) for tag in "ab"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    store = DiskStore(db_path)
    assert len(store) == 80
    assert store.get("a-39") == 39 and store.get("b-0") == 0
