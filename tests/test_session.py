"""The notebook session and its magics, in-process (IPython's InteractiveShell, no kernel).

Kernel-only behaviour (the running loop, parent headers, SIGKILL) is in test_*_kernel.py.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from kernel_utils import poll

from pyworkflowy_nb import TaskStatus
from pyworkflowy_nb.exceptions import (
    CheckpointError,
    CycleError,
    DependencyFailedError,
    TaskTimeoutError,
)
from pyworkflowy_nb.notebook import Session
from pyworkflowy_nb.notebook._magics import WorkflowMagics
from pyworkflowy_nb.notebook._session import (
    SessionCycleError,
    cell_version,
    default_checkpoint_path,
)


@pytest.fixture
def session() -> Session:
    return Session(user_ns={})


@pytest.fixture
def ip() -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    session = Session(shell=shell)
    shell.register_magics(WorkflowMagics(shell, session))
    try:
        yield shell
    finally:
        session.close()
        # Leave no global shell behind: other test modules check behaviour outside IPython.
        shell.history_manager.end_session()
        InteractiveShell.clear_instance()


def magics_session(ip: InteractiveShell) -> Session:
    magics = ip.magics_manager.registry["WorkflowMagics"]
    assert isinstance(magics, WorkflowMagics)
    return magics.session


# -- definitions -------------------------------------------------------------------------------


def test_plan_is_topological_with_definition_order_for_ties(session: Session) -> None:
    session.define("report", "1", after=["clean", "stats"])
    session.define("load", "1")
    session.define("stats", "1", after=["load"])
    session.define("clean", "1", after=["load"])
    assert [c.name for c in session.plan()] == ["load", "stats", "clean", "report"]
    # Only what the named task needs:
    assert [c.name for c in session.plan(["stats"])] == ["load", "stats"]


def test_bad_names_are_usage_errors_that_suggest_a_fix(session: Session) -> None:
    with pytest.raises(UsageError, match=r"'my-task' is not a valid Python identifier.*'my_task'"):
        session.define("my-task", "1")
    with pytest.raises(UsageError, match="'class'"):
        session.define("class", "1")
    with pytest.raises(UsageError, match=r"--after task name '2x'"):
        session.define("ok", "1", after=["2x"])
    with pytest.raises(UsageError, match=r"separated by spaces, not commas: write --after a b"):
        session.define("ok", "1", after=["a,b"])


def test_after_may_name_a_task_defined_later_but_a_run_needs_it(session: Session) -> None:
    session.define("child", "parent + 1", after=["parent"])
    with pytest.raises(UsageError, match=r"'child' runs --after 'parent', which is not defined"):
        session.plan()
    session.define("parent", "41")
    session.run()
    assert session.user_ns["child"] == 42


def test_cycles_are_refused_and_the_old_definition_kept(session: Session) -> None:
    session.define("a", "1")
    session.define("b", "a", after=["a"])
    session.define("c", "b", after=["b"])
    with pytest.raises(SessionCycleError) as info:
        session.define("a", "c", after=["c"])
    assert isinstance(info.value, CycleError) and isinstance(info.value, UsageError)
    assert info.value.cycle == ("a", "c", "b", "a")
    assert session.tasks["a"].after == ()  # the previous definition stays
    with pytest.raises(SessionCycleError, match="cannot run --after itself"):
        session.define("d", "1", after=["d"])


def test_redefining_keeps_the_position_and_changes_the_version(session: Session) -> None:
    session.define("a", "1")
    session.define("b", "2")
    v1 = session.tasks["a"].version
    session.define("a", "10")
    assert list(session.tasks) == ["a", "b"]
    assert session.tasks["a"].version != v1


def test_version_ignores_line_endings_and_trailing_blanks_only() -> None:
    assert cell_version("x = 1\ny = 2\n") == cell_version("x = 1  \r\ny = 2\r\n\n")
    assert cell_version("x = 1") != cell_version("x = 2")
    assert cell_version("x = 1") != cell_version("x = 1  # changed")


def test_bad_options(session: Session) -> None:
    with pytest.raises(UsageError, match=r"unknown --backend 'thraed' \(did you mean 'thread'"):
        session.define("a", "1", backend="thraed")
    with pytest.raises(UsageError, match="top-level await, which needs --backend asyncio"):
        session.define("a", "import asyncio\nawait asyncio.sleep(0)", backend="thread")
    with pytest.raises(UsageError, match="--retries"):
        session.define("a", "1", retries=-1)
    with pytest.raises(UsageError, match="--timeout"):
        session.define("a", "1", timeout=0)
    with pytest.raises(UsageError, match="no tasks are defined yet"):
        session.plan()
    session.define("a", "1")
    with pytest.raises(UsageError, match=r"unknown task 'b'"):
        session.plan(["b"])


def test_syntax_errors_point_at_the_cell(session: Session) -> None:
    with pytest.raises(SyntaxError) as info:
        session.define("a", "x = (1,\n")
    assert info.value.filename == "<wfy-task a>"


# -- running -----------------------------------------------------------------------------------


def test_cells_see_the_namespace_and_upstream_but_keep_their_assignments(session: Session) -> None:
    ns = session.user_ns
    ns["factor"] = 3
    ns["double"] = lambda v: 2 * v
    session.define("load", "data = [1, 2, 3]\ndata")
    session.define("scaled", "tmp = [factor * v for v in load]\ndouble(sum(tmp))",
                   after=["load"])
    session.define("side", "not_a_result = 5")  # no final expression: result None
    results = session.run()
    assert results.ok
    assert ns["load"] == [1, 2, 3]
    assert ns["scaled"] == 36
    assert ns["side"] is None
    assert "data" not in ns and "tmp" not in ns and "not_a_result" not in ns


def test_functions_defined_inside_a_cell_see_the_cell_names(session: Session) -> None:
    session.define("a", "k = 5\ndef f(x):\n    return x + k\nf(1)")
    session.run()
    assert session.user_ns["a"] == 6


def test_top_level_await_runs_on_asyncio(session: Session) -> None:
    session.define("a", "import asyncio\nawait asyncio.sleep(0)\n7")
    session.define("b", "import asyncio\nawait asyncio.sleep(0, result=a * 6)", after=["a"])
    cell = session.tasks["b"]
    assert cell.is_async and cell.backend == "asyncio"
    session.run()
    assert session.user_ns["b"] == 42


def test_sync_cells_default_to_the_thread_backend(session: Session) -> None:
    session.define("where", "import threading\nthreading.current_thread().name")
    session.run()
    assert session.user_ns["where"] != threading.current_thread().name
    assert session.tasks["where"].backend == "thread"


def test_failures_stay_on_their_branch(session: Session) -> None:
    session.define("ok", "1")
    session.define("bad", "raise ValueError('boom')")
    session.define("after_bad", "bad", after=["bad"])
    results = session.run()
    assert not results.ok
    assert results["ok"].status is TaskStatus.COMPLETED
    assert isinstance(results["bad"].error, ValueError)
    assert isinstance(results["after_bad"].error, DependencyFailedError)
    assert session.user_ns["ok"] == 1
    assert "bad" not in session.user_ns and "after_bad" not in session.user_ns
    assert session.results["bad"].status is TaskStatus.FAILED


def test_retries_and_timeouts(session: Session) -> None:
    ns = session.user_ns
    ns["calls"] = []
    ns["release"] = threading.Event()
    session.define("flaky", "calls.append(1)\nif len(calls) < 3:\n    raise OSError('again')\n"
                   "len(calls)", retries=2)
    session.define("slow", "release.wait(60)\n'late'", timeout=0.05)

    def release_on_timeout(event: Any) -> None:
        # The body is a thread the timeout cannot kill; let it go once the timeout is recorded.
        if event.kind == "failed" and event.key == "slow":
            ns["release"].set()

    run = session.start(session.build(listeners=[release_on_timeout]), background=False)
    try:
        results = session.wait(run)
    finally:
        ns["release"].set()
    assert results["flaky"].value == 3 and results["flaky"].attempts == 3
    assert isinstance(results["slow"].error, TaskTimeoutError)


def test_a_changed_cell_changes_its_own_and_downstream_fingerprints_only(
        session: Session) -> None:
    session.define("a", "1")
    session.define("b", "2")
    session.define("c", "a + b", after=["a", "b"])
    before = {k: h.fingerprint for k, h in session.build().handles.items()}
    session.define("a", "10")
    after = {k: h.fingerprint for k, h in session.build().handles.items()}
    assert after["a"] != before["a"] and after["c"] != before["c"]
    assert after["b"] == before["b"]
    # Options that do not change the result do not change the identity.
    session.define("b", "2", retries=3)
    assert session.build().handles["b"].fingerprint == before["b"]


def test_process_backend_ships_the_cell_with_cloudpickle(session: Session) -> None:
    ns = session.user_ns
    ns["offset"] = 100
    ns["square"] = lambda v: v * v  # a lambda: only cloudpickle can send it
    session.define("base", "4")
    session.define("remote", "import os\n(os.getpid(), square(base) + offset)",
                   after=["base"], backend="process")
    session.define("remote_fail", "raise KeyError('in the worker')", backend="process")
    try:
        results = session.run()
    finally:
        session.close()
    pid, value = ns["remote"]
    assert value == 116 and pid != os.getpid()
    err = results["remote_fail"].error
    assert isinstance(err, KeyError)
    assert any("worker process" in note for note in getattr(err, "__notes__", []))


def test_forget(session: Session) -> None:
    session.define("a", "1")
    session.define("b", "2")
    assert session.forget(["a"]) == ["a"]
    assert list(session.tasks) == ["b"]
    with pytest.raises(UsageError, match="unknown task 'zz'"):
        session.forget(["zz"])
    assert session.forget() == ["b"]
    assert session.tasks == {}


def test_a_background_run_blocks_a_second_run_until_done(session: Session) -> None:
    gate = threading.Event()
    session.user_ns["gate"] = gate
    session.define("wait", "gate.wait(60)\n'done'")
    run = session.start(session.build(), background=True)
    try:
        with pytest.raises(UsageError, match="still going"):
            session.check_idle()
    finally:
        gate.set()
    assert run.future is not None
    assert run.future.result(timeout=60).ok
    poll(lambda: session.user_ns.get("wait") == "done", what="the background result")
    session.check_idle()


# -- the magics, in-process --------------------------------------------------------------------


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
        poll(lambda: len(ip.user_ns["ticks"]) >= 2, what="two firings")
        assert ip.user_ns["tick"] >= 1 and ip.user_ns["base"] == 10
        # Redefining a cell takes effect on a later firing.
        ip.run_cell_magic("task", "base", "20")
        poll(lambda: 20 in ip.user_ns["ticks"], what="a firing with the new code")
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


# -- checkpoints (issue 5) ---------------------------------------------------------------------


@pytest.fixture
def key_file(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    path = tmp_path / "keys" / "wfy.key"
    monkeypatch.setenv("PYWORKFLOWY_NB_KEY_FILE", str(path))
    return path


def _notebook_ns(calls: list[str]) -> dict[str, Any]:
    """A namespace whose functions look notebook-defined (module __main__)."""
    ns: dict[str, Any] = {"__name__": "__main__", "calls": calls}
    exec("def helper(v):\n    return v + 1\n", ns)
    return ns


CELLS = [
    ("a", "calls.append('a')\n1", ()),
    ("b", "calls.append('b')\nhelper(a)", ("a",)),
    ("c", "calls.append('c')\na * 10", ("a",)),
    ("d", "calls.append('d')\nb + c", ("b", "c")),
]


def _define_all(session: Session, order: Sequence[int] = (0, 1, 2, 3)) -> None:
    for i in order:
        name, source, after = CELLS[i]
        session.define(name, source, after=after)


def test_a_restarted_session_primes_completed_tasks_in_any_order(
        tmp_path: Any, key_file: Any) -> None:
    ckpt = tmp_path / "nb" / ".wfy" / "demo.ckpt"
    calls: list[str] = []
    first = Session(user_ns=_notebook_ns(calls), checkpoint=ckpt)
    _define_all(first)
    assert first.run().ok
    assert sorted(calls) == ["a", "b", "c", "d"] and ckpt.exists()
    assert oct(ckpt.stat().st_mode & 0o777) == "0o600"
    expected = {k: first.user_ns[k] for k in "abcd"}

    # "Restart": a new session over a new namespace, cells re-run in another order.
    calls.clear()
    second = Session(user_ns=_notebook_ns(calls), checkpoint=ckpt)
    second.define(*CELLS[3][:2], after=CELLS[3][2])    # d: upstream unknown, nothing to check
    assert second.last_primed == [] and "d" not in second.user_ns
    second.define(*CELLS[1][:2], after=CELLS[1][2])    # b: needs a
    assert second.last_primed == []
    second.define(*CELLS[0][:2], after=CELLS[0][2])    # a completes b's upstream
    assert sorted(second.last_primed) == ["a", "b"]
    second.define(*CELLS[2][:2], after=CELLS[2][2])    # c completes d's upstream
    assert sorted(second.last_primed) == ["c", "d"]
    assert {k: second.user_ns[k] for k in "abcd"} == expected
    assert calls == []  # restoring ran nothing
    results = second.run()
    assert calls == [] and all(results[k].restored for k in "abcd")
    assert {k: second.user_ns[k] for k in "abcd"} == expected


def test_a_changed_cell_reruns_only_its_downstream(tmp_path: Any, key_file: Any) -> None:
    ckpt = tmp_path / "s.ckpt"
    calls: list[str] = []
    session = Session(user_ns=_notebook_ns(calls), checkpoint=ckpt)
    _define_all(session)
    session.run()
    calls.clear()
    session.define("c", "calls.append('c')\na * 100", after=["a"])
    results = session.run()
    assert sorted(calls) == ["c", "d"]
    assert results["a"].restored and results["b"].restored
    assert session.user_ns["d"] == 2 + 100
    # Editing a notebook helper the cells use re-runs its users (b) and theirs (d).
    calls.clear()
    exec("def helper(v):\n    return v + 2\n", session.user_ns)
    session.run()
    assert sorted(calls) == ["b", "d"]
    assert session.user_ns["d"] == 3 + 100


def test_force_reruns_and_replaces_the_stored_results(tmp_path: Any, key_file: Any) -> None:
    ckpt = tmp_path / "s.ckpt"
    calls: list[str] = []
    session = Session(user_ns=_notebook_ns(calls), checkpoint=ckpt)
    session.define("n", "calls.append('n')\nlen(calls)")
    session.run()
    run = session.start(session.build(restore=False), background=False)
    session.wait(run)
    assert calls == ["n", "n"] and session.user_ns["n"] == 2
    # The forced result is what a restart restores.
    other = Session(user_ns=_notebook_ns(calls), checkpoint=ckpt)
    other.define("n", "calls.append('n')\nlen(calls)")
    assert other.user_ns["n"] == 2 and calls == ["n", "n"]


def test_unpicklable_results_rerun_after_a_restart(tmp_path: Any, key_file: Any) -> None:
    ckpt = tmp_path / "s.ckpt"
    calls: list[str] = []
    session = Session(user_ns=_notebook_ns(calls), checkpoint=ckpt)
    session.define("lock", "import threading\ncalls.append('lock')\nthreading.Lock()")
    session.define("plain", "calls.append('plain')\n5")
    assert session.run().ok
    calls.clear()
    again = Session(user_ns=_notebook_ns(calls), checkpoint=ckpt)
    again.define("lock", "import threading\ncalls.append('lock')\nthreading.Lock()")
    again.define("plain", "calls.append('plain')\n5")
    again.run()
    assert calls == ["lock"]


def test_a_tampered_checkpoint_is_refused(tmp_path: Any, key_file: Any) -> None:
    ckpt = tmp_path / "s.ckpt"
    session = Session(user_ns=_notebook_ns([]), checkpoint=ckpt)
    session.define("a", "calls.append('a')\n1")
    session.run()
    segment = next((tmp_path / "s.ckpt.d").iterdir())
    data = bytearray(segment.read_bytes())
    data[-1] ^= 0xFF
    segment.write_bytes(bytes(data))
    other = Session(user_ns=_notebook_ns([]), checkpoint=ckpt)
    other.define("a", "calls.append('a')\n1")  # restoring fails quietly here (a warning)...
    assert "a" not in other.user_ns
    with pytest.raises(CheckpointError, match="does not match"):  # ...and loudly on a run
        other.run()


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


def test_default_checkpoint_path_sits_beside_the_notebook(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    nb = tmp_path / "work" / "analysis.ipynb"
    assert default_checkpoint_path({"__session__": str(nb)}) == (
        tmp_path / "work" / ".wfy" / "analysis.ckpt")
    assert default_checkpoint_path({"__vsc_ipynb_file__": str(nb)}) == (
        tmp_path / "work" / ".wfy" / "analysis.ckpt")
    monkeypatch.setenv("JPY_SESSION_NAME", str(nb))
    assert default_checkpoint_path({}) == tmp_path / "work" / ".wfy" / "analysis.ckpt"
    monkeypatch.setenv("JPY_SESSION_NAME", "not-a-notebook")
    assert default_checkpoint_path({}) == tmp_path / ".wfy" / "session.ckpt"


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


def test_a_timed_out_thread_does_not_hold_up_the_next_run(session: Session) -> None:
    release, finished = threading.Event(), threading.Event()
    session.user_ns.update(release=release, finished=finished)
    session.define("stuck", "release.wait(120)\nfinished.set()", timeout=0.05)
    try:
        first = session.run()
        assert isinstance(first["stuck"].error, TaskTimeoutError)
        # The body is still blocked in its thread; a new run must not wait for it.
        session.define("stuck", "finished.is_set()")
        second = session.run()
        assert second.ok and session.user_ns["stuck"] is False
    finally:
        release.set()


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
