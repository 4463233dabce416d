"""The checkpoint journal: durable before visible, resume of partial checkpoints, torn tails.

Every test gets its own signing key file, so nothing here touches the user's real key.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import HANG_GUARD

from pyworkflowy_nb import JSONCheckpointer, PickleCheckpointer, TaskRunner, task
from pyworkflowy_nb.exceptions import CheckpointError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _private_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYWORKFLOWY_NB_KEY_FILE", str(tmp_path / "keys" / "checkpoint.key"))


def on_disk(path: Path) -> dict[str, dict[str, Any]]:
    """The records a fresh reader finds at ``path`` right now (manifest, segments, journal)."""
    return JSONCheckpointer(path).read_records() or {}


def journals(path: Path) -> list[Path]:
    parts = path.with_name(path.name + ".d")
    return sorted(p for p in parts.iterdir() if p.name.startswith("journal-"))


def rec(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "name": key, "fingerprint": "f-" + key, "status": "completed",
            "value": value, "error": None, "attempts": 1, "started_at": 1.0,
            "finished_at": 2.0}


# -- ordering: durable before visible ------------------------------------------------------------

@pytest.mark.parametrize("backend", ["asyncio", "thread"])
@pytest.mark.parametrize("interval", [0.0, 3600.0])
def test_a_child_never_starts_before_its_parents_record_is_on_disk(
        tmp_path: Path, backend: str, interval: float) -> None:
    path = tmp_path / "state.json"
    missing: list[str] = []

    @task(name="leaf", backend=backend)
    def leaf(i: int) -> int:
        return i

    @task(name="child", backend=backend)
    def child(i: int, parent_keys: list[str]) -> int:
        # Read the checkpoint the way a new process would, from inside the child's body.
        found = on_disk(path)
        missing.extend(k for k in parent_keys if found.get(k, {}).get("status") != "completed")
        return i

    with TaskRunner(checkpoint_path=path, checkpoint_interval=interval,
                    max_workers=4) as runner:
        leaves = [runner.submit(leaf, i) for i in range(20)]
        for i in range(10):
            parents = leaves[i:i + 3]
            runner.submit(child, i, [p.key for p in parents], depends_on=parents)
        assert runner.run().ok
    assert missing == []


def test_a_handle_reports_completed_only_once_its_record_is_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    seen: list[tuple[str, bool]] = []

    def listener(event: Any) -> None:
        if event.kind == "completed":
            seen.append((event.handle.key, event.handle.key in on_disk(path)))

    @task(name="quick")
    def quick(i: int) -> int:
        return i

    with TaskRunner(checkpoint_path=path, checkpoint_interval=3600.0) as runner:
        runner.subscribe(listener)
        hs = [runner.submit(quick, i) for i in range(30)]
        waiter_saw: list[bool] = []
        first = hs[0]
        t = threading.Thread(target=lambda: (first.result(HANG_GUARD),
                                             waiter_saw.append(first.key in on_disk(path))))
        future = runner.run_in_background()
        t.start()
        future.result(HANG_GUARD)
        t.join(HANG_GUARD)
    assert len(seen) == 30 and all(ok for _, ok in seen)
    assert waiter_saw == [True]


def test_run_returns_only_with_everything_on_disk(tmp_path: Path) -> None:
    path = tmp_path / "state.json"

    @task(name="n")
    def n(i: int) -> int:
        return i

    runner = TaskRunner(checkpoint_path=path, checkpoint_interval=3600.0)
    hs = [runner.submit(n, i) for i in range(50)]
    runner.run()  # no shutdown
    assert set(on_disk(path)) == {h.key for h in hs}
    assert journals(path) == []  # and the end of the run compacted the journal away


# -- resume of partial checkpoints ----------------------------------------------------------------

def test_resume_of_an_empty_folder_starts_fresh(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.with_name("state.json.d").mkdir()  # killed before the first write
    runner = TaskRunner.resume(path)
    h = runner.submit(task(name="one")(lambda: 1))
    runner.run()
    assert not h.restored and set(on_disk(path)) == {h.key}


def test_a_journal_only_checkpoint_is_restored(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    cp = JSONCheckpointer(path)
    cp.append([rec("a", 1), rec("b", 2)])
    cp.append([rec("c", 3)])
    assert not path.exists() and len(journals(path)) == 1
    assert TaskRunner.resume(path)._restored.keys() == {"a", "b", "c"}
    state = JSONCheckpointer(path).load()
    assert state is not None and [e["id"] for e in state["handles"]] == ["a", "b", "c"]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
@pytest.mark.parametrize("codec", ["json", "pickle"])
def test_a_process_killed_before_any_compaction_loses_no_completed_task(
        tmp_path: Path, codec: str) -> None:
    path = tmp_path / "state.ckpt"
    script = textwrap.dedent(f"""
        import os, signal
        from pyworkflowy_nb import JSONCheckpointer, PickleCheckpointer, TaskRunner, task

        @task(name="part")
        def part(i):
            return i * 10

        @task(name="die")
        def die(*_):
            os.kill(os.getpid(), signal.SIGKILL)

        cp = {"JSONCheckpointer" if codec == "json" else "PickleCheckpointer"}({str(path)!r})
        runner = TaskRunner(checkpointer=cp, checkpoint_interval=3600.0)
        parts = [runner.submit(part, i) for i in range(8)]
        runner.submit(die, depends_on=parts)
        runner.run()
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert not path.exists()  # no manifest: only the journal holds the work

    ran: list[int] = []

    @task(name="part")
    def part(i: int) -> int:
        ran.append(i)
        return i * 10

    with TaskRunner.resume(path) as again:
        expected = PickleCheckpointer if codec == "pickle" else JSONCheckpointer
        assert type(again.checkpointer) is expected
        hs = [again.submit(part, i) for i in reversed(range(8))]
        again.run()
    assert ran == [] and all(h.restored for h in hs)
    assert [h.result() for h in hs] == [i * 10 for i in reversed(range(8))]
    assert path.exists() and journals(path) == []  # the resumed run compacted


