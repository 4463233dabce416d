"""Checkpointers: where finished tasks are recorded so a later process can skip them.

On disk a file checkpoint is a small *manifest* at the path the user gave plus immutable
*segments* in ``<path>.d/``. Every save writes one new segment holding only the records that
changed, then replaces the manifest atomically (temp file, fsync, rename, fsync of the folder).
A crash at any point leaves the previous manifest and the segments it names intact. Segments are
merged like a binary counter (a save folds in the newest segments not bigger than itself), so
there are O(log n) of them and each record is rewritten O(log n) times: the cost of a checkpoint
follows what changed, not the size of the whole state. Every segment's SHA-256 is in the
manifest, so a corrupt or truncated file raises ``CheckpointError`` naming it instead of starting
afresh.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
import pickle
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from .exceptions import CheckpointError

__all__ = ["Checkpointer", "FileCheckpointer", "JSONCheckpointer", "PickleCheckpointer",
           "atomic_write", "checkpointer_for_path"]

Record = dict[str, Any]
FORMAT = "pyworkflowy_nb-checkpoint"
FORMAT_VERSION = 1

# Codecs whose class lives outside the engine; resume imports the module by name on demand.
_CODEC_MODULES = {"cloudpickle": "pyworkflowy_nb.notebook._checkpoint"}


class Checkpointer(abc.ABC):
    """Stores task records. Subclass it and implement ``save`` and ``load``.

    ``save`` receives only the records that changed since the previous call (keyed by task
    key); ``load`` returns every record. ``check`` vets a value at submit time.
    """

    def check(self, value: object, *, what: str) -> None:
        """Raise :class:`CheckpointError` if ``value`` could not be stored. Default: accept."""
        return None

    @abc.abstractmethod
    def save(self, records: Mapping[str, Record]) -> None: ...

    @abc.abstractmethod
    def load(self) -> dict[str, Record]: ...

    def describe(self) -> str:
        return type(self).__name__


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # exact bits whatever the umask
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@dataclass(slots=True)
class _Segment:
    file: str
    sha256: str
    signature: str | None
    records: dict[str, Record] = field(default_factory=dict)


class FileCheckpointer(Checkpointer):
    """A manifest plus segments on disk; subclasses choose the codec of the segments."""

    codec: ClassVar[str] = ""
    suffix: ClassVar[str] = ".bin"
    file_mode: ClassVar[int] = 0o644
    dir_mode: ClassVar[int] = 0o755
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
        self._segments: list[_Segment] = []
        self._fresh = True  # the first save of a new (not loaded) checkpoint clears old files
        self._lock = threading.Lock()

    # -- codec hooks ---------------------------------------------------------------------------
    @abc.abstractmethod
    def encode(self, obj: object) -> bytes: ...

    @abc.abstractmethod
    def decode(self, data: bytes) -> object: ...

    def manifest_extra(self) -> dict[str, Any]:
        """Extra fields recorded in the manifest (versions, say)."""
        return {}

    def verify_manifest(self, manifest: dict[str, Any]) -> None:
        """Called on load before anything is decoded; raise CheckpointError to refuse."""

    def sign(self, data: bytes) -> str | None:
        """A signature stored beside each segment and the manifest; None means unsigned."""
        return None

    def verify(self, data: bytes, signature: str | None, where: str) -> None:
        """Raise CheckpointError if ``signature`` does not vouch for ``data``."""

    def describe(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    # -- saving ----------------------------------------------------------------------------------
    def save(self, records: Mapping[str, Record]) -> None:
        with self._lock:
            if not self.parts.is_dir():
                self.parts.mkdir(mode=self.dir_mode, parents=True, exist_ok=True)
                os.chmod(self.parts, self.dir_mode)  # mkdir's mode is filtered by the umask
            obsolete: list[str] = []
            if self._fresh:
                self._fresh = False
                obsolete.extend(p.name for p in self.parts.iterdir() if p.is_file())
            segments = self._segments
            if records:
                # Fold in the newest segments that are not bigger than what is being written,
                # in memory, so each save writes exactly one segment. The list is only swapped
                # in once the new segment is on disk: a failed write loses nothing.
                segments = list(segments)
                batch = dict(records)
                folded: list[str] = []
                while segments and len(segments[-1].records) <= len(batch):
                    older = segments.pop()
                    batch = {**older.records, **batch}
                    folded.append(older.file)
                segments.append(self._write_segment(batch))
                obsolete += folded
            self._write_manifest(segments)
            self._segments = segments
            live = {s.file for s in self._segments}
            for name in obsolete:
                if name not in live:
                    (self.parts / name).unlink(missing_ok=True)

    def _write_segment(self, records: dict[str, Record]) -> _Segment:
        data = self._encode_records(records)
        name = f"{uuid.uuid4().hex[:16]}{self.suffix}"
        atomic_write(self.parts / name, data, self.file_mode)
        return _Segment(name, hashlib.sha256(data).hexdigest(), self.sign(data), records)

    def _encode_records(self, records: dict[str, Record]) -> bytes:
        try:
            return self.encode(list(records.values()))
        except Exception:
            pass
        # One bad value must not cost the others their checkpoint: drop just its result.
        for key, rec in list(records.items()):
            try:
                self.encode([rec])
            except Exception as exc:
                records[key] = {**rec, "value": None, "status": "unpersisted",
                                "error": f"result not checkpointed: {exc}"}
        return self.encode(list(records.values()))

    def _write_manifest(self, segments: list[_Segment]) -> None:
        body: dict[str, Any] = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "codec": self.codec,
            "segments": [{"file": s.file, "sha256": s.sha256, "signature": s.signature,
                          "records": len(s.records)} for s in segments],
            **self.manifest_extra(),
        }
        signature = self.sign(_canonical(body))
        if signature is not None:
            body["manifest_signature"] = signature
        data = json.dumps(body, indent=1).encode()
        atomic_write(self.path, data, self.file_mode)

    # -- loading ---------------------------------------------------------------------------------
    def load(self) -> dict[str, Record]:
        with self._lock:
            manifest = read_manifest(self.path)
            if manifest.get("codec") != self.codec:
                raise CheckpointError(
                    f"checkpoint {self.path} was written with the {manifest.get('codec')!r} "
                    f"codec, not {self.codec!r}: open it with TaskRunner.resume(path), which "
                    "picks the right checkpointer", path=str(self.path))
            signature = manifest.pop("manifest_signature", None)
            self.verify(_canonical(manifest), signature, str(self.path))
            self.verify_manifest(manifest)
            segments: list[_Segment] = []
            merged: dict[str, Record] = {}
            try:
                entries = [(e["file"], e["sha256"], e.get("signature"))
                           for e in manifest["segments"]]
            except (KeyError, TypeError) as exc:
                raise _corrupt(self.path, f"bad segment list ({exc!r})") from exc
            for name, digest, sig in entries:
                seg_path = self.parts / str(name)
                try:
                    data = seg_path.read_bytes()
                except OSError as exc:
                    raise _corrupt(seg_path, f"segment unreadable ({exc.strerror})") from exc
                if hashlib.sha256(data).hexdigest() != digest:
                    raise _corrupt(seg_path, "segment does not match its SHA-256 (truncated or "
                                   "modified)")
                self.verify(data, sig, str(seg_path))
                try:
                    decoded = self.decode(data)
                    records = {str(r["key"]): r for r in decoded}  # type: ignore[attr-defined]
                except CheckpointError:
                    raise
                except Exception as exc:
                    raise _corrupt(seg_path, f"segment cannot be decoded ({exc!r})") from exc
                segments.append(_Segment(str(name), str(digest), sig, records))
                merged.update(records)
            self._segments = segments
            self._fresh = False  # keep building on what was loaded
            return merged


def _canonical(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _corrupt(path: Path, why: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {path} cannot be used: {why}; restore it from a backup or delete "
        f"{path} to start afresh", path=str(path))


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"no checkpoint at {path}: check the path, or run without "
                              "resume to create one", path=str(path)) from None
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc.strerror}",
                              path=str(path)) from exc
    try:
        manifest = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _corrupt(path, f"manifest is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _corrupt(path, "not a pyworkflowy_nb checkpoint manifest")
    if manifest.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {manifest.get('version')!r}; this "
            f"pyworkflowy_nb reads version {FORMAT_VERSION}", path=str(path))
    return manifest


def checkpointer_for_path(path: str | os.PathLike[str]) -> FileCheckpointer:
    """The checkpointer class recorded in the manifest at ``path``, instantiated on it."""
    manifest = read_manifest(Path(path))
    codec = str(manifest.get("codec"))
    if codec not in FileCheckpointer._registry and codec in _CODEC_MODULES:
        import importlib

        importlib.import_module(_CODEC_MODULES[codec])
    cls = FileCheckpointer._registry.get(codec)
    if cls is None:
        raise CheckpointError(
            f"checkpoint {path} uses the unknown codec {codec!r}: pass "
            "checkpointer=<the Checkpointer that wrote it> instead of a path", path=str(path))
    return cls(path)


class JSONCheckpointer(FileCheckpointer):
    """The default: readable JSON. Arguments and results must be JSON-serialisable."""

    codec: ClassVar[str] = "json"
    suffix: ClassVar[str] = ".json"

    def check(self, value: object, *, what: str) -> None:
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(
                f"cannot checkpoint {what}: a {type(value).__name__} is not JSON-serialisable "
                f"({exc}); pass JSON-friendly values or use PickleCheckpointer") from None

    def encode(self, obj: object) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    def decode(self, data: bytes) -> object:
        return json.loads(data)


class PickleCheckpointer(FileCheckpointer):
    """Anything pickle accepts. Loading a pickle runs code: only open files you wrote."""

    codec: ClassVar[str] = "pickle"
    suffix: ClassVar[str] = ".pkl"
    file_mode: ClassVar[int] = 0o600
    dir_mode: ClassVar[int] = 0o700

    def check(self, value: object, *, what: str) -> None:
        try:
            pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise CheckpointError(
                f"cannot checkpoint {what}: a {type(value).__name__} cannot be pickled "
                f"({exc}); pass picklable values or run without a checkpoint") from None

    def encode(self, obj: object) -> bytes:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

    def decode(self, data: bytes) -> object:
        return pickle.loads(data)
