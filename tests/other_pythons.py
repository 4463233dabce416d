"""Run a slice of the suite on another CPython, from a virtualenv built just for it.

The project's own ``.venv`` is one interpreter; issue 4 promises the kernel-side behaviour on
3.11, 3.12 and 3.13. This module finds a given CPython on the machine, builds (or reuses) a
virtualenv for it under ``<repo>/.venvs/py<version>``, installs the checkout plus the few test
packages the kernel tests import, and runs pytest there.

Design notes:
- A venv is reused only while its stamp matches: the stamp hashes ``pyproject.toml``, the extra
  requirement list and the interpreter's full version, so a dependency change or a new patch
  release rebuilds it. The stamp is written last, so a half-finished install is never reused.
- A lock file per version keeps two concurrent pytest sessions from building the same venv.
- Every subprocess gets an environment scrubbed of the calling interpreter's traces
  (``PYTHONPATH``, ``VIRTUAL_ENV``, user site-packages), or a 3.11 path could leak into 3.13.
- pip's output goes to a log file inside the venv; failures quote its tail.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENVS = REPO / ".venvs"

#: Test-only packages the kernel tests import on top of the project's own dependencies
#: (ipykernel, ipywidgets, nest-asyncio, cloudpickle, graphviz come with ``pip install -e``).
#: Their version floors are read from the ``test`` extra in pyproject.toml.
TEST_PACKAGES = ("pytest", "pytest-timeout", "jupyter_client")

#: Guards against hangs, not speed limits.
INSTALL_TIMEOUT = 600.0
TEST_TIMEOUT = 1200.0
PROBE_TIMEOUT = 60.0

_PROBE = "import sys, venv, ensurepip; print('%d.%d' % sys.version_info[:2]); print(sys.version)"


class OtherPythonError(AssertionError):
    """Building or using another interpreter's venv failed; the message says where to look."""


@dataclass(frozen=True)
class Interpreter:
    version: str  # "3.12"
    path: Path
    full_version: str  # sys.version of that interpreter


@dataclass(frozen=True)
class Venv:
    python: Path
    reused: bool
    install_seconds: float
    log: Path


def _clean_env(extra_path: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTEST_ADDOPTS",
                        "PYTHONSTARTUP", "__PYVENV_LAUNCHER__")}
    env["PYTHONNOUSERSITE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if extra_path is not None:
        env["PATH"] = os.pathsep.join(p for p in (str(extra_path), env.get("PATH", "")) if p)
    return env


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _probe(path: Path, version: str) -> tuple[str | None, str]:
    """Return (full sys.version, "") if ``path`` is a working CPython ``version`` with venv and
    ensurepip, else (None, why not)."""
    try:
        out = subprocess.run([str(path), "-c", _PROBE], capture_output=True, text=True,
                             timeout=PROBE_TIMEOUT, check=False, env=_clean_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"{path}: {exc}"
    if out.returncode != 0:
        # e.g. a pyenv shim whose version is not activated, or a Debian python without venv.
        first = (out.stderr.strip().splitlines() or ["no output"])[0]
        return None, f"{path}: exits {out.returncode} ({first})"
    got, _, full = out.stdout.partition("\n")
    if got.strip() != version:
        return None, f"{path}: is Python {got.strip()}, not {version}"
    return full.strip(), ""


def _version_key(path: str) -> tuple[int, ...]:
    # ~/.pyenv/versions/3.12.10/bin/python3.12 -> (3, 12, 10); pre-releases sort first.
    m = re.search(r"versions/(\d+(?:\.\d+)*)", path)
    return tuple(int(p) for p in m.group(1).split(".")) if m else ()


def candidates(version: str) -> list[Path]:
    """Where to look for ``python<version>``, newest pyenv build first, then ``PATH``."""
    roots = [os.environ.get("PYENV_ROOT", ""), os.path.expanduser("~/.pyenv")]
    found: list[str] = []
    for root in dict.fromkeys(r for r in roots if r):
        pattern = os.path.join(root, "versions", f"{version}*", "bin", f"python{version}")
        found.extend(sorted(glob.glob(pattern), key=_version_key, reverse=True))
    on_path = shutil.which(f"python{version}")
    if on_path:
        found.append(on_path)
    return [Path(p) for p in dict.fromkeys(found)]


def find_interpreter(version: str) -> tuple[Interpreter | None, str]:
    """The first working CPython ``version`` on this machine, or None and what was tried."""
    if not re.fullmatch(r"3\.\d+", version):
        raise ValueError(f"version must look like '3.12', got {version!r}")
    tried: list[str] = []
    for path in candidates(version):
        full, why = _probe(path, version)
        if full is not None:
            return Interpreter(version, path, full), ""
        tried.append(why)
    where = f"~/.pyenv/versions/{version}*/bin/python{version} or python{version} on PATH"
    detail = "; ".join(tried) if tried else "nothing found"
    return None, f"no usable Python {version} ({where}): {detail}"


def requirements() -> list[str]:
    """``pip install`` arguments: the checkout (editable) plus :data:`TEST_PACKAGES`, with the
    version floors the ``test`` extra gives them."""
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    extra = meta.get("project", {}).get("optional-dependencies", {}).get("test", [])

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    pinned = {norm(re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0]): req for req in extra}
    return ["-e", str(REPO), *(pinned.get(norm(p), p) for p in TEST_PACKAGES)]


def stamp(interp: Interpreter) -> str:
    h = hashlib.sha256()
    h.update((REPO / "pyproject.toml").read_bytes())
    h.update("\0".join(requirements()).encode())
    h.update(interp.full_version.encode())
    h.update(str(interp.path).encode())
    return h.hexdigest()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _bin(venv_dir: Path) -> Path:
    return venv_dir / "bin"


def ensure_venv(interp: Interpreter) -> Venv:
    """Reuse ``.venvs/py<version>`` if its stamp is current, else build it from scratch."""
    venv_dir = VENVS / f"py{interp.version}"
    stamp_file = venv_dir / ".wfy-stamp"
    log = venv_dir / "install.log"
    python = _bin(venv_dir) / "python"
    want = stamp(interp)
    with _locked(VENVS / f"py{interp.version}.lock"):
        if (python.exists() and stamp_file.exists()
                and stamp_file.read_text().strip() == want):
            return Venv(python, reused=True, install_seconds=0.0, log=log)
        start = time.monotonic()
        if venv_dir.exists():
            shutil.rmtree(venv_dir)
        steps = [
            [str(interp.path), "-m", "venv", str(venv_dir)],
            [str(python), "-m", "pip", "install", "--progress-bar", "off", *requirements()],
        ]
        deadline = start + INSTALL_TIMEOUT
        for cmd in steps:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "a") as fh:
                fh.write(f"$ {' '.join(cmd)}\n")
                fh.flush()
                try:
                    rc = subprocess.run(
                        cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO, check=False,
                        env=_clean_env(_bin(venv_dir)),
                        timeout=max(1.0, deadline - time.monotonic()),
                    ).returncode
                except subprocess.TimeoutExpired:
                    rc = None
            if rc != 0:
                what = "timed out" if rc is None else f"exited {rc}"
                raise OtherPythonError(
                    f"setting up the Python {interp.version} venv {what}: {' '.join(cmd)}\n"
                    f"full log: {log}\n--- last lines ---\n{_tail(log.read_text())}")
        stamp_file.write_text(want + "\n")
        return Venv(python, reused=False, install_seconds=time.monotonic() - start, log=log)


