"""The notebook session, in-process: definitions, runs, checkpoints (the magics: test_magics.py)."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from engine_helpers import wait_until

from pyworkflowy_nb import TaskStatus
from pyworkflowy_nb.exceptions import (
    CheckpointError,
    CycleError,
    DependencyFailedError,
    TaskTimeoutError,
)
from pyworkflowy_nb.notebook import (
    Run,
    RunInProgressError,
    Session,
    SessionCycleError,
    SessionError,
)
from pyworkflowy_nb.notebook._session import cell_version, default_checkpoint_path


@pytest.fixture
def session() -> Session:
    return Session(user_ns={})


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
    with pytest.raises(SessionError,
                       match=r"'my-task' is not a valid Python identifier.*'my_task'"):
        session.define("my-task", "1")
    with pytest.raises(SessionError, match="'class'"):
        session.define("class", "1")
    with pytest.raises(SessionError, match=r"--after task name '2x'"):
        session.define("ok", "1", after=["2x"])
    with pytest.raises(SessionError, match=r"separated by spaces, not commas: write --after a b"):
        session.define("ok", "1", after=["a,b"])


def test_after_may_name_a_task_defined_later_but_a_run_needs_it(session: Session) -> None:
    session.define("child", "parent + 1", after=["parent"])
    with pytest.raises(SessionError, match=r"'child' runs --after 'parent', which is not defined"):
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
    assert isinstance(info.value, CycleError) and isinstance(info.value, SessionError)
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
    with pytest.raises(SessionError, match=r"unknown --backend 'thraed' \(did you mean 'thread'"):
        session.define("a", "1", backend="thraed")
    with pytest.raises(SessionError, match="top-level await, which needs --backend asyncio"):
        session.define("a", "import asyncio\nawait asyncio.sleep(0)", backend="thread")
    with pytest.raises(SessionError, match="--retries"):
        session.define("a", "1", retries=-1)
    with pytest.raises(SessionError, match="--timeout"):
        session.define("a", "1", timeout=0)
    with pytest.raises(SessionError, match="no tasks are defined yet"):
        session.plan()
    session.define("a", "1")
    with pytest.raises(SessionError, match=r"unknown task 'b'"):
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
    with pytest.raises(SessionError, match="unknown task 'zz'"):
        session.forget(["zz"])
    assert session.forget() == ["b"]
    assert session.tasks == {}


def test_a_background_run_blocks_a_second_run_until_done(session: Session) -> None:
    gate = threading.Event()
    session.user_ns["gate"] = gate
    session.define("wait", "gate.wait(60)\n'done'")
    run = session.start(session.build(), background=True)
    try:
        with pytest.raises(RunInProgressError, match="still going"):
            session.check_idle()
    finally:
        gate.set()
    assert run.future is not None
    assert run.future.result(timeout=60).ok
    wait_until(lambda: session.user_ns.get("wait") == "done", "the background result")
    session.check_idle()


def test_a_run_owns_start_wait_and_cancel(session: Session) -> None:
    gate = threading.Event()
    session.user_ns["gate"] = gate
    session.define("held", "gate.wait(60)\n'released'")
    run = session.start(session.build(), background=True)
    assert isinstance(run, Run) and run.started
    with pytest.raises(TimeoutError, match=r"still going after 0\.05 s"):
        run.wait(timeout=0.05)
    with pytest.raises(RuntimeError, match="started already"):
        run.start()
    gate.set()
    results = run.wait()
    assert results.ok and results["held"].value == "released" and run.done
    assert run.cancel() is False  # nothing left to cancel
    assert session.wait_for_run() is results
    # Never started: wait() runs it here; a cancelled one ends with its tasks cancelled.
    blocking = session.build()
    assert not blocking.started and blocking.wait()["held"].value == "released"
    gate.clear()
    stopped = session.start(session.build(restore=False), background=True)
    wait_until(lambda: stopped.handles["held"].status.value == "running", "held to start")
    assert stopped.cancel() is True
    gate.set()
    assert stopped.wait(timeout=60)["held"].status.value == "cancelled"


# -- checkpoints (issue 5) ---------------------------------------------------------------------

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