def test_a_torn_last_frame_is_dropped_and_the_rest_restored(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    cp = JSONCheckpointer(path)
    cp.append([rec("a", 1)])
    cp.append([rec("b", 2)])
    (journal,) = journals(path)
    data = journal.read_bytes()
    for cut in (1, 20, 40):  # inside the payload, the tag, the frame header
        journal.write_bytes(data[:-cut])
        assert set(on_disk(path)) == {"a"}, cut
    journal.write_bytes(data + b"\0" * 512)  # zeros after the last frame: power loss too
    assert set(on_disk(path)) == {"a", "b"}


def test_a_damaged_frame_before_the_end_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    cp = JSONCheckpointer(path)
    cp.append([rec("a", 1)])
    cp.append([rec("b", 2)])
    (journal,) = journals(path)
    data = bytearray(journal.read_bytes())
    header_end = data.index(b"\n") + 1
    data[header_end + 50] ^= 0x01  # inside the first frame, which is followed by another
    journal.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its tag") as info:
        TaskRunner.resume(path)
    assert info.value.path == str(path) and str(journal) in str(info.value)


def test_a_journal_whose_manifest_was_removed_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    cp = JSONCheckpointer(path)
    cp.write_records({"a": rec("a", 1)})
    cp.append([rec("b", 2)])  # a journal that builds on that manifest
    path.unlink()
    with pytest.raises(CheckpointError, match="manifest"):
        TaskRunner.resume(path)


def test_a_failing_disk_does_not_stop_the_run_and_is_reported_at_its_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pyworkflowy_nb import _ckpt_io

    path = tmp_path / "state.json"
    real = _ckpt_io.write_all
    calls = {"n": 0}

    def flaky_write(fd: int, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real(fd, data)

    monkeypatch.setattr(_ckpt_io, "write_all", flaky_write)
    from pyworkflowy_nb import _checkpoint

    monkeypatch.setattr(_checkpoint, "write_all", flaky_write)

    @task(name="chain")
    def chain(i: int) -> int:
        return i

    runner = TaskRunner(checkpoint_path=path)
    prev = None
    for i in range(6):
        prev = runner.submit(chain, i, depends_on=[prev] if prev else None)
    with pytest.raises(CheckpointError, match="No space left"):
        runner.run()
    assert prev is not None and prev.result() == 5  # the work went on
    # The end-of-run compaction still stored every record, the failed append's included.
    assert len(on_disk(path)) == 6


# -- the 0.1.0 contract of the file checkpointers -------------------------------------------------

@pytest.mark.parametrize("kind", [JSONCheckpointer, PickleCheckpointer])
def test_file_checkpointers_load_the_whole_state_or_none(
        tmp_path: Path, kind: type[JSONCheckpointer] | type[PickleCheckpointer]) -> None:
    path = tmp_path / "state.ckpt"
    assert kind(path).load() is None

    @task(name="sq")
    def sq(x: int) -> int:
        return x * x

    with TaskRunner(checkpointer=kind(path)) as runner:
        a = runner.submit(sq, 3)
        b = runner.submit(sq, x=4, depends_on=[a])
        runner.run()
    state = kind(path).load()
    assert state is not None and state["version"] == 1
    entries = {e["id"]: e for e in state["handles"]}
    assert entries[a.key]["args"] == [3] and entries[b.key]["kwargs"] == {"x": 4}
    assert entries[b.key]["depends_on"] == [a.key]
    assert entries[b.key]["status"] == "completed" and entries[b.key]["value"] == 16
    # save() takes a whole state and replaces the checkpoint with it.
    other = tmp_path / "copy.ckpt"
    kind(other).save(state)
    assert kind(other).load() == state
    with TaskRunner.resume(other) as again:
        assert again.submit(sq, 3).restored


def test_pickle_checkpoints_are_signed_and_their_journal_too(tmp_path: Path) -> None:
    path = tmp_path / "state.pkl"
    cp = PickleCheckpointer(path)
    cp.append([rec("a", {1, 2})])
    (journal,) = journals(path)
    assert os.stat(journal).st_mode & 0o777 == 0o600
    # Read with another key: the frame's HMAC does not check out, nothing is unpickled.
    with pytest.raises(CheckpointError, match="does not match its tag"):
        PickleCheckpointer(path, key=b"k" * 32).read_records()
    assert PickleCheckpointer(path).read_records() == {"a": rec("a", {1, 2})}
    cp.compact()
    body = json.loads(path.read_text())
    assert body["signature_scheme"] == "hmac-sha256" and body["manifest_signature"]
    assert all(s["signature"] for s in body["segments"])


def test_a_value_the_codec_cannot_store_costs_only_its_own_record(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    loop: list[Any] = []
    loop.append(loop)  # cyclic: no JSON for it

    @task(name="v")
    def v(i: int) -> Any:
        return loop if i == 1 else i

    with TaskRunner(checkpoint_path=path, checkpoint_interval=0) as runner:
        hs = [runner.submit(v, i) for i in range(3)]
        assert runner.run().ok
    found = on_disk(path)
    assert [found[h.key]["status"] for h in hs] == ["completed", "unpersisted", "completed"]


def test_a_notebook_checkpoint_holding_only_a_journal_is_found_and_restored(
        tmp_path: Path) -> None:
    pytest.importorskip("IPython")
    from pyworkflowy_nb.notebook._checkpoint import CloudpickleCheckpointer
    from pyworkflowy_nb.notebook._checkpoint_file import CheckpointFile

    path = tmp_path / ".wfy" / "demo.ckpt"
    writer = CloudpickleCheckpointer(path)
    writer.append([rec("a", {"x": 1})])  # a kernel killed mid-run leaves just its journal
    settings = CheckpointFile()
    settings.configure(path, {})
    checkpointer = settings.checkpointer()
    assert checkpointer is not None and checkpointer.exists() and not path.exists()
    records = settings.stored_records()
    assert records is not None and records["a"]["value"] == {"x": 1}
    writer.append([rec("b", 2)])  # the journal grew: the cached records are read again
    assert set(settings.stored_records() or {}) == {"a", "b"}
