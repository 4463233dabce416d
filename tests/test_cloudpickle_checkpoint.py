"""The cloudpickle checkpointer: round trips, refusals, signatures, versions, files.

The key file itself is tested in test_keys.py, code identity in test_fingerprint.py.

Every test gets its own HMAC key file (through ``PYWORKFLOWY_NB_KEY_FILE``), so nothing here
reads or writes the user's real config folder.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import stat
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from engine_helpers import cell_namespace

from pyworkflowy_nb import TaskRunner, _keys, task
from pyworkflowy_nb._checkpoint import _manifest_bytes
from pyworkflowy_nb._keys import KEY_ENV_VAR, load_or_create_key
from pyworkflowy_nb.exceptions import CheckpointError
from pyworkflowy_nb.notebook._checkpoint import (
    CloudpickleCheckpointer,
    environment_versions,
)

ROOT = Path(__file__).resolve().parent.parent
KEY_A = b"A" * 32
KEY_B = b"B" * 32


# Pickle checkpoints are signed with the per-user key: never touch the real one here.
pytestmark = pytest.mark.usefixtures("key_file")


@pytest.fixture
def ckpath(tmp_path: Path) -> Path:
    return tmp_path / "wfy" / "state.wfy"


def record(key: str, value: object) -> dict[str, Any]:
    return {"key": key, "name": key, "fingerprint": "f-" + key, "status": "completed",
            "value": value, "error": None, "attempts": 1, "started_at": 1.0, "finished_at": 2.0}


class MakeDirOnLoad:
    """A payload that, if ever unpickled, creates ``path``: proof that code ran on load."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return (os.mkdir, (self.path,))


def rewrite_manifest(path: Path, change: Callable[[dict[str, Any]], None],
                     key: bytes | None) -> None:
    """Edit the manifest at ``path``; re-sign it with ``key`` (None: leave the old signature)."""
    body = json.loads(path.read_bytes())
    old_signature = body.pop("manifest_signature", None)
    change(body)
    if key is not None:
        body["manifest_signature"] = _keys.sign_bytes(key, _manifest_bytes(body))
    elif old_signature is not None:
        body["manifest_signature"] = old_signature
    path.write_text(json.dumps(body))


def only_segment(path: Path) -> Path:
    (segment,) = (path.parent / (path.name + ".d")).iterdir()
    return segment


@pytest.fixture
def decode_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every call to CloudpickleCheckpointer.decode (i.e. every unpickling)."""
    calls: list[int] = []
    real = CloudpickleCheckpointer.decode

    def counting(self: CloudpickleCheckpointer, data: bytes) -> object:
        calls.append(len(data))
        return real(self, data)

    monkeypatch.setattr(CloudpickleCheckpointer, "decode", counting)
    return calls


# -- round trips ---------------------------------------------------------------------------------

CELL = """
import math

class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y
    def norm(self):
        return math.hypot(self.x, self.y)

def scale(p, k=2):
    return Point(p.x * k, p.y * k)
