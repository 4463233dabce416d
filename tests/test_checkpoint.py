"""Checkpoints: the three checkpointer kinds, stable keys, fingerprints, atomicity, corruption."""

from __future__ import annotations

import json
import os
import re
import stat
import threading
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import HANG_GUARD, wait_until
from hypothesis import given, settings
from hypothesis import strategies as st

from pyworkflowy_nb import (
    Checkpointer,
    JSONCheckpointer,
    PickleCheckpointer,
    TaskHandle,
    TaskRunner,
    TaskStatus,
    task,
)
from pyworkflowy_nb.exceptions import CheckpointError, TaskError

CALLS: list[str] = []


@task
def square(x: int) -> int:
    CALLS.append(f"square({x})")
    return x * x


@task
def total(*parts: int) -> int:
    CALLS.append("total")
    return len(parts)


class Point:
    """Picklable, not JSON-serialisable."""

    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)

    def __hash__(self) -> int:
        return hash((self.x, self.y))


@task
def make_point(x: int) -> Point:
    CALLS.append(f"make_point({x})")
    return Point(x, -x)


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    CALLS.clear()


@pytest.fixture(autouse=True)
def _private_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pickle checkpoints are signed with the per-user key: never touch the real one here.
    monkeypatch.setenv("PYWORKFLOWY_NB_KEY_FILE", str(tmp_path / "keys" / "checkpoint.key"))


def stored(path: Path) -> dict[str, dict[str, Any]]:
    """What ``JSONCheckpointer(path).load()`` holds (the 0.1.0 state), entries by id."""
    state = JSONCheckpointer(path).load()
    return {} if state is None else {e["id"]: e for e in state["handles"]}


def rec(key: str, value: Any, status: str = "completed") -> dict[str, Any]:
    """A well-formed stored record."""
    return {"key": key, "name": key, "fingerprint": "f-" + key, "status": status,
            "value": value, "error": None, "attempts": 1, "started_at": 1.0,
            "finished_at": 2.0}


def build(runner: TaskRunner, order: list[int] | None = None) -> TaskHandle[int]:
    """Five squares feeding a total, submitted in ``order``."""
    order = order if order is not None else list(range(5))
    by_value = {i: runner.submit(square, i) for i in order}
    return runner.submit(total, depends_on=[by_value[i] for i in range(5)])


# -- JSON, the default -----------------------------------------------------------------------

