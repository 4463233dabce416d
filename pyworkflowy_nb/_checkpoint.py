"""Checkpointers: where finished tasks are recorded so a later process can skip them.

**The contract** (0.1.0's, kept): a :class:`Checkpointer` subclass implements ``save(state)``,
which receives the whole state ``{"version": 1, "handles": [entry, ...]}``, and ``load()``,
which returns it (or None when nothing was saved yet). The runner saves a custom checkpointer's
state every ``checkpoint_interval`` seconds and when a run ends.

**The file checkpointers** keep that contract but store incrementally, like a database: a
*journal* of completion records plus a compacted form (a *manifest* at the user's path naming
immutable *segments* in ``<path>.d/``). Two guarantees, kept apart on purpose:

* *Process crash* (SIGKILL, OOM kill, a killed kernel): a task's record is appended to the
  journal with ``os.write`` before any dependent starts, before its handle says completed and
  before ``run()`` returns. The operating system then owns the bytes, so a crash at any moment
  loses only attempts in flight. Completions of one dispatcher pass share one write (group
  commit); nothing waits for the disk.
* *Power loss*: the journal is fsynced by the writer thread at most every
  ``checkpoint_interval`` seconds (as soon as possible at 0), so at most that much completed
  work is lost. A record torn by the power cut is dropped when reading.

The writer thread compacts in the background: it starts a new journal, writes the records of
the old one as a new segment (segments merge like a binary counter, so there are O(log n) of
them), replaces the manifest atomically (temp file, fsync, rename, fsync of the folder) with the
number of the last journal it covers, and only then deletes that journal. A crash at any point
leaves either the old manifest plus the journals it does not cover, or the new one. Resume reads
the manifest, its segments, then the newer journals in order.

**Trust.** Loading runs no code the user's key did not sign: every pickle-based codec (pickle
and the notebook's cloudpickle) signs its manifest, segments and journal frames with
HMAC-SHA256 under the per-user key of :mod:`._keys`, and verifies before anything is unpickled.
The codec named in a file only picks the class; the class's own rules decide whether it is
trusted, and the codec is covered by the signature, so no edit can choose a weaker one. JSON
checkpoints carry SHA-256 digests only, since decoding JSON runs no code. Reading is confined
and bounded (see :mod:`._ckpt_io`), and every record is validated (:mod:`._records`).
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import json
import json.encoder
import os
import pickle
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _encode_str
from pathlib import Path
from typing import Any, ClassVar

from ._ckpt_io import (
    CheckpointFiles,
    Tagger,
    atomic_write,
    close_synced,
    encode_frame,
    encode_header,
    fsync_dir,
    journal_name,
    keyed_tagger,
    loads_json,
    manifest_body,
    new_segment_name,
    parse_frames,
    parse_header,
    parse_journal_name,
    plain_tagger,
    segment_pattern,
    write_all,
)
from ._identity import scalar_json as _scalar_json
from ._records import Invalid, Record, records_from_state, state_from_records, validate_records
from .exceptions import CheckpointError

__all__ = ["Checkpointer", "FileCheckpointer", "JSONCheckpointer", "PickleCheckpointer",
           "SignedCheckpointer", "atomic_write", "checkpointer_for_path"]

FORMAT = "pyworkflowy_nb-checkpoint"
FORMAT_VERSION = 2  # 2 added the journal; version 1 manifests (no journal) still load
SIGNATURE_SCHEME = "hmac-sha256"

# Codecs whose class lives in another module register themselves when it is imported (see
# FileCheckpointer.__init_subclass__); for a fresh process, where nothing imported it yet, a
# package declares the class under this entry-point group and resume() loads it by codec name.
CODEC_ENTRY_POINTS = "pyworkflowy_nb.codecs"
_BASE_FIELDS = frozenset({"format", "version", "codec", "segments"})
_SEGMENT_FIELDS = frozenset({"file", "sha256", "signature", "records"})
_SCALARS = (int, str, bool, type(None))
_ANY_SEGMENT = re.compile(r"[0-9a-f]{16}\.[a-z]+")  # a segment of any codec

_JSON = json.JSONEncoder(separators=(",", ":"))
# json.dumps builds a C encoder per call, which costs more than encoding a small record; the
# journal encodes one record per completion, so it keeps one. (No cycle check: a cyclic value
# ends in RecursionError, which makes that record "unpersisted" like any unencodable value.)
_MAKE_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODE = (_MAKE_ENCODER(None, _JSON.default, json.encoder.encode_basestring_ascii, None, ":",
                           ",", False, False, True) if _MAKE_ENCODER is not None else None)



def _scalars_json(values: Iterable[object]) -> str | None:
    parts = []
    for value in values:
        text = _scalar_json(value)
        if text is None:
            return None
        parts.append(text)
    return "[" + ",".join(parts) + "]"


# The completions of one commit share their finish time (one float object): its text is kept
# from the record before, saving a float repr per record of a wide pass.
_finish_memo: tuple[object, str | None] = (None, "null")


def _record_json(rec: Record) -> bytes | None:
    """A journal record of scalars formatted directly (one per completion): what the C
    encoder writes for the dict, minus its per-key work, and decoding to the same record. None
    when the value or an argument is not a plain scalar, or a field has an unexpected type
    (the encoder handles, or refuses, those)."""
    global _finish_memo
    if len(rec) != 12:
        return None
    try:
        value = _scalar_json(rec["value"])
        args, kwargs, attempts = rec["args"], rec["kwargs"], rec["attempts"]
        started = _scalar_json(rec["started_at"])
        stamp, memo = rec["finished_at"], _finish_memo
        if stamp is memo[0]:
            finished: str | None = memo[1]
        else:
            finished = _scalar_json(stamp)
            _finish_memo = (stamp, finished)
        if (value is None or started is None or finished is None or type(args) is not tuple
                or type(kwargs) is not dict or kwargs or type(attempts) is not int):
            return None
        args_json = _scalars_json(args) if args else "[]"
        if args_json is None:
            return None
        key, name, fp, status = rec["key"], rec["name"], rec["fingerprint"], rec["status"]
        error, parents = rec["error"], rec["depends_on"]
        deps = "[" + ",".join(map(_encode_str, parents)) + "]" if parents else "[]"
        text = (f'{{"key":{_encode_str(key)},"name":{_encode_str(name)},'
                f'"fingerprint":{_encode_str(fp)},"status":{_encode_str(status)},'
                f'"value":{value},"error":{"null" if error is None else _encode_str(error)},'
                f'"attempts":{int.__repr__(attempts)},"started_at":{started},'
                f'"finished_at":{finished},'
                f'"args":{args_json},"kwargs":{{}},"depends_on":{deps}}}')
    except (KeyError, TypeError):  # a field of another type: the encoder decides
        return None
    return text.encode()


class Checkpointer(abc.ABC):
    """Stores the runner's state. Subclass it and implement ``save`` and ``load``.

    ``save(state)`` receives the whole state, ``{"version": 1, "handles": [entry, ...]}``,
    one entry per handle in submission order (``id``, ``name``, ``args``, ``kwargs``,
    ``depends_on``, ``status``, ``value``, ``error``, ``attempts``, ``started_at``,
    ``finished_at``, ``fingerprint``); ``load()`` returns what was saved, or None when nothing
    was. ``check`` vets a value at submit time.
    """

    def check(self, value: object, *, what: str) -> None:
        """Raise :class:`CheckpointError` if ``value`` could not be stored. Default: accept."""
        return None

    @abc.abstractmethod
    def save(self, state: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def load(self) -> dict[str, Any] | None: ...

    def describe(self) -> str:
        return type(self).__name__


@dataclass(slots=True)
class _Segment:
    file: str
    sha256: str
    signature: str | None
    records: dict[str, Record] = field(default_factory=dict)


class FileCheckpointer(Checkpointer):
    """A journal plus manifest and segments on disk; subclasses choose the codec.

    Besides the whole-state ``save``/``load`` contract, the runner's writer uses an internal
    incremental protocol: :meth:`read_records`, :meth:`append` (loop thread, one ``os.write``),
    :meth:`sync` (fsync) and :meth:`compact` (writer thread).
    """

    codec: ClassVar[str] = ""
    suffix: ClassVar[str] = ".bin"
    file_mode: ClassVar[int] = 0o644
    dir_mode: ClassVar[int] = 0o755
    signed: ClassVar[bool] = False
    joins_parts: ClassVar[bool] = False  # encode_part/join_parts are implemented
    manifest_fields: ClassVar[frozenset[str]] = frozenset()  # extra fields the codec writes
    _registry: ClassVar[dict[str, type[FileCheckpointer]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("codec"):
            FileCheckpointer._registry[cls.codec] = cls

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if not isinstance(path, str | os.PathLike) or not os.fspath(path):
            raise TypeError(f"checkpoint path must be a file path, got {path!r}")
        self.path = Path(path)
        self.parts = self.path.with_name(self.path.name + ".d")
        self._files = CheckpointFiles(self.path)
        self._segment_re = segment_pattern(self.suffix)
        self._lock = threading.Lock()  # compaction and loading
        self._jlock = threading.Lock()  # the journal: appends (loop thread) and rotation
        self._segments: list[_Segment] = []
        self._fresh = True  # the first write of a new (not loaded) checkpoint clears old files
        self._has_manifest = False
        self._floor = 0  # the last journal the manifest covers
        self._seq = 0  # the highest journal number seen or written
        self._jfd: int | None = None
        self._jname = ""
        self._tag: Tagger | None = None
        self._unfolded: dict[str, Record] = {}  # in journals, not yet in segments
        self._parts: dict[str, bytes] = {}  # encode_part() of known records, by key
        self._stale: list[str] = []  # journal files the next compaction makes obsolete
        self._retired: list[int] = []  # journal descriptors to close on the writer thread
        self._unsynced = False
        self._new_file = False
        self._journal_bytes = 0
        self._dir_checked = False

    # -- codec hooks ---------------------------------------------------------------------------
    @abc.abstractmethod
    def encode(self, obj: object) -> bytes: ...

    @abc.abstractmethod
    def decode(self, data: bytes) -> object: ...

    def encode_part(self, rec: Record) -> bytes:
        """With ``joins_parts``: one record's encoding such that :meth:`join_parts` of several
        is ``encode`` of their list. Journal appends then encode each record once, and
        compaction only joins bytes (JSON can do this; pickles cannot)."""
        raise NotImplementedError

    def join_parts(self, parts: list[bytes]) -> bytes:
        raise NotImplementedError

    def manifest_extra(self) -> dict[str, Any]:
        """Extra fields recorded in the manifest (versions, say); see ``manifest_fields``."""
        return {}

    def verify_manifest(self, manifest: dict[str, Any]) -> None:
        """Called on load before anything is decoded; raise CheckpointError to refuse."""

    def sign(self, data: bytes) -> str | None:
        """A signature stored beside each segment and the manifest; None means unsigned."""
        return None

    def verify(self, data: bytes, signature: object, what: str) -> None:
        """Raise CheckpointError if ``signature`` does not vouch for ``data``."""

    def _tagger(self, header: bytes) -> Tagger:
        return plain_tagger(header)

    def describe(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    # -- the 0.1.0 contract --------------------------------------------------------------------
    def save(self, state: dict[str, Any]) -> None:
        """Replace the checkpoint with ``state`` (a whole state, as the contract says)."""
        records = records_from_state(state, str(self.path))
        with self._lock, self._jlock:
            self._fresh = True
            self._segments = []
            self._parts = {}
            self._unfolded = dict(records)
        self.compact()

    def load(self) -> dict[str, Any] | None:
        """The stored state, or None when nothing was written at this path yet."""
        records = self.read_records()
        return None if records is None else state_from_records(records.values())

    # -- the incremental protocol ----------------------------------------------------------------
    def exists(self) -> bool:
        """Whether anything was written here: a manifest, or a journal (before the first)."""
        if self.path.exists():
            return True
        try:
            return any(parse_journal_name(n) is not None for n in os.listdir(self.parts))
        except OSError:
            return False

    def write_records(self, records: Mapping[str, Record]) -> None:
        """Store ``records`` (by key) straight into a segment and the manifest."""
        with self._jlock:
            self._unfolded.update(records)
            for key in records:
                self._parts.pop(key, None)
        self.compact()

    def append(self, records: list[Record]) -> None:
        """Append one frame holding ``records`` to the journal: one ``os.write``, no fsync.

        Called by the runner's loop thread before it lets anyone see these completions.
        """
        payload = self._encode_records(records, remember=True)
        with self._jlock:
            for rec in records:
                self._unfolded[rec["key"]] = rec  # a later compaction stores them either way
            if self._jfd is None:
                self._open_journal()
            assert self._jfd is not None and self._tag is not None
            frame = encode_frame(payload, self._tag)
            try:
                write_all(self._jfd, frame)
            except BaseException:
                # Part of the frame may be on disk: start the next append in a new journal, so
                # that torn frame stays the last of its file (and is dropped when read).
                self._retired.append(self._jfd)
                self._stale.append(self._jname)
                self._jfd = None
                raise
            self._unsynced = True
            self._journal_bytes += len(frame)

    @property
    def journal_bytes(self) -> int:
        """Bytes appended since the last compaction (the writer compacts past a threshold)."""
        return self._journal_bytes

    def sync(self) -> None:
        """fsync the journal (and its folder, once per new file): the power-loss guarantee."""
        # Under the compaction lock: only a compaction closes the current descriptor, so it
        # stays valid here even when two writers (runners) share this checkpointer.
        with self._lock:
            with self._jlock:
                fd, dirty, new = self._jfd, self._unsynced, self._new_file
                self._unsynced = self._new_file = False
                retired, self._retired = self._retired, []
            for old in retired:
                close_synced(old)
            if fd is not None and dirty:
                os.fsync(fd)
            if new:
                fsync_dir(self.parts)

    def compact(self) -> None:
        """Fold the journals into a segment and a new manifest, then delete them."""
        with self._lock:
            with self._jlock:
                fresh = self._fresh
                if fresh:
                    self._clear()  # under the journal lock: an append cannot clear it twice
                batch, self._unfolded = self._unfolded, {}
                stale, self._stale = self._stale, []
                old_fd, retired = self._jfd, self._retired
                self._retired = []
                if old_fd is not None:
                    stale.append(self._jname)
                    self._jfd = None  # the next append opens a new journal
                floor = self._seq
                self._journal_bytes = 0
            old_fds = ([old_fd] if old_fd is not None else []) + retired
            if not batch and not stale and self._has_manifest and not fresh:
                for fd in old_fds:
                    os.close(fd)
                return
            try:
                self._ensure_dir()
                segments, obsolete = self._merge(batch)
                self._write_manifest(segments, floor)
            except BaseException:
                for fd in old_fds:
                    close_synced(fd)  # the journals stay the record: make them durable
                with self._jlock:  # keep everything for a retry; newer appends win
                    self._unfolded = {**batch, **self._unfolded}
                    self._stale = stale + self._stale
                raise
            for fd in old_fds:
                os.close(fd)  # no fsync: the durable manifest now covers them
            self._segments = segments
            self._floor = floor
            self._has_manifest = True
            live = {s.file for s in segments}
            for name in obsolete + stale:
                if name not in live:
                    (self.parts / name).unlink(missing_ok=True)

    # -- writing helpers -------------------------------------------------------------------------
    def _open_journal(self) -> None:
        if self._fresh:
            self._clear()
        self._ensure_dir()
        flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
                 | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        seq = self._seq + 1
        while True:
            try:
                fd = os.open(self.parts / journal_name(seq), flags, self.file_mode)
                break
            except FileExistsError:  # left by a process that did not get to compact
                seq += 1
        try:
            os.fchmod(fd, self.file_mode)
            # "after": 1 + the floor of the manifest this journal builds on, 0 for none, so a
            # manifest removed (or replaced by an older one) later is noticed.
            header = encode_header(self.codec, seq,
                                   self._floor + 1 if self._has_manifest else 0)
            write_all(fd, header)
        except BaseException:
            os.close(fd)
            raise
        self._seq, self._jfd, self._jname = seq, fd, journal_name(seq)
        self._tag = self._tagger(header)
        self._new_file = True

    def _ensure_dir(self) -> None:
        if os.path.islink(self.parts):
            raise self._files.error("its folder is a symbolic link, which is never followed",
                                    self.parts.name)
        if not self.parts.is_dir():
            self.parts.mkdir(mode=self.dir_mode, parents=True, exist_ok=True)
        if not self._dir_checked:
            # mkdir's mode is filtered by the umask, and a folder left by a laxer writer is
            # tightened before anything goes in.
            os.chmod(self.parts, self.dir_mode)
            self._dir_checked = True

    def _clear(self) -> None:
        """Remove what an earlier checkpoint at this path left (manifest first)."""
        self._fresh = False
        self.path.unlink(missing_ok=True)
        if self.parts.is_dir() and not self.parts.is_symlink():
            for name in os.listdir(self.parts):
                target = self.parts / name
                if not target.is_dir() or target.is_symlink():
                    target.unlink(missing_ok=True)

    def _merge(self, batch: dict[str, Record]) -> tuple[list[_Segment], list[str]]:
        # Fold in the newest segments that are not bigger than what is being written, in
        # memory, so each compaction writes exactly one segment. The list is only swapped in
        # once the new segment is on disk: a failed write loses nothing.
        segments = list(self._segments)
        folded: list[str] = []
        if batch:
            while segments and len(segments[-1].records) <= len(batch):
                older = segments.pop()
                batch = {**older.records, **batch}
                folded.append(older.file)
            segments.append(self._write_segment(batch))
        return segments, folded

    def _write_segment(self, records: dict[str, Record]) -> _Segment:
        items = list(records.values())
        data = self._encode_records(items, remember=False)
        name = new_segment_name(self.suffix)
        atomic_write(self.parts / name, data, self.file_mode)
        return _Segment(name, hashlib.sha256(data).hexdigest(), self.sign(data),
                        {r["key"]: r for r in items})

    def _encode_records(self, records: list[Record], *, remember: bool) -> bytes:
        """Encode ``records``; one unstorable value costs only its own record's value (that
        record is replaced, in the list, by an "unpersisted" one)."""
        if self.joins_parts:
            known = self._parts
            parts = []
            for i, rec in enumerate(records):
                part = None if remember else known.get(rec["key"])
                if part is None:
                    try:
                        part = self.encode_part(rec)
                    except Exception as exc:
                        records[i] = rec = _unpersisted(rec, exc)
                        part = self.encode_part(rec)
                    assert part is not None
                    known[rec["key"]] = part
                parts.append(part)
            return self.join_parts(parts)
        try:
            return self.encode(records)
        except Exception:
            pass
        for i, rec in enumerate(records):
            try:
                self.encode([rec])
            except Exception as exc:
                records[i] = _unpersisted(rec, exc)
        return self.encode(records)

    def _write_manifest(self, segments: list[_Segment], floor: int) -> None:
        body: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "codec": self.codec,
            "segments": [{"file": s.file, "sha256": s.sha256, "signature": s.signature,
                          "records": len(s.records)} for s in segments],
            "journal_floor": floor,
            **self.manifest_extra(),
        }
        signature = self.sign(_manifest_bytes(body))
        if signature is not None:
            body["manifest_signature"] = signature
        atomic_write(self.path, json.dumps(body, indent=1).encode(), self.file_mode)

    # -- loading ---------------------------------------------------------------------------------
    def read_records(self) -> dict[str, Record] | None:
        """Every stored record by key (newest wins), or None when nothing was written yet.

        Afterwards this checkpointer builds on what it read instead of starting afresh.
        """
        for _ in range(20):
            try:
                return self._read_records()
            except _Vanished:
                continue  # compacted while we read: read the new manifest
        raise self._files.error("it keeps changing while being read (another writer?)")

    def _read_records(self) -> dict[str, Record] | None:
        files = self._files
        with self._lock:
            raw = files.read_manifest_bytes()
            dir_fd = files.open_parts()
            try:
                names = files.list_parts(dir_fd) if dir_fd is not None else []
                journals = sorted((seq, n) for n in names
                                  if (seq := parse_journal_name(n)) is not None)
                if raw is None and not journals:
                    if any(self._segment_re.fullmatch(n) for n in names):
                        raise files.error("its manifest is missing but its folder holds "
                                          "segments")
                    return None  # nothing written yet (or killed before the first write)
                segments: list[_Segment] = []
                merged: dict[str, Record] = {}
                floor = 0
                if raw is not None:
                    manifest = self._parse_manifest(raw)
                    floor = manifest.get("journal_floor", 0)
                    segments = self._read_segments(dir_fd, manifest["segments"])
                    for seg in segments:
                        merged.update(seg.records)
                unfolded: dict[str, Record] = {}
                for seq, name in journals:
                    if seq > floor:
                        unfolded.update(self._read_journal(dir_fd, name, seq, floor,
                                                           raw is not None))
            finally:
                if dir_fd is not None:
                    os.close(dir_fd)
            merged.update(unfolded)
            with self._jlock:
                self._segments = segments
                self._floor = floor
                self._has_manifest = raw is not None
                self._seq = max([floor] + [seq for seq, _ in journals])
                self._unfolded = unfolded
                self._parts = {}
                self._stale = [n for _, n in journals]
                self._fresh = False
            return merged

    def _parse_manifest(self, raw: bytes) -> dict[str, Any]:
        files = self._files
        body = manifest_body(files, raw, FORMAT)
        version = body.get("version")
        if version not in (1, FORMAT_VERSION) or type(version) is not int:
            raise CheckpointError(
                f"checkpoint {self.path} has format version {version!r:.40}; this "
                f"pyworkflowy_nb reads versions 1 and {FORMAT_VERSION}: open it with the "
                "version that wrote it, or delete it to start afresh", path=str(self.path))
        if body.get("codec") != self.codec:
            raise CheckpointError(
                f"checkpoint {self.path} was written with the {body.get('codec')!r:.40} codec, "
                f"not {self.codec!r}: open it with TaskRunner.resume(path), which picks the "
                "right checkpointer", path=str(self.path))
        signature = body.pop("manifest_signature", None)
        if self.signed:
            self.verify(_manifest_bytes(body), signature, "the manifest")
        elif signature is not None:
            raise files.error(f"its manifest is signed, which the {self.codec} codec never "
                              "does")
        expected = _BASE_FIELDS | self.manifest_fields | (
            {"journal_floor"} if version == FORMAT_VERSION else set())
        if set(body) != expected:
            odd = sorted(set(body) ^ expected)
            raise files.error(f"its manifest has missing or unknown fields "
                              f"({', '.join(map(str, odd))[:80]})")
        if version == FORMAT_VERSION and (type(body["journal_floor"]) is not int
                                          or body["journal_floor"] < 0):
            raise files.error("its manifest's journal_floor is not a whole number")
        self.verify_manifest(body)
        if not isinstance(body["segments"], list):
            raise files.error("its manifest's segment list is not a list")
        return body

    def _read_segments(self, dir_fd: int | None, entries: list[Any]) -> list[_Segment]:
        files = self._files
        segments: list[_Segment] = []
        for entry in entries:
            if not isinstance(entry, dict) or set(entry) != _SEGMENT_FIELDS:
                raise files.error("its manifest has a malformed segment entry")
            name, digest, sig, count = (entry["file"], entry["sha256"], entry["signature"],
                                        entry["records"])
            if not isinstance(name, str) or not self._segment_re.fullmatch(name):
                raise files.error(f"its manifest names the segment {name!r:.80}, which is not "
                                  "a segment file name this checkpoint writes")
            if not isinstance(digest, str) or type(count) is not int or count < 1:
                raise files.error(f"its manifest's entry for {name} is malformed")
            what = f"segment {self.parts / name}"
            data = files.read_part(dir_fd, name, what) if dir_fd is not None else None
            if data is None:
                raise files.error("the segment is missing", what)
            if not hmac.compare_digest(hashlib.sha256(data).hexdigest(), digest):
                raise files.error("the segment does not match its SHA-256 (truncated or "
                                  "modified)", what)
            if self.signed:
                self.verify(data, sig, what)
            records = self._decode_records(data, what)
            if len(records) != count:
                raise files.error(f"the segment holds {len(records)} records, its manifest "
                                  f"says {count}", what)
            segments.append(_Segment(name, digest, sig, records))
        return segments

    def _read_journal(self, dir_fd: int | None, name: str, seq: int, floor: int,
                      has_manifest: bool) -> dict[str, Record]:
        files = self._files
        what = f"journal {self.parts / name}"
        data = files.read_part(dir_fd, name, what) if dir_fd is not None else None
        if data is None:
            raise _Vanished  # compacted between the listing and now: the manifest is newer
        try:
            header, start = parse_header(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise files.error(str(exc), what) from None
        if header is None:
            return {}  # torn before its first frame
        if header["codec"] != self.codec:
            raise files.error(f"the journal was written with the {header['codec']!r:.40} "
                              f"codec, not {self.codec!r}", what)
        if header["seq"] != seq:
            raise files.error("the journal's header does not match its file name", what)
        if header["after"] > floor + 1 or (header["after"] and not has_manifest):
            raise files.error("the journal builds on a newer manifest than the one present "
                              "(was the manifest replaced or removed?)", what)
        try:
            payloads = parse_frames(data, start, self._tagger(data[:start]))
        except ValueError as exc:
            raise files.error(str(exc), what) from None
        out: dict[str, Record] = {}
        for payload in payloads:
            out.update(self._decode_records(payload, what))
        return out

    def _decode_records(self, data: bytes, what: str) -> dict[str, Record]:
        try:
            decoded = self.decode(data)
        except CheckpointError:
            raise
        except Exception as exc:  # RecursionError included: a nesting bomb
            raise self._files.error(f"it cannot be decoded ({type(exc).__name__}: "
                                    f"{str(exc)[:120]})", what) from None
        try:
            return validate_records(decoded)
        except Invalid as exc:
            raise self._files.error(f"it holds a malformed record: {exc}", what) from None
        except RecursionError:
            raise self._files.error("it is nested too deeply", what) from None


class _Vanished(Exception):
    """A journal listed a moment ago is gone: a compaction finished meanwhile."""


def _unpersisted(rec: Record, exc: BaseException) -> Record:
    return {**rec, "value": None, "status": "unpersisted",
            "error": f"result not checkpointed: {exc}"[:500]}


def _manifest_bytes(body: Mapping[str, Any]) -> bytes:
    """The manifest body in the one byte form its signature covers (sorted keys, no blanks)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _key_id(key: bytes) -> str:
    """A public name for the key, so a refusal can say 'another key' rather than 'tampered'."""
    return hmac.new(key, b"pyworkflowy_nb key id", hashlib.sha256).hexdigest()[:16]


