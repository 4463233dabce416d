"""Hostile checkpoints: downgrades, path escapes, files that are not files, lying records.

Each one must be a CheckpointError naming the checkpoint the user gave, before anything is
unpickled, without hanging or reading a huge file into memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pyworkflowy_nb import JSONCheckpointer, PickleCheckpointer, TaskRunner, task
from pyworkflowy_nb._ckpt_io import encode_frame, encode_header, plain_tagger
from pyworkflowy_nb.exceptions import CheckpointError

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _private_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYWORKFLOWY_NB_KEY_FILE", str(tmp_path / "keys" / "checkpoint.key"))


class MakeDirOnLoad:
    """If ever unpickled, creates ``path``: proof that code ran on load."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return (os.mkdir, (self.path,))


def rec(key: str, value: Any) -> dict[str, Any]:
    return {"key": key, "name": key, "fingerprint": "f-" + key, "status": "completed",
            "value": value, "error": None, "attempts": 1, "started_at": 1.0,
            "finished_at": 2.0}


def refused(path: Path, match: str | None = None) -> CheckpointError:
    """Resume must refuse ``path`` with a CheckpointError about the checkpoint itself."""
    with pytest.raises(CheckpointError, match=match) as info:
        TaskRunner.resume(path)
    assert info.value.path == str(path)
    assert str(path) in str(info.value)
    return info.value


def json_checkpoint(tmp_path: Path) -> tuple[Path, dict[str, Any], Path]:
    path = tmp_path / "state.json"
    JSONCheckpointer(path).write_records({"a": rec("a", 1), "b": rec("b", [2])})
    body = json.loads(path.read_text())
    return path, body, path.with_name("state.json.d") / body["segments"][0]["file"]


def plant_segment(path: Path, body: dict[str, Any], segment: Path, data: bytes) -> None:
    """Replace ``segment`` by ``data`` and make the (unsigned) JSON manifest vouch for it."""
    segment.write_bytes(data)
    body["segments"][0]["sha256"] = hashlib.sha256(data).hexdigest()
    path.write_text(json.dumps(body))


# -- no code the key did not sign ---------------------------------------------------------------

@pytest.mark.parametrize("to", ["pickle", "json"])
def test_a_cloudpickle_manifest_edited_to_a_weaker_codec_runs_nothing(
        tmp_path: Path, to: str) -> None:
    from pyworkflowy_nb.notebook._checkpoint import CloudpickleCheckpointer

    marker = tmp_path / "payload-ran"
    path = tmp_path / "state.ckpt"
    CloudpickleCheckpointer(path).write_records({"x": rec("x", MakeDirOnLoad(marker))})
    body = json.loads(path.read_text())
    body["codec"] = to
    path.write_text(json.dumps(body))
    refused(path)
    assert not marker.exists()
    if to == "pickle":  # stripping the signature as well changes nothing
        del body["manifest_signature"]
        path.write_text(json.dumps(body))
        refused(path, "no signature")
        assert not marker.exists()