def test_checkpoint_path_uses_json_and_resume_primes_completed_tasks(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with TaskRunner(checkpoint_path=path) as runner:
        assert isinstance(runner.checkpointer, JSONCheckpointer)
        build(runner)
        first = runner.run()
    assert CALLS.count("total") == 1
    manifest = json.loads(path.read_text())
    assert manifest["codec"] == "json"

    CALLS.clear()
    with TaskRunner.resume(path) as again:
        t = build(again, order=[3, 1, 4, 0, 2])
        second = again.run()
    assert CALLS == []  # nothing ran again
    assert all(h.restored for h in again.handles)
    assert {k: r.value for k, r in second.by_key().items()} == {
        k: r.value for k, r in first.by_key().items()}
    assert t.result() == 0 and t.status is TaskStatus.COMPLETED


def test_final_checkpoint_is_written_when_the_run_ends(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    runner = TaskRunner(checkpoint_path=path, checkpoint_interval=3600.0)
    build(runner)
    runner.run()  # no shutdown: the end of the run alone must have written everything
    records = stored(path)
    assert len(records) == 6
    assert all(r["status"] == "completed" for r in records.values())
    runner.shutdown()


def test_interval_zero_checkpoints_while_the_run_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    release = threading.Event()

    @task(backend="thread")
    def blocker() -> str:
        release.wait(HANG_GUARD)
        return "late"

    def saved_keys() -> set[str]:
        return set(stored(path))

    with TaskRunner(checkpoint_path=path, checkpoint_interval=0) as runner:
        early = runner.submit(square, 3)
        late = runner.submit(blocker)
        future = runner.run_in_background()
        wait_until(lambda: early.key in saved_keys(), "the early result to be checkpointed")
        assert late.key not in saved_keys()  # still running
        release.set()
        future.result(HANG_GUARD)
    assert saved_keys() == {early.key, late.key}


def test_records_hold_status_value_attempts_and_times(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    attempts: list[int] = []

    @task(retries=1, backoff="none", name="flaky")
    def flaky() -> list[int]:
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first")
        return [1, 2]

    @task(name="broken")
    def broken() -> None:
        raise KeyError("nope")

    with TaskRunner(checkpoint_path=path, on_task_error="continue") as runner:
        h = runner.submit(flaky)
        b = runner.submit(broken)
        runner.run()
    records = stored(path)
    rec = records[h.key]
    assert rec["status"] == "completed" and rec["value"] == [1, 2] and rec["attempts"] == 2
    assert rec["fingerprint"] == h.fingerprint
    assert rec["started_at"] == h.started_at and rec["finished_at"] == h.finished_at
    assert records[b.key]["status"] == "failed"
    assert "nope" in records[b.key]["error"]


def test_failed_and_cancelled_tasks_run_again_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    fail = {"on": True}

    @task(name="sometimes")
    def sometimes() -> str:
        CALLS.append("sometimes")
        if fail["on"]:
            raise RuntimeError("down")
        return "up"

    with TaskRunner(checkpoint_path=path, on_task_error="continue") as runner:
        ok = runner.submit(square, 2)
        runner.submit(sometimes)
        gone = runner.submit(square, 9)
        gone.cancel()
        runner.run()
    assert CALLS == ["square(2)", "sometimes"]
    fail["on"] = False
    CALLS.clear()
    with TaskRunner.resume(path) as again:
        h_ok = again.submit(square, 2)
        h_s = again.submit(sometimes)
        h_gone = again.submit(square, 9)
        assert again.run().ok
    assert sorted(CALLS) == ["sometimes", "square(9)"]
    assert h_ok.restored and not h_s.restored and not h_gone.restored
    assert (h_ok.result(), h_s.result(), h_gone.result()) == (4, "up", 81)
    assert ok.result() == 4


def test_unserialisable_arguments_fail_at_submit_with_json(tmp_path: Path) -> None:
    runner = TaskRunner(checkpoint_path=tmp_path / "state.json")
    with pytest.raises(CheckpointError, match=r"argument 0 of task .*square.*JSON"):
        runner.submit(square, {1, 2})
    with pytest.raises(CheckpointError, match=r"argument 'x' of task .*JSON"):
        runner.submit(square, x=object())
    with pytest.raises(CheckpointError, match="PickleCheckpointer"):
        runner.submit(square, Point(1, 2))
    assert runner.handles == []  # nothing was queued
    assert isinstance(CheckpointError("x"), TaskError)


def test_unserialisable_arguments_fail_at_submit_with_pickle(tmp_path: Path) -> None:
    runner = TaskRunner(checkpointer=PickleCheckpointer(tmp_path / "state.pkl"))
    runner.submit(square, Point(1, 2))  # fine for pickle
    with pytest.raises(CheckpointError, match=r"argument 0 .*cannot be pickled"):
        runner.submit(square, threading.Lock())
    with pytest.raises(CheckpointError, match="argument 'x'"):
        runner.submit(square, x=lambda: 1)
    assert len(runner.handles) == 1


def test_without_a_checkpointer_anything_may_be_passed() -> None:
    with TaskRunner() as runner:
        h = runner.submit(lambda lock: lock.locked(), threading.Lock())
        runner.run()
    assert h.result() is False


def test_an_unstorable_result_is_not_checkpointed_and_runs_again(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with TaskRunner(checkpoint_path=path) as runner:
        p = runner.submit(make_point, 1)
        s = runner.submit(square, 4)
        assert runner.run().ok  # the run itself is fine
    assert p.result() == Point(1, -1)
    records = stored(path)
    assert records[p.key]["status"] != "completed"
    assert records[s.key]["status"] == "completed"
    CALLS.clear()
    with TaskRunner.resume(path) as again:
        p2 = again.submit(make_point, 1)
        s2 = again.submit(square, 4)
        again.run()
    assert CALLS == ["make_point(1)"]
    assert s2.restored and not p2.restored


# -- Pickle and custom checkpointers ----------------------------------------------------------

def test_pickle_checkpointer_round_trips_arbitrary_values(tmp_path: Path) -> None:
    path = tmp_path / "state.pkl"
    with TaskRunner(checkpointer=PickleCheckpointer(path)) as runner:
        h = runner.submit(make_point, 7)
        runner.run()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # pickles run code: owner only
    CALLS.clear()
    with TaskRunner.resume(path) as again:  # the manifest says which codec to use
        assert isinstance(again.checkpointer, PickleCheckpointer)
        h2 = again.submit(make_point, 7)
        again.run()
    assert CALLS == []
    assert h2.restored and h2.result() == Point(7, -7) == h.result()


def test_loading_with_the_wrong_codec_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.ckpt"
    with TaskRunner(checkpointer=PickleCheckpointer(path)) as runner:
        runner.submit(square, 1)
        runner.run()
    with pytest.raises(CheckpointError, match=r"'pickle' codec.*resume") as info:
        JSONCheckpointer(path).load()
    assert info.value.path == str(path)


class MemoryCheckpointer(Checkpointer):
    """A custom checkpointer written to the 0.1.0 contract: it keeps the last whole state."""

    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None
        self.saves = 0

    def check(self, value: object, *, what: str) -> None:
        if isinstance(value, float):
            raise CheckpointError(f"{what}: no floats in this store")

    def save(self, state: dict[str, Any]) -> None:
        self.saves += 1
        self.state = json.loads(json.dumps(state))  # what a store of JSON would give back

    def load(self) -> dict[str, Any] | None:
        return self.state


def test_custom_checkpointer_subclass_gets_the_whole_state(tmp_path: Path) -> None:
    store = MemoryCheckpointer()
    with TaskRunner(checkpointer=store, checkpoint_interval=0) as runner:
        t0 = build(runner)
        runner.run()
    assert store.state is not None and store.state["version"] == 1
    entries = store.state["handles"]
    # One entry per handle, in submission order, with the 0.1.0 fields (plus our fingerprint).
    assert [e["id"] for e in entries] == [h.key for h in runner.handles]
    last = entries[-1]
    assert last["depends_on"] == [h.key for h in t0.parents]
    assert {k: last[k] for k in ("name", "args", "kwargs", "status", "value", "error",
                                 "attempts")} == {
        "name": total.name, "args": [], "kwargs": {}, "status": "completed", "value": 0,
        "error": None, "attempts": 1}
    assert entries[0]["args"] == [0] and entries[0]["value"] == 0
    assert last["started_at"] <= last["finished_at"] and last["fingerprint"] == t0.fingerprint
    with pytest.raises(CheckpointError, match="no floats"):
        TaskRunner(checkpointer=store).submit(square, 1.5)  # `runner` is shut down by now
    CALLS.clear()
    with TaskRunner.resume(store) as again:
        t = build(again, order=[4, 3, 2, 1, 0])
        again.run()
    assert CALLS == [] and t.restored and t.result() == 0


class SqliteCheckpointer(Checkpointer):
    """A user's checkpointer that keeps the state's JSON in a database, as 0.1.0 users did."""

    def __init__(self, db: Path) -> None:
        import sqlite3

        self.db = sqlite3.connect(db, check_same_thread=False)
        self.db.execute("create table if not exists state (id integer primary key, body text)")

    def save(self, state: dict[str, Any]) -> None:
        with self.db:
            self.db.execute("insert or replace into state values (1, ?)", (json.dumps(state),))

    def load(self) -> dict[str, Any] | None:
        row = self.db.execute("select body from state where id = 1").fetchone()
        return None if row is None else json.loads(row[0])


def test_a_database_checkpointer_works_for_saving_and_for_resume(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    fail = {"on": True}

    @task(name="flaky")
    def flaky() -> str:
        CALLS.append("flaky")
        if fail["on"]:
            raise RuntimeError("down")
        return "up"

    store = SqliteCheckpointer(db)
    assert store.load() is None
    with TaskRunner(checkpointer=store, on_task_error="continue") as runner:
        build(runner)
        runner.submit(flaky)
        runner.run()
    fail["on"] = False
    CALLS.clear()
    # The 0.1.0 form: a path plus the checkpointer, here a new one on the same database.
    with TaskRunner.resume(db, checkpointer=SqliteCheckpointer(db)) as again:
        t = build(again, order=[2, 0, 4, 1, 3])
        f = again.submit(flaky)
        assert again.run().ok
    assert CALLS == ["flaky"]  # only what had failed ran again
    assert t.restored and t.result() == 0 and f.result() == "up" and not f.restored
    with TaskRunner.resume(SqliteCheckpointer(db)) as third:  # and today's form
        build(third)
        third.submit(flaky)
        third.run()
    assert all(h.restored for h in third.handles)


def test_a_custom_checkpointer_that_returns_garbage_is_a_checkpoint_error() -> None:
    store = MemoryCheckpointer()
    store.state = {"version": 1, "handles": [{"id": "x", "status": "completed",
                                              "attempts": "abc"}]}
    with pytest.raises(CheckpointError, match="attempts") as info:
        TaskRunner.resume(store)
    assert info.value.path == "MemoryCheckpointer"
    store.state = {"handles": []}
    with pytest.raises(CheckpointError, match="version"):
        TaskRunner.resume(store)


def test_base_checkpointer_check_accepts_anything() -> None:
    class Minimal(Checkpointer):
        def save(self, state: dict[str, Any]) -> None:
            return None

        def load(self) -> dict[str, Any] | None:
            return None

    Minimal().check(object(), what="anything")
    with pytest.raises(TypeError):
        Checkpointer()  # type: ignore[abstract]


def test_checkpointer_must_be_a_checkpointer() -> None:
    with pytest.raises(TypeError, match="Checkpointer instance"):
        TaskRunner(checkpointer="state.json")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not both"):
        TaskRunner(checkpoint_path="a.json", checkpointer=MemoryCheckpointer())
    with pytest.raises(TypeError, match="checkpoint path or a Checkpointer"):
        TaskRunner.resume(42)  # type: ignore[arg-type]


# -- stable keys --------------------------------------------------------------------------------

def test_keys_are_readable_and_deterministic() -> None:
    runner = TaskRunner()
    a = runner.submit(square, 3)
    b = runner.submit(square, x=4)
    c = runner.submit(total, 1, "two", None, 2.5, True)
    n = runner.submit(total)
    big = runner.submit(total, "x" * 200)
    nested = runner.submit(total, [1, 2], {"k": 1})
    assert a.key == f"{square.name}(3)"
    assert b.key == f"{square.name}(x=4)"
    assert c.key == f"{total.name}(1, 'two', None, 2.5, True)"
    assert n.key == total.name
    assert big.key.startswith(f"{total.name}[") and len(big.key) < len(total.name) + 20
    assert nested.key.startswith(f"{total.name}[")
    assert a.id == a.key


def test_kwargs_order_does_not_change_the_key() -> None:
    @task
    def kw(**kwargs: int) -> int:
        return len(kwargs)

    r1, r2 = TaskRunner(), TaskRunner()
    assert r1.submit(kw, a=1, b=2).key == r2.submit(kw, b=2, a=1).key
    assert r1.submit(kw, a=[1], b={"z": 2}).key == r2.submit(kw, b={"z": 2}, a=[1]).key


def test_same_tasks_in_another_order_get_the_same_keys() -> None:
    def submit_all(runner: TaskRunner, order: list[int]) -> dict[int, str]:
        return {i: runner.submit(square, i % 3).key for i in order}

    first = TaskRunner()
    second = TaskRunner()
    keys1 = submit_all(first, list(range(6)))
    keys2 = submit_all(second, [5, 1, 4, 2, 0, 3])
    assert sorted(keys1.values()) == sorted(keys2.values())
    assert {h.key for h in first.handles} == {h.key for h in second.handles}
    # Identical repeats are numbered #2, #3 in the order they arrive.
    assert sorted(h.key for h in first.handles if h.key.startswith(f"{square.name}(0)")) == [
        f"{square.name}(0)", f"{square.name}(0)#2"]


def test_repeats_are_numbered() -> None:
    runner = TaskRunner()
    keys = [runner.submit(square, 1).key for _ in range(3)]
    assert keys == [f"{square.name}(1)", f"{square.name}(1)#2", f"{square.name}(1)#3"]


def test_explicit_task_key_wins_and_duplicates_are_refused() -> None:
    runner = TaskRunner()
    h = runner.submit(square, 1, task_key="first-square")
    assert h.key == "first-square"
    assert runner.get("first-square") is h
    with pytest.raises(ValueError, match="'first-square' is already used"):
        runner.submit(square, 2, task_key="first-square")
    # An explicit key that looks like a derived one pushes the derived one along.
    runner.submit(square, 5, task_key=f"{square.name}(5)")
    assert runner.submit(square, 5).key == f"{square.name}(5)#2"
    with pytest.raises(TypeError, match="task_key"):
        runner.submit(square, 3, task_key="")


def test_keys_survive_a_process_boundary(tmp_path: Path) -> None:
    # Keys come from names and arguments only, never ids or hash randomisation (set order
    # follows string hashes, which differ between processes).
    import subprocess
    import sys

    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from pyworkflowy_nb import TaskRunner\n"
        "import test_checkpoint as m\n"
        "r = TaskRunner()\n"
        "hs = [r.submit(m.square, i) for i in (1, 2)] + [r.submit(m.total, [1], {'a': (1, 2)})]\n"
        "hs.append(r.submit(m.total, {'alpha', 'beta', 'gamma'}, frozenset({'x', 'y'})))\n"
        "hs.append(r.submit(m.total, [{'k': {'a', 'b', 'c'}}], (m.Point(1, 2),)))\n"
        "hs.append(r.submit(m.total, depends_on=hs))\n"
        "print('\\n'.join(h.key + ' ' + h.fingerprint for h in hs))\n"
    )
    outs = []
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, timeout=120, check=False)
        assert out.returncode == 0, out.stderr
        outs.append(out.stdout)
    assert outs[0] == outs[1] == outs[2]
    assert len(outs[0].splitlines()) == 6


# -- fingerprints ----------------------------------------------------------------------------

def test_changed_version_invalidates_the_task_and_downstream_only(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    ran: list[str] = []

    def pipeline(runner: TaskRunner, version: str) -> list[TaskHandle[Any]]:
        @task(name="load")
        def load() -> int:
            ran.append("load")
            return 1

        @task(name="clean", version=version)
        def clean() -> int:
            ran.append("clean")
            return 2

        @task(name="report")
        def report() -> int:
            ran.append("report")
            return 3

        @task(name="side")
        def side() -> int:
            ran.append("side")
            return 4

        h_load = runner.submit(load)
        h_clean = runner.submit(clean, depends_on=[h_load])
        h_report = runner.submit(report, depends_on=[h_clean])
        h_side = runner.submit(side, depends_on=[h_load])
        return [h_load, h_clean, h_report, h_side]

    with TaskRunner(checkpoint_path=path) as runner:
        pipeline(runner, "v1")
        runner.run()
    assert sorted(ran) == ["clean", "load", "report", "side"]
    ran.clear()
    with TaskRunner.resume(path) as again:
        hs = pipeline(again, "v2")
        again.run()
    assert sorted(ran) == ["clean", "report"]
    assert [h.restored for h in hs] == [True, False, False, True]
    ran.clear()
    with TaskRunner.resume(path) as third:  # the v2 results were checkpointed in turn
        hs = pipeline(third, "v2")
        third.run()
    assert ran == [] and all(h.restored for h in hs)


def test_changed_argument_under_a_fixed_key_invalidates_it_and_downstream(
        tmp_path: Path) -> None:
    path = tmp_path / "state.json"

    def pipeline(runner: TaskRunner, n: int) -> list[TaskHandle[Any]]:
        up = runner.submit(square, 2, task_key="up")
        mid = runner.submit(square, n, task_key="mid", depends_on=[up])
        down = runner.submit(total, task_key="down", depends_on=[mid])
        return [up, mid, down]

    with TaskRunner(checkpoint_path=path) as runner:
        pipeline(runner, 3)
        runner.run()
    CALLS.clear()
    with TaskRunner.resume(path) as again:
        up, mid, down = pipeline(again, 4)
        again.run()
    assert CALLS == ["square(4)", "total"]
    assert up.restored and not mid.restored and not down.restored
    assert mid.result() == 16


def test_changed_argument_with_derived_keys_reruns_downstream(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with TaskRunner(checkpoint_path=path) as runner:
        runner.submit(total, depends_on=[runner.submit(square, 1), runner.submit(square, 2)])
        runner.run()
    CALLS.clear()
    with TaskRunner.resume(path) as again:
        a = again.submit(square, 1)
        b = again.submit(square, 5)  # changed input: a new key, nothing to restore
        t = again.submit(total, depends_on=[a, b])  # same key, different parents
        again.run()
    assert sorted(CALLS) == ["square(5)", "total"]
    assert a.restored and not b.restored and not t.restored


def test_fingerprint_ignores_parent_order_but_not_parents() -> None:
    r = TaskRunner()
    a, b = r.submit(square, 1), r.submit(square, 2)
    t1 = r.submit(total, depends_on=[a, b])
    t2 = r.submit(total, depends_on=[b, a])
    t3 = r.submit(total, depends_on=[a])
    assert t1.fingerprint == t2.fingerprint
    assert t1.fingerprint != t3.fingerprint
    assert a.fingerprint != b.fingerprint


# -- atomic, incremental files ----------------------------------------------------------------

def test_a_crash_while_replacing_the_manifest_keeps_the_previous_checkpoint(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    cp = JSONCheckpointer(path)
    cp.write_records({"a": rec("a", 1)})
    before = path.read_bytes()

    real_replace = os.replace

    def failing_replace(src: Any, dst: Any) -> None:
        if Path(dst) == path:
            raise OSError("disk unplugged")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk unplugged"):
        cp.write_records({"b": rec("b", 2)})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no litter
    assert JSONCheckpointer(path).read_records() == {"a": rec("a", 1)}


def test_a_crash_mid_run_surfaces_as_checkpoint_error_and_keeps_old_state(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "state.json"
    with TaskRunner(checkpoint_path=path) as runner:
        runner.submit(square, 1)
        runner.run()
    old_segments = json.loads(path.read_text())["segments"]
    real_replace = os.replace

    def failing_replace(src: Any, dst: Any) -> None:
        if Path(dst) == path:
            raise OSError("no space left")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    runner2 = TaskRunner.resume(path)
    runner2.submit(square, 1)
    h = runner2.submit(square, 2)
    with pytest.raises(CheckpointError, match="no space left"):
        runner2.run()
    monkeypatch.undo()
    assert h.result() == 4  # the work itself was done
    # The manifest is the old one, but the journal it does not cover yet holds the new record.
    assert json.loads(path.read_text())["segments"] == old_segments
    assert set(stored(path)) == {f"{square.name}(1)", f"{square.name}(2)"}
    runner2.shutdown()


def test_saves_write_only_what_changed_and_segments_stay_few(tmp_path: Path) -> None:
    from pyworkflowy_nb import _checkpoint

    path = tmp_path / "state.json"
    cp = JSONCheckpointer(path)
    written: list[int] = []
    real = _checkpoint.atomic_write

    def counting(target: Path, data: bytes, mode: int = 0o644) -> None:
        if target != path:
            written.append(len(json.loads(data)))  # records in this segment
        real(target, data, mode)

    _checkpoint.atomic_write = counting  # type: ignore[assignment]
    try:
        for i in range(128):
            cp.write_records({f"k{i}": rec(f"k{i}", i)})
    finally:
        _checkpoint.atomic_write = real
    segments = json.loads(path.read_text())["segments"]
    assert len(segments) <= 8  # O(log n) segments, not one per save
    files = sorted(p.name for p in (tmp_path / "state.json.d").iterdir())
    assert files == sorted(s["file"] for s in segments)  # merged ones were deleted
    # Binary-counter merging: every record is rewritten O(log n) times, not n times.
    assert sum(written) <= 128 * 9
    assert {k: r["value"] for k, r in stored(path).items()} == {f"k{i}": i for i in range(128)}


def test_a_later_save_overrides_an_earlier_record(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    cp = JSONCheckpointer(path)
    cp.write_records({"a": rec("a", None, "failed")})
    cp.write_records({"b": rec("b", 1)})
    cp.write_records({"a": rec("a", 2)})
    loaded = stored(path)
    assert loaded["a"]["status"] == "completed" and loaded["a"]["value"] == 2
    # Resuming from it and saving more keeps building on what was loaded.
    cp2 = JSONCheckpointer(path)
    cp2.read_records()
    cp2.write_records({"c": rec("c", 3)})
    assert set(stored(path)) == {"a", "b", "c"}


def test_a_new_runner_on_an_old_path_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with TaskRunner(checkpoint_path=path) as runner:
        runner.submit(square, 1)
        runner.run()
    with TaskRunner(checkpoint_path=path) as runner:  # not resume: a new checkpoint
        runner.submit(square, 2)
        runner.run()
    assert set(stored(path)) == {f"{square.name}(2)"}
    assert len(list((tmp_path / "state.json.d").iterdir())) == 1


def test_resume_keeps_old_records_it_did_not_resubmit(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    with TaskRunner(checkpoint_path=path) as runner:
        runner.submit(square, 1)
        runner.submit(square, 2)
        runner.run()
    with TaskRunner.resume(path) as again:
        again.submit(square, 2)
        again.submit(square, 3)
        again.run()
    keys = set(stored(path))
    assert keys == {f"{square.name}({i})" for i in (1, 2, 3)}


# -- corrupt or missing files --------------------------------------------------------------------

def _write_checkpoint(path: Path) -> None:
    with TaskRunner(checkpoint_path=path) as runner:
        build(runner)
        runner.run()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "not-ours", "future"])
def test_a_damaged_manifest_raises_checkpoint_error_naming_it(tmp_path: Path,
                                                              damage: str) -> None:
    path = tmp_path / "state.json"
    _write_checkpoint(path)
    raw = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"\x00\xff\x10garbage")
    elif damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "not-ours":
        path.write_text(json.dumps({"hello": "world"}))
    else:
        body = json.loads(raw)
        body["version"] = 99
        path.write_text(json.dumps(body))
    with pytest.raises(CheckpointError) as info:
        TaskRunner.resume(path)
    assert str(path) in str(info.value)
    assert info.value.path == str(path)
    with pytest.raises(CheckpointError):
        JSONCheckpointer(path).load()


@pytest.mark.parametrize("damage", ["truncated", "flipped", "missing", "swapped"])
def test_a_damaged_segment_raises_checkpoint_error_naming_it(tmp_path: Path,
                                                             damage: str) -> None:
    path = tmp_path / "state.json"
    _write_checkpoint(path)
    segment = tmp_path / "state.json.d" / json.loads(path.read_text())["segments"][0]["file"]
    data = segment.read_bytes()
    if damage == "truncated":
        segment.write_bytes(data[:-10])
    elif damage == "flipped":
        segment.write_bytes(data[:5] + bytes([data[5] ^ 0x01]) + data[6:])
    elif damage == "missing":
        segment.unlink()
    else:  # valid JSON of the right shape, but not what the manifest vouched for
        segment.write_text(json.dumps([{"key": "x", "status": "completed", "value": 1}]))
    with pytest.raises(CheckpointError) as info:
        TaskRunner.resume(path)
    assert str(segment) in str(info.value)
    assert info.value.path == str(path)  # the checkpoint the user gave


def test_resume_where_nothing_was_written_starts_fresh_and_checkpoints_there(
        tmp_path: Path) -> None:
    path = tmp_path / "nowhere.json"
    with TaskRunner.resume(path) as runner:
        assert runner.checkpointer is not None and not path.exists()
        h = runner.submit(square, 3)
        runner.run()
    assert not h.restored and set(stored(path)) == {h.key}


def test_a_segment_with_an_undecodable_body_is_reported(tmp_path: Path) -> None:
    # Hash matches (the manifest was rewritten to vouch for it) but the content is not JSON.
    path = tmp_path / "state.json"
    _write_checkpoint(path)
    body = json.loads(path.read_text())
    seg = tmp_path / "state.json.d" / body["segments"][0]["file"]
    seg.write_bytes(b"{not json")
    import hashlib

    body["segments"][0]["sha256"] = hashlib.sha256(b"{not json").hexdigest()
    path.write_text(json.dumps(body))
    with pytest.raises(CheckpointError, match="cannot be decoded") as info:
        TaskRunner.resume(path)
    assert info.value.path == str(path) and str(seg) in str(info.value)


def test_concurrent_flushes_of_the_writer_take_turns() -> None:
    # Two runs of one runner can end together (a new run starts while the previous one writes
    # its final checkpoint), so two flushes may overlap; both must return cleanly.
    from pyworkflowy_nb._writer import CheckpointWriter

    for _ in range(20):
        store = MemoryCheckpointer()
        gate = threading.Event()
        real_save = store.save
        version = {"n": 0}

        def slow_save(state: dict[str, Any], real: Any = real_save,
                      gate: threading.Event = gate) -> None:
            gate.wait(HANG_GUARD)
            real(state)

        store.save = slow_save  # type: ignore[method-assign]
        writer = CheckpointWriter(store, 0.0, lambda v=version: {"version": 1, "handles": [
            {"id": f"k{v['n']}", "status": "pending"}]})
        writer.ended(dict)
        errors: list[BaseException] = []

        def flush(writer: CheckpointWriter = writer, errors: list[BaseException] = errors
                  ) -> None:
            try:
                writer.flush()
            except BaseException as exc:  # pragma: no cover - the failure being tested
                errors.append(exc)

        threads = [threading.Thread(target=flush) for _ in range(3)]
        for t in threads:
            t.start()
        version["n"] = 1
        writer.ended(dict)
        gate.set()
        for t in threads:
            t.join(HANG_GUARD)
        assert errors == [] and not any(t.is_alive() for t in threads)
        writer.flush()
        assert store.state is not None and store.state["handles"][0]["id"] == "k1"


def test_records_committed_while_the_writer_flushes_are_not_stranded(tmp_path: Path) -> None:
    # A new run can commit records while the previous run's final flush compacts; every
    # flush must return and every record must reach the checkpoint.
    from pyworkflowy_nb._writer import CheckpointWriter

    cp = JSONCheckpointer(tmp_path / "state.json")
    writer = CheckpointWriter(cp, 0.0, dict)
    stop = threading.Event()
    sent: list[str] = []

    def producer() -> None:
        i = 0
        while not stop.is_set():
            key = f"k{i}"
            writer.commit([rec(key, i)])
            sent.append(key)
            i += 1
            if i % 50 == 0:
                threading.Event().wait(0.0005)

    t = threading.Thread(target=producer, daemon=True)
    t.start()
    try:
        for _ in range(30):
            flusher = threading.Thread(target=writer.flush, daemon=True)
            flusher.start()
            flusher.join(HANG_GUARD)
            assert not flusher.is_alive(), "flush hung with records left behind"
    finally:
        stop.set()
        t.join(HANG_GUARD)
    writer.flush()
    assert set(stored(tmp_path / "state.json")) == set(sent)
    assert [p.name for p in (tmp_path / "state.json.d").iterdir()
            if p.name.startswith("journal-")] == []  # all compacted


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["square", "total"]),
                          st.one_of(st.integers(-3, 3), st.text(max_size=3),
                                    st.lists(st.integers(), max_size=2))),
                min_size=1, max_size=12),
       st.randoms(use_true_random=False))
def test_any_submission_order_gives_the_same_keys(calls: list[tuple[str, Any]],
                                                  rng: Any) -> None:
    tasks = {"square": square, "total": total}

    def keys(order: list[tuple[str, Any]]) -> dict[str, int]:
        runner = TaskRunner()
        seen: dict[str, int] = {}
        for name, arg in order:
            key = runner.submit(tasks[name], arg).key
            m = re.fullmatch(r"(.*[)\]])#(\d+)", key)  # "#" may also appear in an argument
            base = m.group(1) if m else key
            seen[base] = seen.get(base, 0) + 1
            assert key == base if seen[base] == 1 else key == f"{base}#{seen[base]}"
        return seen

    shuffled = list(calls)
    rng.shuffle(shuffled)
    assert keys(calls) == keys(shuffled)


def test_swapped_repeats_with_different_parents_are_not_mixed_up(tmp_path: Path) -> None:
    # Two identical calls differ only by their parents; a resumed run that submits them the
    # other way round swaps their #2 numbering. The fingerprints then disagree, so each one
    # runs again rather than inheriting its twin's stored result.
    path = tmp_path / "state.json"
    values = {"a": 10, "b": 20}
    seen: list[str] = []

    def pipeline(runner: TaskRunner, order: list[str]) -> dict[str, TaskHandle[Any]]:
        parents = {name: runner.submit(task(name=f"src-{name}")(lambda n=name: values[n]))
                   for name in ("a", "b")}
        out = {}
        for name in order:
            parent = parents[name]

            @task(name="follow")
            def follow(tag: str, parent: TaskHandle[Any] = parent, name: str = name) -> int:
                seen.append(name)
                return int(parent.result()) + 1

            out[name] = runner.submit(follow, "same", depends_on=[parent])
        return out

    with TaskRunner(checkpoint_path=path) as runner:
        first = pipeline(runner, ["a", "b"])
        runner.run()
    assert first["a"].key == "follow('same')" and first["b"].key == "follow('same')#2"
    seen.clear()
    with TaskRunner.resume(path) as again:
        second = pipeline(again, ["b", "a"])
        again.run()
    assert second["b"].key == "follow('same')"
    assert {n: h.result() for n, h in second.items()} == {"a": 11, "b": 21}
    assert sorted(seen) == ["a", "b"]
    assert not second["a"].restored and not second["b"].restored


def test_a_run_aborted_by_a_failure_still_writes_its_final_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    broken = {"on": True}

    @task(name="fragile")
    def fragile() -> str:
        CALLS.append("fragile")
        if broken["on"]:
            raise RuntimeError("bug")
        return "fixed"

    with TaskRunner(checkpoint_path=path, checkpoint_interval=3600.0, max_workers=1) as runner:
        ok = [runner.submit(square, i) for i in range(3)]
        runner.submit(fragile, depends_on=ok)
        with pytest.raises(RuntimeError, match="bug"):
            runner.run()
    records = stored(path)
    assert {h.key for h in ok} <= {k for k, r in records.items() if r["status"] == "completed"}
    broken["on"] = False
    CALLS.clear()
    with TaskRunner.resume(path) as again:
        hs = [again.submit(square, i) for i in range(3)]
        fixed = again.submit(fragile, depends_on=hs)
        assert again.run().ok
    assert CALLS == ["fragile"] and fixed.result() == "fixed"


def test_resume_replays_add_dependency_on_restored_handles(tmp_path: Path) -> None:
    # The same script runs again after a restart: its add_dependency() calls must not fail
    # because the handle was just primed from the checkpoint.
    path = tmp_path / "state.json"

    def script(runner: TaskRunner) -> list[TaskHandle[Any]]:
        first = runner.submit(square, 1)
        second = runner.submit(square, 2)
        runner.add_dependency(second, first)
        return [first, second]

    with TaskRunner(checkpoint_path=path) as runner:
        script(runner)
        runner.run()
    CALLS.clear()
    with TaskRunner.resume(path) as again:
        first, second = script(again)
        again.run()
    assert CALLS == []
    assert first.restored and second.restored
    assert second.parents == (first,)