class SignedCheckpointer(FileCheckpointer):
    """A file checkpointer whose every byte is signed with HMAC-SHA256 under a per-user key.

    ``key`` is the secret (at least 16 bytes); by default it is read from, or created in, the
    user's config folder (see :func:`~pyworkflowy_nb._keys.default_key_path`). Nothing is
    decoded before its signature checked out, so a file from anybody without the key fails to
    load rather than run its code.
    """

    file_mode: ClassVar[int] = 0o600
    dir_mode: ClassVar[int] = 0o700
    signed: ClassVar[bool] = True
    manifest_fields: ClassVar[frozenset[str]] = frozenset({"signature_scheme", "key_id"})

    def __init__(self, path: str | os.PathLike[str], *, key: bytes | None = None) -> None:
        super().__init__(path)
        if key is None:
            self._key: bytes | None = None
            self._key_source = "your checkpoint key"
        else:
            if not isinstance(key, bytes | bytearray):
                raise TypeError(
                    f"key must be bytes (e.g. secrets.token_bytes(32)), got {type(key).__name__}")
            if len(key) < 16:
                raise ValueError(
                    f"key must be at least 16 bytes to sign checkpoints safely, got {len(key)}; "
                    "use secrets.token_bytes(32)")
            self._key = bytes(key)
            self._key_source = f"the key passed to {type(self).__name__}"

    def _signing_key(self) -> bytes:
        # Read (or created) on first use, so a runner that never writes never touches it.
        if self._key is None:
            from ._keys import default_key_path, load_or_create_key

            self._key = load_or_create_key()
            self._key_source = str(default_key_path())
        return self._key

    def manifest_extra(self) -> dict[str, Any]:
        return {"signature_scheme": SIGNATURE_SCHEME, "key_id": _key_id(self._signing_key())}

    def verify_manifest(self, manifest: dict[str, Any]) -> None:
        scheme = manifest.get("signature_scheme")
        if scheme != SIGNATURE_SCHEME:
            raise CheckpointError(
                f"checkpoint {self.path} is signed with {scheme!r:.40}, expected "
                f"{SIGNATURE_SCHEME!r}; it was not written by {type(self).__name__}",
                path=str(self.path))

    def sign(self, data: bytes) -> str:
        from ._keys import sign_bytes

        return sign_bytes(self._signing_key(), data)

    def _tagger(self, header: bytes) -> Tagger:
        return keyed_tagger(self._signing_key(), header)

    def verify(self, data: bytes, signature: object, what: str) -> None:
        from ._keys import signatures_match

        key = self._signing_key()
        if signatures_match(key, data, signature):
            return
        if signature is None:
            why = "it carries no signature"
        elif what == "the manifest" and _manifest_key_id(data) not in (None, _key_id(key)):
            why = (f"it was signed with another key than {self._key_source} (written by "
                   "another user, or before the key file was replaced)")
        else:
            why = "its signature does not match: it was modified after it was written"
        label = (f"checkpoint manifest {self.path}" if what == "the manifest"
                 else f"checkpoint {self.path}: {what}")
        raise CheckpointError(
            f"{label} failed the integrity check ({why}); it was not "
            "loaded, because unpickling an untrusted file can run arbitrary code. Delete "
            f"{self.path} and its .d folder to start afresh", path=str(self.path))


