"""The Binder configuration alone is enough to run every demo notebook.

Binder (repo2docker) builds an image from the repository root using only what ``binder/`` says.
This test does the same on a smaller scale: a fresh virtual environment, ``pip install -r
binder/requirements.txt`` from the repository root (nothing from the development venv leaks in),
then every notebook in ``notebooks/`` is executed top to bottom in a kernel running on that
environment's Python. The Debian packages in ``binder/apt.txt`` cannot be installed by a test,
so it checks that they are listed and present on this machine instead.

Marked ``slow``: creating the environment downloads or unpacks a few dozen wheels.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))

pytestmark = [pytest.mark.slow, pytest.mark.kernel, pytest.mark.timeout(1800)]


def _clean_env() -> dict[str, str]:
    # The fresh environment must stand on its own: nothing from the test's own interpreter.
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "JUPYTER_PATH")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _base_python() -> str:
    # A venv made from inside another venv still points at the base interpreter; use it directly
    # so the new environment cannot see the development venv's site-packages.
    return str(Path(getattr(sys, "_base_executable", sys.executable)))


def test_binder_files_are_complete() -> None:
    requirements = (BINDER / "requirements.txt").read_text().splitlines()
    lines = [ln.split("#")[0].strip() for ln in requirements]
    assert "-e ." in lines or "." in lines, "binder/requirements.txt must install the project"
    apt = (BINDER / "apt.txt").read_text().split()
    assert "graphviz" in apt, "binder/apt.txt must list graphviz (the widget needs `dot`)"
    # repo2docker's default Python can be older than the project allows; runtime.txt pins it.
    runtime = (BINDER / "runtime.txt").read_text().strip()
    match = re.fullmatch(r"python-(\d+)\.(\d+)", runtime)
    assert match, f"binder/runtime.txt must read like 'python-3.11', got {runtime!r}"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    floor = re.fullmatch(r">=\s*(\d+)\.(\d+)", pyproject["project"]["requires-python"])
    assert floor, "expected requires-python of the form '>=3.X'"
    pinned = (int(match.group(1)), int(match.group(2)))
    assert pinned >= (int(floor.group(1)), int(floor.group(2))), (
        f"binder/runtime.txt pins {runtime}, below requires-python "
        f"{pyproject['project']['requires-python']}"
    )
    post_build = BINDER / "postBuild"
    if post_build.exists():
        assert os.access(post_build, os.X_OK), "binder/postBuild must be executable"
    assert NOTEBOOKS, "no notebooks to run"


@pytest.fixture(scope="module")
def binder_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("binder") / "env"
    started = time.monotonic()
    subprocess.run([_base_python(), "-m", "venv", str(env_dir)], check=True, env=_clean_env())
    python = env_dir / "bin" / "python"
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-r", str(BINDER / "requirements.txt")],
        cwd=ROOT,  # repo2docker runs pip from the repository root, so "-e ." means the project
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, f"pip install -r binder/requirements.txt failed:\n{proc.stderr}"
    print(f"binder environment built in {time.monotonic() - started:.0f} s")
    return python


def test_binder_environment_is_isolated(binder_python: Path) -> None:
    # If the project were importable only through PYTHONPATH or the dev venv, Binder would break.
    proc = subprocess.run(
        [str(binder_python), "-c",
         "import sys, pyworkflowy_nb, ipykernel, ipywidgets, graphviz, cloudpickle;"
         "print(sys.prefix)"],
        cwd="/", env=_clean_env(), capture_output=True, text=True, check=True,
    )
    assert Path(proc.stdout.strip()) == binder_python.parent.parent


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.name for nb in NOTEBOOKS])
def test_notebook_runs_in_binder_environment(
    notebook: Path, binder_python: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    assert shutil.which("dot"), "graphviz's `dot` is missing (binder/apt.txt installs it)"

    # A kernelspec that launches the Binder environment's Python; nbclient (from the test's
    # environment) only talks to it over ZeroMQ, as JupyterLab would on Binder.
    spec_dir = tmp_path / "jupyter" / "kernels" / "binder-env"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [str(binder_python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "binder-env",
        "language": "python",
    }))
    for key in ("PYTHONPATH", "VIRTUAL_ENV"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))

    # Run a copy in a scratch folder, so files the notebook writes (data, .wfy/) stay out of
    # the repository.
    workdir = tmp_path / "notebooks"
    workdir.mkdir()
    copy = workdir / notebook.name
    shutil.copy(notebook, copy)
    nb = nbformat.read(copy, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="binder-env",
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on the first error

    errors = [
        (i, out.get("ename"), out.get("evalue"))
        for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
        for out in cell.get("outputs", []) if out.get("output_type") == "error"
    ]
    assert not errors, f"{notebook.name}: cells raised {errors}"
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code_cells), "some cells never ran"