@dataclass(frozen=True)
class TestRun:
    returncode: int
    output: str
    seconds: float
    counts: dict[str, int]

    @property
    def summary(self) -> str:
        lines = [ln for ln in self.output.strip().splitlines() if ln.strip()]
        return lines[-1].strip("= ") if lines else "(no output)"


_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?)")


def parse_counts(summary: str) -> dict[str, int]:
    """``"1 failed, 21 passed, 2 warnings in 9.8s"`` -> {"failed": 1, "passed": 21, ...};
    ``error``/``errors`` and ``warning``/``warnings`` are folded into the plural."""
    counts: dict[str, int] = {}
    for n, word in _COUNT.findall(summary):
        key = {"error": "errors", "warning": "warnings"}.get(word, word)
        counts[key] = counts.get(key, 0) + int(n)
    return counts


def run_pytest(venv: Venv, args: list[str]) -> TestRun:
    """``<venv python> -m pytest <args>`` in the repo; the output is also kept next to the
    install log as ``last-test-run.log``."""
    start = time.monotonic()
    cmd = [str(venv.python), "-m", "pytest", *args]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False,
                             env=_clean_env(venv.python.parent), timeout=TEST_TIMEOUT)
        rc, text = out.returncode, out.stdout + out.stderr
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout or b""
        text = partial.decode(errors="replace") if isinstance(partial, bytes) else partial
        rc, text = -1, text + f"\n(timed out after {TEST_TIMEOUT:.0f} s)"
    (venv.log.parent / "last-test-run.log").write_text(f"$ {' '.join(cmd)}\n{text}")
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    counts = parse_counts(lines[-1]) if lines else {}
    return TestRun(rc, text, time.monotonic() - start, counts)


_KERNEL_PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
from kernel_utils import Kernel
with Kernel() as k:
    print("KERNEL", k.value("'%d.%d' % __import__('sys').version_info[:2]"))
"""


def kernel_python(venv: Venv) -> str:
    """The ``major.minor`` of a kernel started by ``kernel_utils`` from this venv's python,
    proving the kernels under test run on that interpreter and not on a stray default one."""
    cmd = [str(venv.python), "-c", _KERNEL_PROBE, str(REPO / "tests")]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False,
                             env=_clean_env(venv.python.parent), timeout=PROBE_TIMEOUT * 3)
    except subprocess.TimeoutExpired as exc:
        raise OtherPythonError(f"starting a kernel from {venv.python} timed out") from exc
    found = re.findall(r"^KERNEL (\S+)$", out.stdout, re.MULTILINE)
    if out.returncode != 0 or not found:
        raise OtherPythonError(
            f"could not start a kernel from {venv.python} (exit {out.returncode}):\n"
            f"{_tail(out.stdout + out.stderr)}")
    return str(found[-1])


if __name__ == "__main__":  # pragma: no cover - a convenience for building venvs by hand
    for v in sys.argv[1:] or ["3.12", "3.13"]:
        found, reason = find_interpreter(v)
        if found is None:
            print(reason)
            continue
        built = ensure_venv(found)
        print(f"{v}: {built.python} ({'reused' if built.reused else 'built'} "
              f"in {built.install_seconds:.0f} s; log {built.log})")