def _manifest_key_id(data: bytes) -> str | None:
    try:
        body = json.loads(data)
    except ValueError:
        return None
    key_id = body.get("key_id") if isinstance(body, dict) else None
    return key_id if isinstance(key_id, str) else None


def checkpointer_for_path(path: str | os.PathLike[str]) -> FileCheckpointer:
    """The checkpointer class that wrote ``path`` (from its manifest, else its first journal),
    instantiated on it; a JSONCheckpointer when nothing was written there yet.

    The codec only picks the class: a pickle-based class then refuses anything its key did
    not sign, so naming a weaker codec in a file gains an attacker nothing.
    """
    if not isinstance(path, str | os.PathLike) or not os.fspath(path):
        raise TypeError(f"checkpoint path must be a file path, got {path!r}")
    files = CheckpointFiles(Path(path))
    codec = _recorded_codec(files)
    if codec is None:
        return JSONCheckpointer(path)
    cls = FileCheckpointer._registry.get(codec) or _codec_from_entry_points(codec)
    if cls is None:
        raise CheckpointError(
            f"checkpoint {path} uses the codec {codec!r:.40}, which no imported module and no "
            f"installed {CODEC_ENTRY_POINTS!r} entry point provides: import the package that "
            "wrote it (the one defining its Checkpointer class) before resume(), install that "
            "package so its entry point is declared, or pass checkpointer=<the Checkpointer "
            "that wrote it>", path=str(path))
    return cls(path)


