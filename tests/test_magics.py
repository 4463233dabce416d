"""The magics, in-process (IPython's InteractiveShell, no kernel): parsing, output, errors.

Kernel-only behaviour (the running loop, parent headers, SIGKILL) is in test_magics_kernel.py.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from engine_helpers import wait_until
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from pyworkflowy_nb.display import format_duration
from pyworkflowy_nb.notebook import Session
from pyworkflowy_nb.notebook._magics import WorkflowMagics


def magics_session(ip: InteractiveShell) -> Session:
    magics = ip.magics_manager.registry["WorkflowMagics"]
    assert isinstance(magics, WorkflowMagics)
    return magics.session


def test_task_magic_defines_without_running(ip: InteractiveShell) -> None:
    ip.user_ns["hits"] = []
    ip.run_cell_magic("task", "a --retries 1 --timeout 5", "hits.append(1)\n21")
    ip.run_cell_magic("task", "b --after a", "a * 2")
    assert ip.user_ns["hits"] == []
    cell = magics_session(ip).tasks["a"]
    assert (cell.retries, cell.timeout, cell.after) == (1, 5.0, ())
    ip.run_line_magic("wfy_run", "--no-widget")
    assert ip.user_ns["b"] == 42 and ip.user_ns["hits"] == [1]


def test_task_cells_accept_ipython_syntax(ip: InteractiveShell) -> None:
    ip.run_cell_magic("task", "a", "x = !echo hi\nx[0]")
    ip.run_line_magic("wfy_run", "--no-widget")
    assert ip.user_ns["a"] == "hi"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("a --retries -1", "argument --retries: expected a whole number >= 0, got '-1'"),
        ("a --retries x", "argument --retries: expected a whole number >= 0, got 'x'"),
        ("a --timeout 0", "argument --timeout: expected a positive, finite number"),
        ("a --backend gpu", "unknown --backend 'gpu'"),
        ("a-b", "not a valid Python identifier"),
    ],
)
def test_task_magic_usage_errors(ip: InteractiveShell, line: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ip.run_cell_magic("task", line, "1")


def test_empty_task_cell_is_refused(ip: InteractiveShell) -> None:
    with pytest.raises(UsageError, match="empty body"):
        ip.run_cell_magic("task", "a", "   \n")


def test_wfy_run_usage_errors(ip: InteractiveShell) -> None:
    with pytest.raises(UsageError, match="no tasks are defined yet"):
        ip.run_line_magic("wfy_run", "")
    ip.run_cell_magic("task", "a", "1")
    with pytest.raises(UsageError, match=r"unknown task 'aa' \(did you mean 'a'\?\)"):
        ip.run_line_magic("wfy_run", "aa")
    with pytest.raises(UsageError, match="--max-workers: expected a whole number >= 1"):
        ip.run_line_magic("wfy_run", "--max-workers 0")


def test_wfy_run_reports_failures_and_raise_flag(
        ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_cell_magic("task", "good", "1")
    ip.run_cell_magic("task", "bad", "raise ZeroDivisionError('nope')")
    ip.run_cell_magic("task", "later", "bad", )
    ip.run_cell_magic("task", "later --after bad", "bad")
    ip.run_line_magic("wfy_run", "--no-widget")
    out = capsys.readouterr()
    assert "good" in out.out and "completed" in out.out
    assert "1 completed, 2 failed" in out.out
    assert "task 'bad' failed after 1 attempt(s)" in out.err
    assert "ZeroDivisionError: nope" in out.err
    assert "task 'later' did not run: its dependency 'bad' ended failed" in out.err
    with pytest.raises(ZeroDivisionError):
        ip.run_line_magic("wfy_run", "--no-widget --raise")


def test_wfy_run_runs_only_what_the_named_task_needs(ip: InteractiveShell) -> None:
    ip.run_cell_magic("task", "a", "1")
    ip.run_cell_magic("task", "b --after a", "a + 1")
    ip.run_cell_magic("task", "other", "'x'")
    ip.run_line_magic("wfy_run", "b --no-widget")
    assert ip.user_ns["b"] == 2 and "other" not in ip.user_ns


def test_help_documents_the_options(ip: InteractiveShell) -> None:
    doc = ip.find_line_magic("wfy_run").__doc__
    assert "--background" in doc and "--max-workers" in doc
    assert "--after" in ip.find_cell_magic("task").__doc__


def test_status_and_reset(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_line_magic("wfy_status", "")
    assert "no tasks defined yet" in capsys.readouterr().out
    ip.run_cell_magic("task", "a", "1")
    ip.run_cell_magic("task", "b --after a --backend asyncio", "2")
    ip.run_line_magic("wfy_run", "a --no-widget")
    capsys.readouterr()
    ip.run_line_magic("wfy_status", "")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["task", "after", "backend", "status"]
    assert lines[1].split()[:4] == ["a", "-", "thread", "completed"]
    # The duration in the words of the widget and the static picture (one formatter).
    took = magics_session(ip).results["a"].duration
    assert took is not None and f"  {format_duration(took)}  " in lines[1]
    assert lines[2].split()[:5] == ["b", "a", "asyncio", "not", "run"]
    ip.run_line_magic("wfy_reset", "a")
    assert list(magics_session(ip).tasks) == ["b"]
    with pytest.raises(UsageError, match="unknown task 'a'"):
        ip.run_line_magic("wfy_reset", "a")
    ip.run_line_magic("wfy_reset", "")
    assert magics_session(ip).tasks == {}
    assert ip.user_ns["a"] == 1  # values stay


def test_schedule_every_fires_repeatedly_with_current_code(ip: InteractiveShell) -> None:
    ip.user_ns["ticks"] = []
    ip.run_cell_magic("task", "base", "10")
    ip.run_cell_magic("task", "tick --after base", "ticks.append(base)\nlen(ticks)")
    ip.run_line_magic("wfy_schedule", "every 0.05 tick")
    session = magics_session(ip)
    try:
        wait_until(lambda: len(ip.user_ns["ticks"]) >= 2, "two firings")
        assert ip.user_ns["tick"] >= 1 and ip.user_ns["base"] == 10
        # Redefining a cell takes effect on a later firing.
        ip.run_cell_magic("task", "base", "20")
        wait_until(lambda: 20 in ip.user_ns["ticks"], "a firing with the new code")
        rows = session.schedules.rows()
        assert rows[0]["tasks"] == "tick" and rows[0]["trigger"] == "every 0.05s"
    finally:
        ip.run_line_magic("wfy_schedule", "stop tick")
    assert session.schedules.rows() == []


def test_schedule_cron_and_errors(ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
                                  ) -> None:
    ip.run_cell_magic("task", "a", "1")
    with pytest.raises(UsageError, match="unknown task 'nope'"):
        ip.run_line_magic("wfy_schedule", "every 5 nope")
    with pytest.raises(UsageError, match="every: expected a positive"):
        ip.run_line_magic("wfy_schedule", "every -5 a")
    with pytest.raises(UsageError, match="bad cron expression"):
        ip.run_line_magic("wfy_schedule", 'cron "61 * * * *" a')
    with pytest.raises(UsageError, match="unknown %wfy_schedule action 'sometimes'"):
        ip.run_line_magic("wfy_schedule", "sometimes a")
    with pytest.raises(UsageError, match="no schedule fires 'a'"):
        ip.run_line_magic("wfy_schedule", "stop a")
    ip.run_line_magic("wfy_schedule", 'cron "*/5 * * * *" a')
    ip.run_line_magic("wfy_schedule", "cron 0 12 * * 1-5 a")  # unquoted fields work too
    capsys.readouterr()
    ip.run_line_magic("wfy_schedule", "list")
    listing = capsys.readouterr().out
    assert "cron '*/5 * * * *'" in listing and "cron '0 12 * * 1-5'" in listing
    ip.run_line_magic("wfy_schedule", "stop")
    ip.run_line_magic("wfy_schedule", "list")
    assert "nothing is scheduled" in capsys.readouterr().out


def test_extension_entry_points(ip: InteractiveShell) -> None:
    import pyworkflowy_nb
    from pyworkflowy_nb import notebook

    shell: Any = ip
    pyworkflowy_nb.load_ipython_extension(shell)
    assert notebook.get_session(shell) is notebook.get_session(shell)
    assert shell.find_line_magic("wfy_run") is not None
    pyworkflowy_nb.unload_ipython_extension(shell)
    assert shell.find_line_magic("wfy_run") is None
    assert shell.find_cell_magic("task") is None


def test_checkpoint_magics(ip: InteractiveShell, tmp_path: Any, key_file: Any,
                           capsys: pytest.CaptureFixture[str]) -> None:
    session = magics_session(ip)
    assert session.checkpoint_path is None  # off outside a kernel
    target = tmp_path / "here.ckpt"
    ip.run_line_magic("wfy_config", f"--checkpoint {target} --max-workers 3")
    out = capsys.readouterr().out
    assert f"checkpoint: {target} (nothing stored yet)" in out and "max workers: 3" in out
    ip.user_ns["calls"] = []
    ip.run_cell_magic("task", "a", "calls.append('a')\n1")
    ip.run_line_magic("wfy_run", "--no-widget")
    ip.run_line_magic("wfy_run", "--no-widget")
    assert ip.user_ns["calls"] == ["a"]
    assert "1 restored" in capsys.readouterr().out
    ip.run_line_magic("wfy_run", "--no-widget --force")
    assert ip.user_ns["calls"] == ["a", "a"]
    # A redefinition with the same code restores and says so.
    ip.run_cell_magic("task", "a", "calls.append('a')\n1")
    assert "restored a from the checkpoint" in capsys.readouterr().out
    # Tampering: the run stops with a one-line UsageError that names the ways out.
    manifest = target.read_text()
    target.write_text(manifest.replace('"records": 1', '"records": 2'))
    with pytest.raises(UsageError, match=r"integrity check.*%wfy_reset --checkpoint"):
        ip.run_line_magic("wfy_run", "--no-widget")
    ip.run_line_magic("wfy_reset", "--checkpoint")
    assert not target.exists() and not (tmp_path / "here.ckpt.d").exists()
    ip.run_cell_magic("task", "a", "calls.append('a')\n1")
    ip.run_line_magic("wfy_run", "--no-widget")
    assert ip.user_ns["calls"] == ["a", "a", "a"] and target.exists()
    ip.run_line_magic("wfy_config", "--no-checkpoint")
    assert "checkpoint: off" in capsys.readouterr().out
    with pytest.raises(UsageError, match="pick one of"):
        ip.run_line_magic("wfy_config", "--no-checkpoint --default-checkpoint")


def test_works_without_ipywidgets(tmp_path: Any) -> None:
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    code = textwrap.dedent("""
        import sys
        sys.modules["ipywidgets"] = None  # as if it were not installed
        import pyworkflowy_nb.notebook as nb
        from pyworkflowy_nb import TaskRunner
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        nb.load_ipython_extension(ip)
        ip.run_cell_magic("task", "a", "40 + 2")
        ip.run_line_magic("wfy_run", "")          # no widget possible: a text summary
        print("value", ip.user_ns["a"])
        try:
            nb.watch(TaskRunner())
        except ImportError as exc:
            print("hint", exc)
    """)
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=tmp_path, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(root)})
    assert out.returncode == 0, out.stderr
    assert "a     completed  1" in out.stdout and "wfy: 1 completed" in out.stdout
    assert "value 42" in out.stdout
    assert "hint" in out.stdout and "pip install ipywidgets" in out.stdout


def test_one_line_cells_named_like_line_magics_are_not_automagic(ip: InteractiveShell) -> None:
    # `load` is also IPython's %load magic; with automagic a one-line `load * 2` cell would
    # silently become a magic call returning None.
    ip.run_cell_magic("task", "load", "21")
    ip.run_cell_magic("task", "double --after load", "load * 2")
    ip.run_line_magic("wfy_run", "--no-widget")
    assert ip.user_ns["double"] == 42


def test_failure_tracebacks_show_the_cell_and_user_code_not_the_library(
        ip: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    ip.run_cell("def ratio(x):\n    return 1 // x\n")
    ip.run_cell_magic("task", "threaded", "ratio(0)")
    ip.run_cell_magic("task", "awaiting", "import asyncio\nawait asyncio.sleep(0)\nratio(0)")
    ip.run_cell_magic("task", "chained", "try:\n    ratio(0)\nexcept ZeroDivisionError as e:\n"
                     "    raise ValueError('bad ratio') from e")
    ip.run_cell_magic("task", "remote --backend process", "1 // 0")
    try:
        ip.run_line_magic("wfy_run", "--no-widget")
    finally:
        magics_session(ip).close()
    err = capsys.readouterr().err
    for name, line in (("threaded", 1), ("awaiting", 3), ("chained", 2), ("remote", 1)):
        assert f'File "<wfy-task {name}>", line {line}, in <module>' in err
    assert err.count(", in ratio\n") == 3  # user code the cells called keeps its frame
    assert "ValueError: bad ratio" in err
    assert "The above exception was the direct cause of the following exception" in err
    assert "raised in the worker process of task 'remote'" in err
    # One per cell, and the process cell's again at the end of the worker traceback in its note.
    assert err.count("ZeroDivisionError: integer division or modulo by zero") == 5
    assert "pyworkflowy_nb/" not in err and "concurrent/futures" not in err
    assert "asyncio/" not in err
