"""Shared test fixtures (pytest finds them here); shared plain helpers are in engine_helpers.py.

A file whose every test should get a fixture says so once:
``pytestmark = pytest.mark.usefixtures("key_file")``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # imported in the fixtures: engine-only test files never load IPython
    from IPython.core.interactiveshell import InteractiveShell

    from pyworkflowy_nb.notebook._magics import WorkflowMagics


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HMAC key file (not created yet): pickle checkpoints never touch the user's key."""
    path = tmp_path / "keys" / "checkpoint.key"
    monkeypatch.setenv("PYWORKFLOWY_NB_KEY_FILE", str(path))
    return path


@pytest.fixture
def magics() -> Iterator[WorkflowMagics]:
    """The magics on a fresh session, registered in IPython's in-process shell (no kernel)."""
    from IPython.core.interactiveshell import InteractiveShell

    from pyworkflowy_nb.notebook import Session
    from pyworkflowy_nb.notebook._magics import WorkflowMagics

    shell = InteractiveShell.instance()
    session = Session(shell=shell)
    found = WorkflowMagics(shell, session)
    shell.register_magics(found)
    try:
        yield found
    finally:
        session.close()
        # Leave no global shell behind: other test modules check behaviour outside IPython.
        shell.history_manager.end_session()
        InteractiveShell.clear_instance()


@pytest.fixture
def ip(magics: WorkflowMagics) -> InteractiveShell:
    """The in-process shell the ``magics`` fixture registered its magics in."""
    shell: InteractiveShell = magics.shell
    return shell
