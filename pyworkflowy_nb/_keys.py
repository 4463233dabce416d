"""The per-user HMAC key that signs pickle-based checkpoints (engine and notebook alike).

Why a key at all: a pickle or cloudpickle checkpoint runs code when it is loaded, so a
file that somebody else wrote (or edited) must never reach ``cloudpickle.loads``.
Every segment and every manifest is signed with HMAC-SHA256 under a per-user
secret, and the loader checks the signature before it decodes a single byte.

Where the key lives: ``$PYWORKFLOWY_NB_KEY_FILE`` if set (tests use this), else
``$XDG_CONFIG_HOME/pyworkflowy_nb/checkpoint.key``, else
``~/.config/pyworkflowy_nb/checkpoint.key``.  It is 32 random bytes, created on
first use with mode 0600 inside a 0700 directory.

Creation is race-safe: two kernels starting at once both write a complete key
to a private temp file and try to ``os.link`` it into place; ``link`` refuses to
replace an existing name, so exactly one wins and the loser reads the winner's
key.  Nobody can ever read a half-written key, which a bare ``O_EXCL`` create
followed by ``write`` would allow.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from .exceptions import CheckpointError

__all__ = [
    "KEY_ENV_VAR",
    "KEY_SIZE",
    "default_key_path",
    "load_or_create_key",
    "sign_bytes",
    "signatures_match",
    "user_path",
]

KEY_ENV_VAR = "PYWORKFLOWY_NB_KEY_FILE"
KEY_SIZE = 32

# Group/other bits that make a key (or its directory) usable by someone else.
_FOREIGN_BITS = stat.S_IRWXG | stat.S_IRWXO


def default_key_path() -> Path:
    """Return the key file location, honouring the override variables."""
    return user_path(KEY_ENV_VAR, "XDG_CONFIG_HOME", ".config", "checkpoint.key")


def user_path(override_var: str, xdg_var: str, home_dir: str, leaf: str) -> Path:
    """``$override_var`` if set, else ``$xdg_var/pyworkflowy_nb/leaf``, else
    ``~/home_dir/pyworkflowy_nb/leaf``: where per-user files live (the key, the cache)."""
    override = os.environ.get(override_var)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get(xdg_var)
    # XDG says relative values are invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / home_dir
    return base / "pyworkflowy_nb" / leaf


def load_or_create_key(path: str | os.PathLike[str] | None = None) -> bytes:
    """Return the signing key at ``path`` (default: :func:`default_key_path`), creating it once."""
    key_path = Path(path) if path is not None else default_key_path()
    try:
        try:
            return _read_key(key_path)
        except FileNotFoundError:
            pass
        _make_private_dir(key_path.parent)
        _create_key(key_path)
        return _read_key(key_path)
    except OSError as exc:
        raise CheckpointError(
            f"cannot read or create the checkpoint signing key {str(key_path)!r}: "
            f"{exc.strerror or exc}; fix the folder's permissions or set {KEY_ENV_VAR} to a "
            "file in a folder you own", path=str(key_path)) from exc


def sign_bytes(key: bytes, data: bytes) -> str:
    """HMAC-SHA256 of ``data`` under ``key``, as lowercase hex."""
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def signatures_match(key: bytes, data: bytes, signature: object) -> bool:
    """Check ``signature`` against ``data`` in constant time; anything but a str fails."""
    if not isinstance(signature, str):
        return False
    expected = sign_bytes(key, data)
    # compare_digest on ASCII-encoded bytes: a non-ASCII str would make the
    # str variant raise TypeError, and a forged manifest may contain anything.
    return hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8", "replace"))


def _read_key(path: Path) -> bytes:
    # Symlinks are fine (dotfile managers use them): the checks below apply to the target.
    fd = os.open(path, os.O_RDONLY)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise CheckpointError(f"checkpoint key file {str(path)!r} is not a regular file")
        _check_private(path, info, kind="key file")
        data = b""
        while len(data) <= KEY_SIZE:
            chunk = os.read(fd, KEY_SIZE + 1 - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) != KEY_SIZE:
        raise CheckpointError(
            f"checkpoint key file {str(path)!r} holds {len(data)} bytes, expected {KEY_SIZE}; "
            f"delete it to make a new key (existing checkpoints will then be refused)"
        )
    return data


def _check_private(path: Path, info: os.stat_result, *, kind: str) -> None:
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise CheckpointError(
            f"checkpoint {kind} {str(path)!r} belongs to uid {info.st_uid}, not to you "
            f"(uid {os.getuid()}); delete it or point {KEY_ENV_VAR} at a key of your own"
        )
    if os.name == "posix" and info.st_mode & _FOREIGN_BITS:
        raise CheckpointError(
            f"checkpoint {kind} {str(path)!r} has mode {stat.S_IMODE(info.st_mode):04o}, so other "
            f"users can read or change it; run `chmod 600 {path}` (or delete it to make a new key)"
        )


def _make_private_dir(directory: Path) -> None:
    """Create ``directory`` (and missing parents) with mode 0700, whatever the umask."""
    missing: list[Path] = []
    probe = directory
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for new_dir in reversed(missing):
        try:
            os.mkdir(new_dir, 0o700)
        except FileExistsError:
            continue
        # mkdir's mode is filtered by the umask; chmod is not.
        os.chmod(new_dir, 0o700)


def _create_key(path: Path) -> None:
    key = secrets.token_bytes(KEY_SIZE)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    _write_new(tmp, key, getattr(os, "O_NOFOLLOW", 0))
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process won the race; its key is complete, use it
    except OSError as exc:
        # Filesystems without hard links: fall back to an exclusive create of
        # the final name.  A racing reader may then see a short file, which
        # _read_key reports rather than silently using.
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        _create_key_exclusive(path, key)
    finally:
        os.unlink(tmp)


def _create_key_exclusive(path: Path, key: bytes) -> None:
    with contextlib.suppress(FileExistsError):
        _write_new(path, key)


def _write_new(path: Path, key: bytes, extra_flags: int = 0) -> None:
    """Create ``path`` (it must not exist) owner-only, write the key, and sync it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | extra_flags, 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
