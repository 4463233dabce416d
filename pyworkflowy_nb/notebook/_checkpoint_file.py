"""Where a session checkpoints: the file for this notebook, its one writer, a cached read.

Checkpoints are on by default in a Jupyter kernel, in ``.wfy/<notebook>.ckpt`` beside the
notebook; elsewhere they are off until a path is given.
"""

from __future__ import annotations

import os
import threading
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._exceptions import SessionError

if TYPE_CHECKING:
    from .. import FileCheckpointer

#: One stored record (see FileCheckpointer.read_records): "status", "value", "fingerprint"...
Record = dict[str, Any]

__all__ = [
    "CheckpointFile",
    "default_checkpoint_path",
    "is_kernel_shell",
    "notebook_path",
]


def is_kernel_shell(shell: Any) -> bool:
    """Whether ``shell`` is the shell of a running Jupyter kernel (not a plain IPython)."""
    from ._loop import get_kernel

    kernel = get_kernel()
    return kernel is not None and getattr(kernel, "shell", None) is shell


def notebook_path(user_ns: MutableMapping[str, Any] | None = None) -> Path | None:
    """The path of the notebook this kernel serves, when the frontend says so.

    VS Code puts it in ``__vsc_ipynb_file__``; Jupyter Server passes ``JPY_SESSION_NAME``
    (which ipykernel also exposes as ``__session__``).
    """
    ns = user_ns or {}
    for candidate in (ns.get("__vsc_ipynb_file__"), ns.get("__session__"),
                      os.environ.get("JPY_SESSION_NAME")):
        if isinstance(candidate, str) and candidate.endswith(".ipynb"):
            path = Path(candidate).expanduser()
            if not path.is_absolute():
                # Relative to the server's root; the kernel normally starts in the notebook's
                # folder, so fall back to the bare name there.
                path = path if path.exists() else Path(path.name)
                path = path.absolute()
            return path
    return None


def default_checkpoint_path(user_ns: MutableMapping[str, Any] | None = None) -> Path:
    """``.wfy/<notebook name>.ckpt`` beside the notebook, else ``.wfy/session.ckpt`` in cwd."""
    nb = notebook_path(user_ns)
    if nb is not None:
        return nb.parent / ".wfy" / f"{nb.stem}.ckpt"
    return Path.cwd() / ".wfy" / "session.ckpt"


class CheckpointFile:
    """The checkpoint setting of one session: a file path or None (off)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._checkpointer: FileCheckpointer | None = None
        self._records_cache: tuple[tuple[Any, ...], dict[str, Record]] | None = None

    @property
    def path(self) -> Path | None:
        """Where results are checkpointed, or None when checkpointing is off."""
        return self._path

    def configure(self, checkpoint: str | os.PathLike[str] | bool,
                  user_ns: MutableMapping[str, Any]) -> Path | None:
        """``True``: the default file for this notebook; ``False``: off; a path: that file."""
        if checkpoint is True:
            path: Path | None = default_checkpoint_path(user_ns)
        elif checkpoint is False:
            path = None
        elif isinstance(checkpoint, str | os.PathLike) and os.fspath(checkpoint):
            path = Path(checkpoint).expanduser().absolute()
        else:
            raise SessionError(
                f"checkpoint must be a file path, True (the notebook's default file) or False "
                f"(off), got {checkpoint!r}"
            )
        with self._lock:
            self._path = path
            self._checkpointer = None
            self._records_cache = None
        return path

    def checkpointer(self) -> FileCheckpointer | None:
        """The checkpointer of the file (one per file, reused across runs), or None if off."""
        with self._lock:
            path = self._path
            if path is None:
                return None
            ckpt = self._checkpointer
            # With nothing on disk, start a fresh checkpointer: one that loaded or wrote
            # segments before would otherwise name files that are gone.
            if ckpt is None or not ckpt.exists():
                from ._checkpoint import CloudpickleCheckpointer

                ckpt = self._checkpointer = CloudpickleCheckpointer(path)
            return ckpt

    def delete(self) -> bool:
        """Remove the checkpoint file and its segments; True if there was one."""
        import shutil

        with self._lock:
            path = self._path
            self._checkpointer = None
            self._records_cache = None
            if path is None:
                return False
            existed = path.exists()
            path.unlink(missing_ok=True)
            shutil.rmtree(path.with_name(path.name + ".d"), ignore_errors=True)
            return existed

    def stored_records(self) -> dict[str, Record] | None:
        """The checkpoint's records, cached until its manifest changes; None if none."""
        path = self._path
        if path is None:
            return None
        stamp = _stamp(path)
        if stamp is None:
            return None
        cached = self._records_cache
        if cached is not None and cached[0] == stamp:
            return cached[1]
        from ._checkpoint import CloudpickleCheckpointer

        # A separate reader: the session's checkpointer keeps its own view for writing.
        records = CloudpickleCheckpointer(path).read_records()
        if records is None:
            return None
        self._records_cache = (stamp, records)
        return records


def _stamp(path: Path) -> tuple[Any, ...] | None:
    """What changes whenever the checkpoint does: the manifest's and the journals' sizes and
    times (a killed kernel may have left journals and no manifest yet); None if nothing."""
    parts: list[tuple[str, int, int]] = []
    for candidate in [path, *_journals(path)]:
        try:
            st = candidate.stat()
        except OSError:
            continue
        parts.append((candidate.name, st.st_mtime_ns, st.st_size))
    return (str(path), *parts) if parts else None


def _journals(path: Path) -> list[Path]:
    folder = path.with_name(path.name + ".d")
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [folder / n for n in names if n.startswith("journal-")]