def planted(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(marker, checkpoint path, its empty .d folder) for planting hostile pickles."""
    path = tmp_path / "state.pkl"
    parts = path.with_name("state.pkl.d")
    parts.mkdir()
    return tmp_path / "payload-ran", path, parts


def test_an_unsigned_pickle_checkpoint_is_never_unpickled(tmp_path: Path) -> None:
    # What a pickle checkpoint without signatures (or one planted by somebody else) looks like.
    marker, path, parts = planted(tmp_path)
    data = pickle.dumps([rec("x", MakeDirOnLoad(marker))])
    (parts / "0123456789abcdef.pkl").write_bytes(data)
    for version in (1, 2):
        body = {"format": "pyworkflowy_nb-checkpoint", "version": version, "codec": "pickle",
                "segments": [{"file": "0123456789abcdef.pkl", "signature": None, "records": 1,
                              "sha256": hashlib.sha256(data).hexdigest()}],
                **({"journal_floor": 0} if version == 2 else {}),
                "signature_scheme": "hmac-sha256", "key_id": "0" * 16}
        path.write_text(json.dumps(body))
        refused(path, "integrity check")
        assert not marker.exists()


def test_a_planted_pickle_journal_is_never_unpickled(tmp_path: Path) -> None:
    marker, path, parts = planted(tmp_path)
    header = encode_header("pickle", 1, 0)
    payload = pickle.dumps([rec("x", MakeDirOnLoad(marker))])
    # A plain SHA-256 tag, as a JSON journal has: anybody can compute it, so it must not do.
    (parts / "journal-000001.wal").write_bytes(
        header + encode_frame(payload, plain_tagger(header)))
    refused(path, "does not match its tag")
    assert not marker.exists()
    # Claiming to be JSON instead decodes nothing as a pickle.
    header = encode_header("json", 1, 0)
    (parts / "journal-000001.wal").write_bytes(
        header + encode_frame(payload, plain_tagger(header)))
    refused(path, "cannot be decoded")
    assert not marker.exists()


# -- confined reading -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["/etc/passwd", "../../escape.json", "sub/x.json", "..",
                                  "0123456789abcdef.pkl", 7])
def test_segment_names_must_be_plain_names_this_checkpoint_writes(
        tmp_path: Path, name: object) -> None:
    path, body, _ = json_checkpoint(tmp_path)
    body["segments"][0]["file"] = name
    path.write_text(json.dumps(body))
    error = refused(path, "segment")
    assert "delete /etc" not in str(error) and "delete ../" not in str(error)


def test_a_symlinked_folder_is_not_followed(tmp_path: Path) -> None:
    path, _, _ = json_checkpoint(tmp_path)
    parts = path.with_name("state.json.d")
    elsewhere = tmp_path / "elsewhere"
    parts.rename(elsewhere)
    parts.symlink_to(elsewhere)
    refused(path, "symbolic link")


@pytest.mark.parametrize("which", ["manifest", "segment", "journal"])
def test_a_symlink_to_dev_zero_is_refused_without_reading_it(tmp_path: Path,
                                                            which: str) -> None:
    path, _, segment = json_checkpoint(tmp_path)
    target = {"manifest": path, "segment": segment,
              "journal": path.with_name("state.json.d") / "journal-000009.wal"}[which]
    target.unlink(missing_ok=True)
    target.symlink_to("/dev/zero")
    refused(path, "symbolic link")


@pytest.mark.parametrize("which", ["manifest", "segment", "journal"])
def test_a_fifo_is_refused_without_blocking(tmp_path: Path, which: str) -> None:
    path, _, segment = json_checkpoint(tmp_path)
    target = {"manifest": path, "segment": segment,
              "journal": path.with_name("state.json.d") / "journal-000009.wal"}[which]
    target.unlink(missing_ok=True)
    os.mkfifo(target)
    refused(path, "not a regular file")


def test_a_huge_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    path, _, segment = json_checkpoint(tmp_path)
    with open(segment, "wb") as f:  # sparse: 2 GB on paper, nothing on disk
        f.truncate(2 << 30)
    refused(path, "bytes, more than")
    with open(path, "wb") as f:
        f.truncate(64 << 20)
    refused(path, "bytes, more than")


# -- hostile or lying content --------------------------------------------------------------------

def test_nesting_bombs_are_checkpoint_errors(tmp_path: Path) -> None:
    path, body, segment = json_checkpoint(tmp_path)
    plant_segment(path, body, segment, b"[" * 100_000)
    refused(path, "cannot be decoded")
    path.write_bytes(b"[" * 100_000)
    refused(path, "manifest")
    # In a journal frame too (a JSON frame's tag is a plain digest anybody can compute).
    path.unlink()
    for p in path.with_name("state.json.d").iterdir():
        p.unlink()
    header = encode_header("json", 1, 0)
    path.with_name("state.json.d").joinpath("journal-000001.wal").write_bytes(
        header + encode_frame(b"[" * 100_000, plain_tagger(header)))
    refused(path, "cannot be decoded")


@pytest.mark.parametrize(("content", "why"), [
    ({}, "non-empty list"),
    ([], "non-empty list"),
    ([{**rec("a", 1), "attempts": "abc"}], "attempts"),
    ([{**rec("a", 1), "attempts": True}], "attempts"),
    ([{**rec("a", 1), "attempts": -1}], "attempts"),
    ([{k: v for k, v in rec("a", 1).items() if k != "fingerprint"}], "lacks fingerprint"),
    ([{**rec("a", 1), "surprise": 1}], "unknown fields"),
    ([{**rec("a", 1), "status": "running"}], "status"),
    ([{**rec("a", 1), "key": 5}], "key"),
    ([{**rec("a", 1), "started_at": "noon"}], "started_at"),
    ([rec("a", 1), rec("a", 2)], "twice"),
    ([rec("a", 1)], "holds 1 records"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_records_that_lie_are_checkpoint_errors(tmp_path: Path, content: Any,
                                                why: str) -> None:
    path, body, segment = json_checkpoint(tmp_path)
    plant_segment(path, body, segment, json.dumps(content).encode())
    refused(path, why)


@pytest.mark.parametrize("edit", [
    {"version": 99}, {"version": "2"}, {"version": 1}, {"journal_floor": -1},
    {"journal_floor": "x"}, {"extra": 1}, {"segments": {}}, {"codec": None},
])
def test_manifest_edits_are_checkpoint_errors(tmp_path: Path, edit: dict[str, Any]) -> None:
    path, body, _ = json_checkpoint(tmp_path)
    body.update(edit)
    path.write_text(json.dumps(body))
    refused(path)


def test_segments_without_their_manifest_are_not_a_fresh_start(tmp_path: Path) -> None:
    path, _, _ = json_checkpoint(tmp_path)
    path.unlink()
    refused(path, "manifest is missing")
    # Whatever the codec: resume(path) cannot read it from a manifest that is gone.
    pk = tmp_path / "state.pkl"
    PickleCheckpointer(pk).write_records({"a": rec("a", 1)})
    pk.unlink()
    refused(pk, "manifest is missing")


def test_a_frame_header_lying_about_its_size_is_a_torn_tail_not_a_crash(
        tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    JSONCheckpointer(path).append([rec("a", 1)])
    journal = path.with_name("state.json.d") / "journal-000001.wal"
    journal.write_bytes(journal.read_bytes() + struct.pack(">cI32s", b"F", 2**31, b"\0" * 32))
    assert set(JSONCheckpointer(path).read_records() or {}) == {"a"}


def test_a_good_checkpoint_still_resumes(tmp_path: Path) -> None:
    # The control: the helpers above build valid checkpoints, so each refusal is the edit's.
    path, _, _ = json_checkpoint(tmp_path)
    runner = TaskRunner.resume(path)
    assert set(runner._restored) == {"a", "b"}
    one = task(name="one")(lambda: 1)
    pk = tmp_path / "p.pkl"
    with TaskRunner(checkpointer=PickleCheckpointer(pk)) as r:
        r.submit(one)
        r.run()
    assert TaskRunner.resume(pk).submit(one).restored
