"""Cloudpickle checkpoints for notebooks: anything a cell produces, signed and version-pinned.

The engine's :class:`~pyworkflowy_nb._checkpoint.SignedCheckpointer` already journals records,
compacts them into a manifest plus immutable segments, keeps the files owner-only (0600 in a
0700 folder, whatever the umask) and signs every manifest, segment and journal frame with
HMAC-SHA256 under the per-user key of :mod:`pyworkflowy_nb._keys`, verifying before a single byte
reaches :meth:`decode`. This subclass adds the codec and one more safeguard cloudpickle needs:

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

import importlib.metadata
import os
import pickle
import platform
import sys
from collections.abc import Mapping
from typing import Any, ClassVar

import cloudpickle

from .. import SignedCheckpointer
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


class CloudpickleCheckpointer(SignedCheckpointer):
    """A checkpoint that stores anything cloudpickle accepts, signed with a per-user key.

    ``key`` is the HMAC secret (at least 16 bytes); by default it is read from, or created
    in, the user's config folder (see :func:`~pyworkflowy_nb._keys.default_key_path`).
    Only open checkpoints written by you on the same environment: the signature check makes
    files from anybody without your key fail to load rather than run their code.
    """

    codec: ClassVar[str] = "cloudpickle"
    suffix: ClassVar[str] = ".cpkl"
    manifest_fields: ClassVar[frozenset[str]] = (
        SignedCheckpointer.manifest_fields | {"environment"})

    def __init__(self, path: str | os.PathLike[str], *, key: bytes | None = None) -> None:
        super().__init__(path, key=key)
        self._signing_key()  # at once: an unusable key location fails here, not mid-run

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
        return {"environment": environment_versions(), **super().manifest_extra()}

    def verify_manifest(self, manifest: dict[str, Any]) -> None:
        super().verify_manifest(manifest)
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