def _codec_from_entry_points(codec: str) -> type[FileCheckpointer] | None:
    """The FileCheckpointer class an installed package declares for ``codec``, or None."""
    from importlib.metadata import entry_points

    for point in entry_points(group=CODEC_ENTRY_POINTS, name=codec):
        loaded = point.load()  # importing the module registers the class
        if isinstance(loaded, type) and issubclass(loaded, FileCheckpointer) \
                and loaded.codec == codec:
            return loaded
    return FileCheckpointer._registry.get(codec)


def _recorded_codec(files: CheckpointFiles) -> str | None:
    raw = files.read_manifest_bytes()
    if raw is not None:
        codec = manifest_body(files, raw, FORMAT).get("codec")
        if not isinstance(codec, str):
            raise files.error("its manifest names no codec")
        return codec
    dir_fd = files.open_parts()
    if dir_fd is None:
        return None
    try:
        names = files.list_parts(dir_fd)
        journals = sorted((seq, n) for n in names if (seq := parse_journal_name(n)) is not None)
        if not journals and any(_ANY_SEGMENT.fullmatch(n) for n in names):
            # Segments of some codec but nothing naming them: not "nothing written yet".
            raise files.error("its manifest is missing but its folder holds segments")
        for _, name in journals:
            data = files.read_part(dir_fd, name, f"journal {name}")
            try:
                header, _ = parse_header(data or b"")
            except (ValueError, UnicodeDecodeError) as exc:
                raise files.error(str(exc), f"journal {name}") from None
            if header is not None:
                return str(header["codec"])
        return None
    finally:
        os.close(dir_fd)


