"""Checkpoint files on disk: confined, bounded reading, atomic writing, and the journal's frames.

Reading decides what a checkpoint may make us open. Only the file the user named and plain file
names inside ``<path>.d/`` that match the patterns this version writes are ever opened; the
folder is opened once with ``O_NOFOLLOW | O_DIRECTORY`` and files relative to it, so neither a
segment name (``/etc/passwd``, ``../x``) nor a symlink (the folder itself, or a file pointing at
``/dev/zero``) leads elsewhere. Every open uses ``O_NOFOLLOW | O_NONBLOCK`` (a FIFO cannot make
us wait), then ``fstat`` must show a regular file within a size bound, so nothing can hang the
reader or exhaust its memory. Every refusal is a :class:`CheckpointError` whose ``path`` is the
checkpoint the user gave and whose message says what to do, never to delete a file outside it.

A journal file is ``journal-<seq>.wal``: one JSON header line, then frames. A frame is ``b"F"``,
the payload's length (4 bytes, big-endian), a 32-byte tag and the payload (the codec's encoding
of a list of records). The tag is HMAC-SHA256 under the per-user key for pickle-based codecs and
a plain SHA-256 otherwise; either covers the header line too, so a frame cannot be moved to
another journal or read under an edited codec. Appends are single ``os.write`` calls, so a
process crash leaves whole frames; only power loss can leave a torn last frame, which
:func:`parse_frames` drops (an incomplete frame, or zeros, at the end). Anything else that does
not check out raises.
"""

from __future__ import annotations

import errno
import hashlib
import hmac
import json
import os
import re
import stat
import struct
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .exceptions import CheckpointError

__all__ = ["JOURNAL_FORMAT", "MAX_FILE_BYTES", "MAX_MANIFEST_BYTES", "CheckpointFiles",
           "atomic_write", "encode_frame", "journal_name", "parse_frames", "parse_journal_name"]

MAX_MANIFEST_BYTES = 16 << 20  # a manifest lists O(log n) segments: a few KiB in practice
MAX_FILE_BYTES = 1 << 30  # per segment or journal file; a bigger one is refused, not read
JOURNAL_FORMAT = "pyworkflowy_nb-journal"
_HEADER_MAX = 4096
_FRAME_HEAD = struct.Struct(">cI32s")  # marker, payload length, tag
_MARK = b"F"
_JOURNAL_RE = re.compile(r"journal-([0-9]{6,12})\.wal")
_READ_FLAGS = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
               | getattr(os, "O_CLOEXEC", 0))


def journal_name(seq: int) -> str:
    return f"journal-{seq:06d}.wal"


def parse_journal_name(name: str) -> int | None:
    match = _JOURNAL_RE.fullmatch(name)
    return int(match.group(1)) if match else None


def segment_pattern(suffix: str) -> re.Pattern[str]:
    """The names this version gives segments: 16 hex digits and the codec's suffix."""
    return re.compile(r"[0-9a-f]{16}" + re.escape(suffix))


def new_segment_name(suffix: str) -> str:
    return f"{uuid.uuid4().hex[:16]}{suffix}"