"""


def test_round_trip_of_arrays_frames_lambdas_and_cell_defined_code(ckpath: Path) -> None:
    ns = cell_namespace(CELL)
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    values = {
        "array": np.arange(12, dtype=np.float32).reshape(3, 4),
        "frame": frame,
        "lambda": lambda v: v * 3 + 1,
        "class": ns["Point"],
        "function": ns["scale"],
        "instance": ns["Point"](3, 4),
    }
    CloudpickleCheckpointer(ckpath).write_records({k: record(k, v) for k, v in values.items()})

    loaded = {k: r["value"] for k, r in CloudpickleCheckpointer(ckpath).read_records().items()}
    assert set(loaded) == set(values)
    np.testing.assert_array_equal(loaded["array"], values["array"])
    assert loaded["array"].dtype == np.float32
    pd.testing.assert_frame_equal(loaded["frame"], frame)
    assert loaded["lambda"](5) == 16
    assert loaded["class"](6, 8).norm() == 10.0
    assert loaded["function"](loaded["class"](1, 2), k=5).norm() == pytest.approx(5 * 5 ** 0.5)
    assert loaded["instance"].norm() == 5.0


def test_cell_defined_code_loads_in_a_fresh_interpreter(ckpath: Path) -> None:
    """What a kernel restart needs: the new process has never seen the cell's definitions."""
    ns = cell_namespace(CELL)
    CloudpickleCheckpointer(ckpath).write_records({
        "pt": record("pt", ns["scale"](ns["Point"](3, 4), k=3)),
        "fn": record("fn", ns["scale"]),
        "square": record("square", lambda v: v * v),
        "frame": record("frame", pd.DataFrame({"n": np.arange(4)})),
    })
    script = textwrap.dedent(f"""
        import json
        from pyworkflowy_nb.notebook._checkpoint import CloudpickleCheckpointer
        recs = CloudpickleCheckpointer({str(ckpath)!r}).read_records()
        v = {{k: r["value"] for k, r in recs.items()}}
        print(json.dumps([v["pt"].norm(), v["fn"](v["pt"], k=2).norm(), v["square"](7),
                          int(v["frame"]["n"].sum())]))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=120, check=True)
    assert json.loads(out.stdout) == [15.0, 30.0, 49, 6]


# -- submit-time refusal -------------------------------------------------------------------------


def _generator() -> Iterator[int]:
    yield 1


@pytest.mark.parametrize(
    ("make", "type_name"),
    [
        (threading.Lock, "_thread.lock"),
        (lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM), "socket.socket"),
        (_generator, "builtins.generator"),
    ],
    ids=["lock", "socket", "generator"],
)
def test_unpicklable_argument_is_refused_at_submit(ckpath: Path, make: Callable[[], Any],
                                                   type_name: str) -> None:
    @task(name="consume")
    def consume(value: object, other: object = None) -> None:
        raise AssertionError("must never run")

    value = make()
    try:
        runner = TaskRunner(checkpointer=CloudpickleCheckpointer(ckpath))
        with pytest.raises(CheckpointError) as positional:
            runner.submit(consume, value)
        with pytest.raises(CheckpointError) as keyword:
            runner.submit(consume, 1, other=value)
        assert runner.handles == []
    finally:
        if isinstance(value, socket.socket):
            value.close()
    for err, where in ((positional, "argument 0"), (keyword, "argument 'other'")):
        message = str(err.value)
        assert f"{where} of task 'consume'" in message
        assert type_name in message


def test_check_accepts_what_cloudpickle_accepts(ckpath: Path) -> None:
    checkpointer = CloudpickleCheckpointer(ckpath)
    ns = cell_namespace(CELL)
    for value in (np.ones(3), pd.Series([1, 2]), lambda: 1, ns["Point"], ns["Point"](1, 2)):
        checkpointer.check(value, what="argument 0 of task 't'")


# -- files and keys ------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077], ids=["000", "022", "077"])
def test_checkpoint_files_are_owner_only_whatever_the_umask(ckpath: Path, umask: int) -> None:
    ckpath.parent.mkdir()
    parts = ckpath.parent / (ckpath.name + ".d")
    parts.mkdir(mode=0o755)  # left by an earlier, laxer writer: must be tightened
    os.chmod(parts, 0o755)
    old = os.umask(umask)
    try:
        checkpointer = CloudpickleCheckpointer(ckpath)
        checkpointer.write_records({"a": record("a", 1)})
        checkpointer.write_records({"b": record("b", [2])})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(parts).st_mode) == 0o700
    files = [ckpath, *parts.iterdir()]
    assert len(files) >= 2
    for path in files:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path


def test_key_file_is_created_owner_only_and_reused(key_file: Path, ckpath: Path) -> None:
    assert not key_file.exists()
    CloudpickleCheckpointer(ckpath).write_records({"a": record("a", 1)})
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(key_file.parent).st_mode) == 0o700
    key = key_file.read_bytes()
    assert len(key) == 32
    # A second checkpointer (a restarted kernel) reads the same key, so it trusts the file.
    assert CloudpickleCheckpointer(ckpath).read_records()["a"]["value"] == 1
    assert key_file.read_bytes() == key
    assert load_or_create_key() == key


def test_an_unusable_key_location_says_how_to_fix_it(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv(KEY_ENV_VAR, str(blocker / "checkpoint.key"))
    with pytest.raises(CheckpointError, match=f"set {KEY_ENV_VAR}"):
        CloudpickleCheckpointer(tmp_path / "state.wfy")


def test_explicit_keys_are_validated(ckpath: Path) -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        CloudpickleCheckpointer(ckpath, key=b"tiny")
    with pytest.raises(TypeError, match="key must be bytes"):
        CloudpickleCheckpointer(ckpath, key="a string key")  # type: ignore[arg-type]


# -- integrity -----------------------------------------------------------------------------------


def test_a_checkpoint_signed_with_another_key_never_runs_its_payload(
        ckpath: Path, tmp_path: Path, decode_calls: list[int]) -> None:
    marker = tmp_path / "payload-ran"
    CloudpickleCheckpointer(ckpath, key=KEY_A).write_records(
        {"evil": record("evil", MakeDirOnLoad(marker))})
    with pytest.raises(CheckpointError, match="another key") as err:
        CloudpickleCheckpointer(ckpath, key=KEY_B).read_records()
    assert err.value.path == str(ckpath)
    assert not marker.exists()
    assert decode_calls == []
    # The payload is live: with the right key it does run, which is why the check matters.
    CloudpickleCheckpointer(ckpath, key=KEY_A).read_records()
    assert marker.is_dir()


def test_a_flipped_segment_byte_is_refused_before_unpickling(
        ckpath: Path, tmp_path: Path, decode_calls: list[int]) -> None:
    marker = tmp_path / "payload-ran"
    CloudpickleCheckpointer(ckpath).write_records({"x": record("x", MakeDirOnLoad(marker))})
    segment = only_segment(ckpath)
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0x01
    segment.write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as err:
        CloudpickleCheckpointer(ckpath).read_records()
    assert str(segment) in str(err.value)
    assert not marker.exists()
    assert decode_calls == []


def test_a_replaced_segment_with_a_matching_digest_fails_the_manifest_signature(
        ckpath: Path, tmp_path: Path, decode_calls: list[int]) -> None:
    import hashlib

    import cloudpickle

    marker = tmp_path / "payload-ran"
    CloudpickleCheckpointer(ckpath).write_records({"x": record("x", 1)})
    segment = only_segment(ckpath)
    evil = cloudpickle.dumps([record("x", MakeDirOnLoad(marker))])
    segment.write_bytes(evil)

    def point_at_evil(body: dict[str, Any]) -> None:
        body["segments"][0]["sha256"] = hashlib.sha256(evil).hexdigest()

    rewrite_manifest(ckpath, point_at_evil, key=None)  # attacker without the key
    with pytest.raises(CheckpointError, match=r"manifest .* failed the integrity check"):
        CloudpickleCheckpointer(ckpath).read_records()
    assert not marker.exists() and decode_calls == []


def test_a_segment_signature_is_checked_even_when_the_manifest_is_valid(
        ckpath: Path, tmp_path: Path, key_file: Path, decode_calls: list[int]) -> None:
    import hashlib

    import cloudpickle

    marker = tmp_path / "payload-ran"
    checkpointer = CloudpickleCheckpointer(ckpath)
    checkpointer.write_records({"x": record("x", 1)})
    segment = only_segment(ckpath)
    evil = cloudpickle.dumps([record("x", MakeDirOnLoad(marker))])
    segment.write_bytes(evil)

    def point_at_evil(body: dict[str, Any]) -> None:
        body["segments"][0]["sha256"] = hashlib.sha256(evil).hexdigest()

    # Only the manifest is re-signed: the segment's own signature still vouches for the old bytes.
    rewrite_manifest(ckpath, point_at_evil, key=key_file.read_bytes())
    with pytest.raises(CheckpointError, match=r"segment .* failed the integrity check") as err:
        CloudpickleCheckpointer(ckpath).read_records()
    assert err.value.path == str(ckpath)  # the checkpoint the user gave; the message names both
    assert str(segment) in str(err.value)
    assert not marker.exists() and decode_calls == []


@pytest.mark.parametrize("edit", ["value", "drop-signature"])
def test_an_edited_manifest_is_refused(ckpath: Path, edit: str,
                                       decode_calls: list[int]) -> None:
    CloudpickleCheckpointer(ckpath).write_records({"x": record("x", 1)})
    body = json.loads(ckpath.read_bytes())
    if edit == "value":
        body["segments"][0]["records"] = 99
        expected = "signature does not match"
    else:
        del body["manifest_signature"]
        expected = "carries no signature"
    ckpath.write_text(json.dumps(body))
    with pytest.raises(CheckpointError, match=expected):
        CloudpickleCheckpointer(ckpath).read_records()
    assert decode_calls == []


def test_a_truncated_segment_names_its_path(ckpath: Path, decode_calls: list[int]) -> None:
    CloudpickleCheckpointer(ckpath).write_records({"x": record("x", np.arange(1000))})
    segment = only_segment(ckpath)
    segment.write_bytes(segment.read_bytes()[:100])
    with pytest.raises(CheckpointError) as err:
        CloudpickleCheckpointer(ckpath).read_records()
    assert str(segment) in str(err.value)
    assert decode_calls == []


# -- versions --------------------------------------------------------------------------------------


def test_the_manifest_records_python_cloudpickle_and_loaded_libraries(ckpath: Path) -> None:
    import cloudpickle

    CloudpickleCheckpointer(ckpath).write_records({"x": record("x", 1)})
    env = json.loads(ckpath.read_bytes())["environment"]
    assert env["python"] == f"{platform.python_implementation()} {platform.python_version()}"
    assert env["cloudpickle"] == cloudpickle.__version__
    assert env["numpy"] == np.__version__  # imported by this test module
    assert env["pandas"] == pd.__version__


def test_libraries_that_are_not_imported_are_not_recorded_or_imported(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "pandas")
    versions = environment_versions()
    assert "pandas" not in versions
    assert "pandas" not in sys.modules
    assert versions["numpy"] == np.__version__


@pytest.mark.parametrize(
    ("field", "recorded", "expected"),
    [
        ("python", f"{platform.python_implementation()} 3.12.1",
         f"checkpoint written by Python 3.12.1, this is {platform.python_version()}"),
        ("python", "PyPy 3.11.7", "checkpoint written by PyPy 3.11.7, this is CPython"),
        ("cloudpickle", "2.0.0", "cloudpickle 2.0.0"),
        ("numpy", "1.0.0", f"numpy 1.0.0, this has numpy {np.__version__}"),
        ("pyworkflowy-test-absent-lib", "1.0", "which is not installed here"),
    ],
)
def test_another_environment_is_refused_before_unpickling(
        ckpath: Path, tmp_path: Path, key_file: Path, decode_calls: list[int],
        field: str, recorded: str, expected: str) -> None:
    marker = tmp_path / "payload-ran"
    CloudpickleCheckpointer(ckpath).write_records({"x": record("x", MakeDirOnLoad(marker))})

    def pretend(body: dict[str, Any]) -> None:
        body["environment"][field] = recorded

    rewrite_manifest(ckpath, pretend, key=key_file.read_bytes())
    with pytest.raises(CheckpointError) as err:
        CloudpickleCheckpointer(ckpath).read_records()
    message = str(err.value)
    assert expected in message
    assert "re-run the tasks" in message
    assert not marker.exists() and decode_calls == []


# -- crashes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("crash_on", ["segment", "manifest"])
def test_a_crash_mid_write_leaves_the_previous_checkpoint_readable(
        ckpath: Path, monkeypatch: pytest.MonkeyPatch, crash_on: str) -> None:
    checkpointer = CloudpickleCheckpointer(ckpath)
    checkpointer.write_records({"a": record("a", np.arange(3))})
    before = ckpath.read_bytes()

    real_replace = os.replace
    crashed: list[str] = []

    def crash(src: Any, dst: Any) -> None:
        is_manifest = Path(dst) == ckpath
        if is_manifest == (crash_on == "manifest"):
            assert Path(src).read_bytes()  # the temp file was fully written first
            crashed.append(str(dst))
            raise OSError("simulated power cut")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        checkpointer.write_records({"b": record("b", "new")})
    monkeypatch.setattr(os, "replace", real_replace)
    assert crashed

    # A killed kernel also leaves its temp files behind; they must not get in the way.
    parts = ckpath.parent / (ckpath.name + ".d")
    (parts / ".deadbeef.cpkl.1.2.tmp").write_bytes(b"half a segm")
    (ckpath.parent / f".{ckpath.name}.1.2.tmp").write_bytes(b'{"format": "pyw')

    assert ckpath.read_bytes() == before
    loaded = CloudpickleCheckpointer(ckpath).read_records()
    assert set(loaded) == {"a"}
    np.testing.assert_array_equal(loaded["a"]["value"], np.arange(3))


def test_a_failed_save_loses_nothing_when_it_is_retried(
        ckpath: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checkpoint writer re-queues a failed batch; the retry must keep the older records."""
    checkpointer = CloudpickleCheckpointer(ckpath)
    checkpointer.write_records({"a": record("a", 1)})
    real_replace = os.replace

    def disk_full(src: Any, dst: Any) -> None:
        if Path(dst) != ckpath:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(OSError, match="disk full"):
        checkpointer.write_records({"b": record("b", 2)})
    monkeypatch.setattr(os, "replace", real_replace)
    checkpointer.write_records({"b": record("b", 2)})
    loaded = CloudpickleCheckpointer(ckpath).read_records()
    assert {k: r["value"] for k, r in loaded.items()} == {"a": 1, "b": 2}


# -- through the engine ----------------------------------------------------------------------------


def test_resume_primes_completed_tasks_without_running_them(ckpath: Path) -> None:
    ns = cell_namespace(CELL)
    runs: list[str] = []
    broken = {"clean": True}

    def load(n: int) -> np.ndarray:
        runs.append("load")
        return np.arange(n, dtype=float)

    def clean(a: np.ndarray) -> pd.DataFrame:
        runs.append("clean")
        if broken["clean"]:
            raise RuntimeError("bad data")
        return pd.DataFrame({"v": a * 2})

    def point() -> Any:
        runs.append("point")
        return ns["Point"](3, 4)

    def report(df: pd.DataFrame, p: Any) -> float:
        runs.append("report")
        return float(df["v"].sum()) + float(p.norm())

    tasks = {f.__name__: task(f) for f in (load, clean, point)}

    def build(runner: TaskRunner) -> dict[str, Any]:
        h_load = runner.submit(tasks["load"], 10)
        h_point = runner.submit(tasks["point"])
        # Arguments are fixed at submit; the DAG edge is what orders the runs.
        h_clean = runner.submit(tasks["clean"], np.arange(10, dtype=float),
                                depends_on=[h_load])

        def report_from_parents() -> float:
            return report(h_clean.result(), h_point.result())

        h_report = runner.submit(report_from_parents, depends_on=[h_clean, h_point])
        return {"load": h_load, "point": h_point, "clean": h_clean, "report": h_report}

    first = TaskRunner(checkpointer=CloudpickleCheckpointer(ckpath), on_task_error="continue",
                       checkpoint_interval=0)
    build(first)
    results = first.run()
    first.shutdown()
    assert not results.ok
    assert sorted(runs) == ["clean", "load", "point"]

    # A new process would do exactly this: resume from the path, re-submit in any order.
    broken["clean"] = False
    runs.clear()
    second = TaskRunner.resume(ckpath, on_task_error="continue", checkpoint_interval=0)
    assert type(second.checkpointer) is CloudpickleCheckpointer
    handles = build(second)
    second.run()
    second.shutdown()
    assert sorted(runs) == ["clean", "report"]  # load and point were primed
    assert handles["load"].restored and handles["point"].restored
    assert not handles["clean"].restored
    np.testing.assert_array_equal(handles["load"].result(), np.arange(10, dtype=float))
    assert handles["point"].result().norm() == 5.0
    assert handles["report"].result() == 90.0 + 5.0

    # Everything is complete now: a third resume runs nothing and gives the same results.
    runs.clear()
    third = TaskRunner.resume(ckpath)
    again = build(third)
    final = third.run()
    third.shutdown()
    assert runs == []
    assert final.ok and all(h.restored for h in again.values())
    assert again["report"].result() == handles["report"].result()
    pd.testing.assert_frame_equal(again["clean"].result(), handles["clean"].result())