class JSONCheckpointer(FileCheckpointer):
    """The default: readable JSON. Arguments and results must be JSON-serialisable."""

    codec: ClassVar[str] = "json"
    suffix: ClassVar[str] = ".json"
    joins_parts: ClassVar[bool] = True

    def check(self, value: object, *, what: str) -> None:
        if type(value) in _SCALARS or (type(value) is float):
            return  # always JSON: skip a trial encoding on every submit
        try:
            json.dumps(value)
        except (TypeError, ValueError, RecursionError) as exc:
            raise CheckpointError(
                f"cannot checkpoint {what}: a {type(value).__name__} is not JSON-serialisable "
                f"({exc}); pass JSON-friendly values or use PickleCheckpointer") from None

    def encode(self, obj: object) -> bytes:
        return _JSON.encode(obj).encode()

    def decode(self, data: bytes) -> object:
        return loads_json(data)

    def encode_part(self, rec: Record) -> bytes:
        fast = _record_json(rec)
        if fast is not None:
            return fast
        if _C_ENCODE is None:  # not CPython
            return _JSON.encode(rec).encode()
        return "".join(_C_ENCODE(rec, 0)).encode()

    def join_parts(self, parts: list[bytes]) -> bytes:
        if len(parts) == 1:  # a chain's commit: one record
            return b"[" + parts[0] + b"]"
        return b"[" + b",".join(parts) + b"]"


class PickleCheckpointer(SignedCheckpointer):
    """Anything pickle accepts, signed with your per-user key: only files you wrote load."""

    codec: ClassVar[str] = "pickle"
    suffix: ClassVar[str] = ".pkl"

    def check(self, value: object, *, what: str) -> None:
        if type(value) in _SCALARS or type(value) is float:
            return
        try:
            pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise CheckpointError(
                f"cannot checkpoint {what}: a {type(value).__name__} cannot be pickled "
                f"({exc}); pass picklable values or run without a checkpoint") from None

    def encode(self, obj: object) -> bytes:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, data: bytes) -> object:
        # Only reached once verify() accepted the bytes.
        return pickle.loads(data)