class CheckpointFiles:
    """Reads the files of one checkpoint: the manifest at ``path`` and names in ``path.d``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.parts = path.with_name(path.name + ".d")

    # -- errors ------------------------------------------------------------------------------
    def error(self, why: str, what: str | None = None) -> CheckpointError:
        """A refusal naming the checkpoint (and the file inside it) with the way out."""
        where = f"checkpoint {self.path}" + (f" ({what})" if what else "")
        return CheckpointError(
            f"{where} cannot be used: {why}. Restore it from a backup, or delete {self.path} "
            f"and {self.parts} to start afresh", path=str(self.path))

    # -- reading -----------------------------------------------------------------------------
    def read_manifest_bytes(self) -> bytes | None:
        """The manifest's bytes, or None when there is none yet."""
        return self._read(str(self.path), None, MAX_MANIFEST_BYTES, "the manifest")

    def open_parts(self) -> int | None:
        """A descriptor of ``path.d`` (never through a symlink), or None when it is missing."""
        try:
            info = os.lstat(self.parts)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self.error(f"its folder cannot be read ({exc.strerror})",
                             self.parts.name) from exc
        if stat.S_ISLNK(info.st_mode):
            raise self.error("its folder is a symbolic link, which is never followed",
                             self.parts.name)
        if not stat.S_ISDIR(info.st_mode):
            raise self.error("its .d folder is not a folder", self.parts.name)
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            return os.open(self.parts, flags | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise self.error(f"its folder cannot be opened ({exc.strerror})",
                             self.parts.name) from exc

    def list_parts(self, dir_fd: int) -> list[str]:
        try:
            return os.listdir(dir_fd)
        except OSError as exc:
            raise self.error(f"its folder cannot be listed ({exc.strerror})",
                             self.parts.name) from exc

    def read_part(self, dir_fd: int, name: str, what: str) -> bytes | None:
        """A file inside ``path.d`` by plain name (the caller matched it against a pattern)."""
        if not name or "/" in name or "\0" in name or name in (".", ".."):
            raise self.error(f"it names a file outside its folder ({name!r:.80})")
        return self._read(name, dir_fd, MAX_FILE_BYTES, what)

    def _read(self, name: str, dir_fd: int | None, limit: int, what: str) -> bytes | None:
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                why = "it is a symbolic link, which is never followed"
                if dir_fd is None:
                    why += f"; pass the real path instead of {self.path}"
                raise self.error(why, what) from None
            raise self.error(f"it cannot be opened ({exc.strerror})", what) from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise self.error("it is not a regular file", what)
            if info.st_size > limit:
                raise self.error(f"it is {info.st_size} bytes, more than the {limit} a "
                                 "checkpoint file may have", what)
            chunks: list[bytes] = []
            size = 0
            while True:
                chunk = os.read(fd, min(limit + 1 - size, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:  # grew while being read
                    raise self.error(f"it is more than the {limit} bytes a checkpoint file "
                                     "may have", what)
            return b"".join(chunks)
        except OSError as exc:
            raise self.error(f"it cannot be read ({exc.strerror})", what) from exc
        finally:
            os.close(fd)


def manifest_body(files: CheckpointFiles, raw: bytes, fmt: str) -> dict[str, Any]:
    """The manifest's JSON object, if it is one of format ``fmt``; else a refusal."""
    try:
        body = loads_json(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise files.error(f"its manifest is not valid JSON ({exc})") from None
    if not isinstance(body, dict) or body.get("format") != fmt:
        raise files.error("it is not a pyworkflowy_nb checkpoint manifest")
    return body


def loads_json(data: bytes) -> Any:
    """``json.loads`` that turns deep nesting (RecursionError) into a ValueError."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deeply") from None


# -- journal frames ----------------------------------------------------------------------------

Tagger = Callable[[bytes], bytes]


def plain_tagger(context: bytes) -> Tagger:
    base = hashlib.sha256(context)

    def tag(payload: bytes) -> bytes:
        h = base.copy()
        h.update(payload)
        return h.digest()
    return tag


def keyed_tagger(key: bytes, context: bytes) -> Tagger:
    base = hmac.new(key, context, hashlib.sha256)

    def tag(payload: bytes) -> bytes:
        h = base.copy()
        h.update(payload)
        return h.digest()
    return tag


def encode_header(codec: str, seq: int, after: int) -> bytes:
    """The journal's first line: what it is, its codec, its number, the manifest it builds on
    (``after``: 1 + that manifest's journal floor, 0 when there was none)."""
    return (json.dumps({"format": JOURNAL_FORMAT, "version": 1, "codec": codec, "seq": seq,
                        "after": after}, separators=(",", ":")) + "\n").encode()


def parse_header(data: bytes) -> tuple[dict[str, Any] | None, int]:
    """(header, its length) of a journal's bytes; (None, 0) if the header itself was torn.

    Raises ValueError for a header that is complete but not one of ours.
    """
    end = data.find(b"\n", 0, _HEADER_MAX)
    if end < 0:
        if len(data) < _HEADER_MAX:
            return None, 0  # created, then power was lost before the header reached the disk
        raise ValueError("its header line is missing or too long")
    header = loads_json(data[:end])
    if not isinstance(header, dict) or set(header) != {"format", "version", "codec", "seq",
                                                       "after"}:
        raise ValueError("its header is not a pyworkflowy_nb journal header")
    if header["format"] != JOURNAL_FORMAT or header["version"] != 1:
        raise ValueError(f"its header says format {header['format']!r:.40} version "
                         f"{header['version']!r:.20}; this pyworkflowy_nb reads version 1")
    for field in ("seq", "after"):
        if type(header[field]) is not int or header[field] < 0:
            raise ValueError(f"its header's {field} is not a whole number")
    if not isinstance(header["codec"], str):
        raise ValueError("its header's codec is not a string")
    return header, end + 1


def encode_frame(payload: bytes, tag: Tagger) -> bytes:
    return _FRAME_HEAD.pack(_MARK, len(payload), tag(payload)) + payload


def parse_frames(data: bytes, start: int, tag: Tagger) -> list[bytes]:
    """The payloads of the frames in ``data[start:]``, each checked against its tag.

    An incomplete last frame, or zeros at the end, are a torn write and dropped; a complete
    frame with a wrong tag or marker raises ValueError.
    """
    out: list[bytes] = []
    pos, end, head = start, len(data), _FRAME_HEAD.size
    while pos < end:
        if not data[pos:].strip(b"\0"):
            break  # zero-filled tail: blocks allocated before power was lost
        if end - pos < head:
            break  # torn frame header
        mark, size, expected = _FRAME_HEAD.unpack_from(data, pos)
        if mark != _MARK:
            raise ValueError(f"bytes at offset {pos} are not a journal frame")
        if end - pos - head < size:
            break  # torn payload
        payload = data[pos + head:pos + head + size]
        if not hmac.compare_digest(tag(payload), expected):
            raise ValueError(f"the frame at offset {pos} does not match its tag (modified, or "
                             "signed with another key)")
        out.append(payload)
        pos += head + size
    return out


# -- writing -----------------------------------------------------------------------------------

def write_all(fd: int, data: bytes) -> None:
    done = os.write(fd, data)  # regular files take it whole unless the disk is full
    if done < len(data):
        view = memoryview(data)[done:]
        while view:
            view = view[os.write(fd, view):]


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        os.fchmod(fd, mode)  # exact bits whatever the umask
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def close_synced(fd: int) -> None:
    """fsync ``fd`` as far as the filesystem allows, then close it."""
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some filesystems cannot open folders; the rename is still atomic
        return
    close_synced(fd)
