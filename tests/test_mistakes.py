"""Mistakes are reported where they are made, with advice that fits them (in-process magics)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from pyworkflowy_nb.notebook import Session
from pyworkflowy_nb.notebook._magics import WorkflowMagics


@pytest.fixture
def shell() -> Iterator[InteractiveShell]:
    ip = InteractiveShell.instance()
    session = Session(shell=ip, checkpoint=False)
    ip.register_magics(WorkflowMagics(ip, session))
    yield ip
    session.close()
    ip.history_manager.end_session()
    InteractiveShell.clear_instance()


def test_a_misspelt_after_warns_at_definition_naming_the_close_names(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    shell.run_cell_magic("task", "by_region", "1")
    shell.run_cell_magic("task", "by_month", "2")
    capsys.readouterr()
    shell.run_cell_magic("task", "summary --after by_regoin", "by_regoin")
    err = capsys.readouterr().err
    assert "warning: task 'summary' runs --after 'by_regoin', which is not defined" in err
    assert "did you mean 'by_region'?" in err
    assert "Fix the `%%task summary` line" in err
    # The run still refuses it, and now says to fix the name rather than to run a cell.
    with pytest.raises(UsageError) as info:
        shell.run_line_magic("wfy_run", "")
    message = str(info.value)
    assert "did you mean 'by_region'?" in message
    assert "fix the name on the `%%task summary` line" in message
    assert "run the `%%task by_regoin` cell" not in message


def test_an_after_with_no_near_name_says_to_define_it_first(
    shell: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    shell.run_cell_magic("task", "report", "load")
    shell.run_cell_magic("task", "report --after load", "load")
    err = capsys.readouterr().err
    assert "'load', which is not defined yet: run the `%%task load` cell before %wfy_run" in err
    with pytest.raises(UsageError, match=r"run the `%%task load` cell first"):
        shell.run_line_magic("wfy_run", "")
    capsys.readouterr()
    shell.run_cell_magic("task", "load", "41")
    shell.run_cell_magic("task", "report --after load", "load + 1")
    assert "warning" not in capsys.readouterr().err  # nothing to warn about any more


@pytest.mark.parametrize(
    ("magic", "line", "expected"),
    [
        ("task", "t --retry 1", "%%task has no option --retry: did you mean --retries?"),
        ("task", "t --aftr a", "%%task has no option --aftr: did you mean --after?"),
        ("task", "t --timeout=3 --bakend thread", "did you mean --backend?"),
        ("wfy_run", "--backgrund", "%wfy_run has no option --backgrund: did you mean "
                                   "--background?"),
        ("wfy_run", "--max-wokers 2", "did you mean --max-workers?"),
        ("wfy_config", "--checkpoints x", "did you mean --checkpoint?"),
    ],
)
def test_unknown_flags_suggest_the_nearest(
    shell: InteractiveShell, magic: str, line: str, expected: str
) -> None:
    with pytest.raises(UsageError) as info:
        if magic == "task":
            shell.run_cell_magic(magic, line, "1")
        else:
            shell.run_line_magic(magic, line)
    assert expected in str(info.value)
    assert "?` lists the options" in str(info.value)


def test_a_flag_far_from_every_option_gets_no_guess(shell: InteractiveShell) -> None:
    with pytest.raises(UsageError) as info:
        shell.run_cell_magic("task", "t --zzz", "1")
    assert str(info.value) == "%%task has no option --zzz: `%%task?` lists the options"
