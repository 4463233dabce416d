"""The README's `bash .ci/lab`: which command it starts (the setup part is what .ci/test runs)."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_lab_opens_the_quickstart_root_safe_and_passes_arguments_on() -> None:
    proc = subprocess.run(
        ["bash", str(REPO / ".ci" / "lab"), "--print", "--port=9999", "--no-browser"],
        capture_output=True, text=True, check=True, timeout=60,
    )
    argv = shlex.split(proc.stdout)
    assert argv[:2] == [".venv/bin/jupyter", "lab"]
    assert "notebooks/01-quickstart.ipynb" in argv
    assert (REPO / "notebooks" / "01-quickstart.ipynb").exists()
    assert f"--ServerApp.root_dir={REPO}" in argv
    assert ("--allow-root" in argv) == (os.getuid() == 0)
    assert argv[-2:] == ["--port=9999", "--no-browser"]


def test_the_readme_names_the_command() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "bash .ci/lab" in readme
