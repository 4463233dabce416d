"""Cloudpickle checkpoints for notebooks: anything a cell produces, signed and version-pinned.

The engine's :class:`~pyworkflowy_nb.FileCheckpointer` already writes a manifest plus immutable
segments atomically; this subclass supplies the codec and three safeguards it needs because
cloudpickle, unlike JSON, runs code when it loads:

* **Owner-only files.** Segments and manifest are created 0600 and the ``<path>.d`` folder is
  forced to 0700 whatever the umask (``mkdir``'s mode is filtered by it, ``chmod`` is not).
* **Signatures.** Every segment and the manifest carry an HMAC-SHA256 under the per-user key of
  :mod:`.._keys`. The engine verifies the manifest, then each segment's digest and signature,
  before it hands a single byte to :meth:`decode`; an unsigned or mis-signed file is refused.
* **Version pinning.** cloudpickle output is only portable between identical interpreters and
  libraries (it pickles cell-defined functions as bytecode and library objects by reference).
  The manifest records the Python implementation and version, cloudpickle's version and the
  versions of common data libraries that were imported when it was written; loading under a
  different set raises :class:`CheckpointError` listing each difference, before unpickling.

Libraries are looked up in ``sys.modules`` when saving so that writing a checkpoint never
imports pandas into a kernel that did not use it. On load a recorded library that is not
imported yet is checked through its installed distribution's metadata, again without
importing it.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.metadata
import json
import os
import pickle
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import cloudpickle

from .._checkpoint import FileCheckpointer
from .._keys import default_key_path, load_or_create_key, sign_bytes, signatures_match
from ..exceptions import CheckpointError
from ._fingerprint import code_fingerprint

__all__ = [
    "CloudpickleCheckpointer",
    "code_fingerprint",
    "environment_versions",
]

# Modules whose objects commonly end up in notebook results, with the distribution that
# provides each (they differ for scikit-learn), so a version can be found without importing.
TRACKED_LIBRARIES: tuple[tuple[str, str], ...] = (
    ("numpy", "numpy"),
    ("pandas", "pandas"),
    ("scipy", "scipy"),
    ("sklearn", "scikit-learn"),
    ("polars", "polars"),
    ("pyarrow", "pyarrow"),
    ("xarray", "xarray"),
    ("torch", "torch"),
)
_DISTRIBUTION = dict(TRACKED_LIBRARIES)

SIGNATURE_SCHEME = "hmac-sha256"

_ALWAYS_PICKLABLE = frozenset({int, float, complex, str, bytes, bool, type(None)})


def _python_version() -> str:
    return f"{platform.python_implementation()} {platform.python_version()}"


def _installed_version(module: str) -> str | None:
    """The version of ``module`` without importing it: from sys.modules, else package metadata."""
    loaded = sys.modules.get(module)
    version = getattr(loaded, "__version__", None) if loaded is not None else None
    if isinstance(version, str):
        return version
    try:
        return importlib.metadata.version(_DISTRIBUTION.get(module, module))
    except importlib.metadata.PackageNotFoundError:
        return None


def environment_versions() -> dict[str, str]:
    """What a cloudpickle checkpoint written now depends on: Python, cloudpickle, loaded libs."""
    versions = {"python": _python_version(), "cloudpickle": str(cloudpickle.__version__)}
    for module, _ in TRACKED_LIBRARIES:
        if module in sys.modules:  # never import a heavy library just to ask its version
            found = _installed_version(module)
            if found is not None:
                versions[module] = found
    return versions


def _key_id(key: bytes) -> str:
    """A public name for the key, so a refusal can say 'another key' rather than 'tampered'."""
    return hmac.new(key, b"pyworkflowy_nb key id", hashlib.sha256).hexdigest()[:16]


class CloudpickleCheckpointer(FileCheckpointer):
    """A checkpoint that stores anything cloudpickle accepts, signed with a per-user key.

    ``key`` is the HMAC secret (at least 16 bytes); by default it is read from, or created
    in, the user's config folder (see :func:`~pyworkflowy_nb._keys.default_key_path`).
    Only open checkpoints written by you on the same environment: the signature check makes
    files from anybody without your key fail to load rather than run their code.
    """

    codec: ClassVar[str] = "cloudpickle"
    suffix: ClassVar[str] = ".cpkl"
    file_mode: ClassVar[int] = 0o600
    dir_mode: ClassVar[int] = 0o700

    def __init__(self, path: str | os.PathLike[str], *, key: bytes | None = None) -> None:
        super().__init__(path)
        if key is None:
            self._key_source = str(default_key_path())
            key = load_or_create_key()
        else:
            if not isinstance(key, bytes | bytearray):
                raise TypeError(
                    f"key must be bytes (e.g. secrets.token_bytes(32)), got {type(key).__name__}")
            if len(key) < 16:
                raise ValueError(
                    f"key must be at least 16 bytes to sign checkpoints safely, got {len(key)}; "
                    "use secrets.token_bytes(32)")
            self._key_source = "the key passed to CloudpickleCheckpointer"
        self._key = bytes(key)
        self._key_id = _key_id(self._key)
        self._dir_checked = False

    # -- submit-time vetting -------------------------------------------------------------------
    def check(self, value: object, *, what: str) -> None:
        if type(value) in _ALWAYS_PICKLABLE:
            return  # the common scalar argument: skip a trial pickling on every submit
        try:
            cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            kind = type(value)
            raise CheckpointError(
                f"cannot checkpoint {what}: a {kind.__module__}.{kind.__qualname__} value cannot "
                f"be pickled by cloudpickle ({type(exc).__name__}: {exc}); pass something "
                "picklable (build locks, sockets, generators and open files inside the task), "
                "or turn checkpointing off", path=str(self.path)) from None

    # -- codec -----------------------------------------------------------------------------------
    def encode(self, obj: object) -> bytes:
        return bytes(cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def decode(self, data: bytes) -> object:
        # Only reached once verify() accepted the bytes (the engine checks digest and
        # signature first); cloudpickle output is plain pickle with by-value code.
        return pickle.loads(data)

    # -- manifest fields -------------------------------------------------------------------------
    def manifest_extra(self) -> dict[str, Any]:
        return {
            "environment": environment_versions(),
            "signature_scheme": SIGNATURE_SCHEME,
            "key_id": self._key_id,
        }

    def verify_manifest(self, manifest: dict[str, Any]) -> None:
        scheme = manifest.get("signature_scheme")
        if scheme != SIGNATURE_SCHEME:
            raise CheckpointError(
                f"checkpoint {self.path} is signed with {scheme!r}, expected "
                f"{SIGNATURE_SCHEME!r}; it was not written by CloudpickleCheckpointer",
                path=str(self.path))
        recorded = manifest.get("environment")
        if not isinstance(recorded, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in recorded.items()
        ):
            raise CheckpointError(
                f"checkpoint {self.path} does not record the environment that wrote it, so it "
                "cannot be loaded safely; re-run the tasks", path=str(self.path))
        differences = _differences(recorded)
        if differences:
            raise CheckpointError(
                f"checkpoint {self.path} was written in another environment: "
                f"{'; '.join(differences)}. cloudpickle data only loads in the environment that "
                "wrote it: re-run the tasks (delete the checkpoint or turn resume off) or use "
                "the same environment", path=str(self.path))

    # -- signatures ------------------------------------------------------------------------------
    def sign(self, data: bytes) -> str:
        return sign_bytes(self._key, data)

    def verify(self, data: bytes, signature: str | None, where: str) -> None:
        if signatures_match(self._key, data, signature):
            return
        if signature is None:
            why = "it carries no signature"
        elif where == str(self.path) and _manifest_key_id(data) not in (None, self._key_id):
            why = (f"it was signed with another key than {self._key_source} (written by "
                   "another user, or before the key file was replaced)")
        else:
            why = "its signature does not match: it was modified after it was written"
        what = "manifest" if where == str(self.path) else "segment"
        raise CheckpointError(
            f"checkpoint {what} {where} failed the integrity check ({why}); it was not loaded, "
            "because unpickling an untrusted file can run arbitrary code. Delete "
            f"{self.path} and its .d folder to start afresh", path=where)

    # -- permissions -----------------------------------------------------------------------------
    def save(self, records: Mapping[str, dict[str, Any]]) -> None:
        if not self._dir_checked:
            # Once per checkpointer: a folder left by a laxer writer is tightened before the
            # first segment goes in; one the base class re-creates later is 0700 or stricter.
            _private_dir(self.parts, self.dir_mode)
            self._dir_checked = True
        # The base class folds older segments into the new one by popping them from its list
        # before the new segment is safely on disk; if that write fails, a retry would write a
        # manifest without them and lose their records. Put the list back on failure (the
        # files it names are untouched until a manifest stops naming them).
        segments = getattr(self, "_segments", None)
        before = list(segments) if isinstance(segments, list) else None
        try:
            super().save(records)
        except BaseException:
            if before is not None:
                self._segments = before
            raise


def _differences(recorded: Mapping[str, str]) -> list[str]:
    here = environment_versions()
    found: list[str] = []
    for name, then in recorded.items():
        now = here.get(name)
        if now is None and name not in ("python", "cloudpickle"):
            now = _installed_version(name)
        if now == then:
            continue
        if name == "python":
            found.append(f"checkpoint written by Python {_bare(then)}, this is {_bare(now)}"
                         if _impl(then) == _impl(now)
                         else f"checkpoint written by {then}, this is {now}")
        elif now is None:
            found.append(f"checkpoint written with {name} {then}, which is not installed here")
        else:
            found.append(f"checkpoint written with {name} {then}, this has {name} {now}")
    return found


def _impl(version: str | None) -> str:
    return (version or "").partition(" ")[0]


def _bare(version: str | None) -> str:
    """'CPython 3.11.7' -> '3.11.7' (the implementation is only named when it differs)."""
    text = version or "unknown"
    return text.partition(" ")[2] or text


def _manifest_key_id(data: bytes) -> str | None:
    try:
        body = json.loads(data)
    except ValueError:
        return None
    key_id = body.get("key_id") if isinstance(body, dict) else None
    return key_id if isinstance(key_id, str) else None


def _private_dir(folder: Path, mode: int) -> None:
    """Create ``folder`` if needed and make sure only its owner can enter it."""
    try:
        os.mkdir(folder, mode)
    except FileExistsError:
        if not folder.is_dir():
            raise CheckpointError(
                f"checkpoint folder {folder} exists but is not a folder; move it away",
                path=str(folder)) from None
    except FileNotFoundError:
        folder.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(folder, mode)
    os.chmod(folder, mode)
