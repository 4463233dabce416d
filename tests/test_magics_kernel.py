"""The magics through a real Jupyter kernel: ``%load_ext pyworkflowy_nb`` and what follows."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import wait_until
from kernel_utils import CELL_TIMEOUT, WIDGET_MIME, CellResult, Kernel

from pyworkflowy_nb.exceptions import CheckpointError
from pyworkflowy_nb.notebook._checkpoint import CloudpickleCheckpointer

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def shared_kernel() -> Iterator[Kernel]:
    with Kernel() as k:
        k.execute("""
            %load_ext pyworkflowy_nb
            import threading, os
            from pyworkflowy_nb.notebook import get_session
            session = get_session()
        """)
        yield k


@pytest.fixture
def kernel(shared_kernel: Kernel) -> Iterator[Kernel]:
    """The module's kernel, with the session's tasks and stored results dropped afterwards."""
    yield shared_kernel
    # A background run may still be finishing (its results land before it ends).
    wait_until(lambda: shared_kernel.value("session.last_run is None or session.last_run.done"),
               "the last run to end", CELL_TIMEOUT)
    shared_kernel.execute("%wfy_reset --checkpoint")


def _usage_error(res: CellResult) -> str:
    assert res.status == "error"
    err = res.error
    assert err is not None and err["ename"] == "UsageError", err
    return str(err["evalue"])


def test_define_run_and_results_in_the_namespace_with_the_live_widget(kernel: Kernel) -> None:
    kernel.execute("""
        %%task load
        rows = [3, 1, 2]
        print("loading", len(rows), "rows")
        rows
    """)
    kernel.execute("""
        %%task clean --after load
        sorted(load)
    """)
    kernel.execute("""
        %%task report --after clean load
        f"{len(load)} rows, first {clean[0]}"
    """)
    # Defining does not run.
    assert kernel.value("[n in globals() for n in ('load', 'clean', 'report')]") == [
        False, False, False]
    start = len(kernel.iopub)
    res = kernel.execute("%wfy_run")
    assert kernel.value("[load, clean, report]") == [[3, 1, 2], [1, 2, 3], "3 rows, first 1"]
    assert kernel.value("'rows' in globals()") is False  # cell assignments stay in the task

    # The live widget was displayed in this cell...
    shown = [m for m in res.of_type("display_data") if WIDGET_MIME in m["content"]["data"]]
    assert len(shown) == 1
    # ...and every widget message of this blocking run was filed under this cell, including
    # the updates sent from the run's threads (the ipykernel 7 parent-header trap).
    comms = [m for m in kernel.messages_since(start) if m["msg_type"].startswith("comm_")]
    updates = [m for m in comms if m["content"].get("data", {}).get("method") == "update"]
    assert updates
    assert {m["parent_header"].get("msg_id") for m in comms} == {res.msg_id}
    # The final picture reached the frontend before the cell ended: it says "3 completed".
    texts = [json.dumps(m["content"]["data"]["state"]) for m in updates]
    assert any("3 completed" in t or ("completed" in t and "3 tasks" in t) for t in texts), texts
    assert "3 completed" not in res.stdout  # no text summary when the widget is shown
    # A print inside a task (on a worker thread) shows up in the cell that ran it.
    assert "loading 3 rows" in res.stdout


def test_text_summary_and_failures_point_at_the_cell(kernel: Kernel) -> None:
    kernel.execute("""
        %%task fine
        1
    """)
    kernel.execute("""
        %%task broken
        x = 1
        x / 0
    """)
    kernel.execute("""
        %%task downstream --after broken
        broken
    """)
    res = kernel.execute("%wfy_run --no-widget")
    assert res.ok  # failures are reported, not raised, unless --raise
    assert "1 completed, 2 failed" in res.stdout
    assert "task 'broken' failed after 1 attempt(s)" in res.stderr
    assert '<wfy-task broken>", line 2' in res.stderr and "x / 0" in res.stderr
    assert "task 'downstream' did not run: its dependency 'broken' ended failed" in res.stderr
    res = kernel.execute("%wfy_run --no-widget --raise", check=False)
    assert res.error is not None and res.error["ename"] == "ZeroDivisionError"


def test_usage_errors_are_one_liners(kernel: Kernel) -> None:
    msg = _usage_error(kernel.execute("%%task bad-name\n1", check=False))
    assert "'bad-name' is not a valid Python identifier" in msg
    msg = _usage_error(kernel.execute("%%task t --backend gpu\n1", check=False))
    assert "unknown --backend 'gpu'" in msg
    kernel.execute("%%task a --after b\n1")
    kernel.execute("%%task b\n2")
    msg = _usage_error(kernel.execute("%%task b --after a\n2", check=False))
    assert "would close a dependency cycle" in msg
    msg = _usage_error(kernel.execute("%wfy_run nope", check=False))
    assert "unknown task 'nope'" in msg
    msg = _usage_error(kernel.execute("%wfy_run --max-workers lots", check=False))
    assert "--max-workers" in msg


def test_help_is_generated_from_the_arguments(kernel: Kernel) -> None:
    res = kernel.execute("%wfy_run?")
    pages = [p["data"]["text/plain"] for p in res.reply["content"]["payload"]
             if p.get("source") == "page"]
    assert pages and "--background" in pages[0] and "--max-workers N" in pages[0]


def test_rerunning_a_cell_redefines_the_node(kernel: Kernel) -> None:
    kernel.execute("%%task value\n1")
    kernel.execute("%%task plus --after value\nvalue + 100")
    kernel.execute("%wfy_run --no-widget")
    assert kernel.value("plus") == 101
    kernel.execute("%%task value\n2")
    kernel.execute("%wfy_run --no-widget")
    assert kernel.value("plus") == 102


def test_cells_use_earlier_definitions_and_top_level_await(kernel: Kernel) -> None:
    kernel.execute("""
        import asyncio
        def triple(v):
            return 3 * v
    """)
    kernel.execute("""
        %%task fetched
        await asyncio.sleep(0)
        triple(14)
    """)
    res = kernel.execute("%wfy_run --no-widget")
    assert "1 completed" in res.stdout
    assert kernel.value("[fetched, session.tasks['fetched'].backend]") == [42, "asyncio"]


def test_process_backend_in_the_kernel(kernel: Kernel) -> None:
    kernel.execute("""
        def halve(v):           # defined in the notebook: shipped by value with cloudpickle
            return v // 2
    """)
    kernel.execute("%%task base\n84")
    kernel.execute("""
        %%task remote --after base --backend process
        import os
        (os.getpid(), halve(base))
    """)
    kernel.execute("%wfy_run --no-widget")
    pid, value = kernel.value("remote")
    assert value == 42 and pid != kernel.value("os.getpid()")


def test_background_run_returns_at_once(kernel: Kernel) -> None:
    kernel.execute("gate = threading.Event()")
    kernel.execute("%%task slow\ngate.wait(120)\n'slow done'")
    kernel.execute("%%task after_slow --after slow\nslow.upper()")
    res = kernel.execute("%wfy_run --background")
    assert "running 2 task(s) in the background" in res.stdout
    # The kernel is free: other cells run, the results are not there yet.
    assert kernel.value("['slow' in globals(), 6 * 7]") == [False, 42]
    status = kernel.execute("%wfy_status").stdout
    assert "a run is going: 0/2 task(s) finished" in status
    msg = _usage_error(kernel.execute("%wfy_run", check=False))
    assert "still going" in msg
    kernel.execute("gate.set()")
    wait_until(lambda: kernel.value("'after_slow' in globals()"), "background results",
               CELL_TIMEOUT)
    assert kernel.value("[slow, after_slow]") == ["slow done", "SLOW DONE"]
    wait_until(lambda: kernel.value("session.last_run.done"), "the run to end", CELL_TIMEOUT)
    assert "a run is going" not in kernel.execute("%wfy_status").stdout


def test_cancel_a_background_run(kernel: Kernel) -> None:
    kernel.execute("""
        from pyworkflowy_nb import current_task
        stop_seen = threading.Event()
    """)
    kernel.execute("""
        %%task spin
        ctx = current_task()
        while not ctx.cancelled:
            ctx.cancel_event.wait(60)
        stop_seen.set()
    """)
    kernel.execute("%wfy_run --background --no-widget")
    wait_until(lambda: kernel.value("session.last_run.handles['spin'].status.value") == "running",
               "spin to start", CELL_TIMEOUT)
    assert "cancelling" in kernel.execute("%wfy_cancel").stdout
    wait_until(lambda: kernel.value("stop_seen.is_set() and session.last_run.done"),
               "the cancelled run to end", CELL_TIMEOUT)
    assert kernel.value("session.results['spin'].status.value") == "cancelled"


def test_interrupting_a_blocking_run_cancels_its_tasks(kernel: Kernel) -> None:
    kernel.execute("""
        import pathlib
        from pyworkflowy_nb import current_task
        STARTED = pathlib.Path("hang-started")
    """)
    # A process cell runs first: its worker shares the kernel's process group, so the
    # interrupt reaches it too, and it must survive it.
    kernel.execute("%%task remote_pid --backend process\nimport os\nos.getpid()")
    kernel.execute("""
        %%task hang --after remote_pid
        ctx = current_task()
        STARTED.touch()
        while not ctx.cancelled:
            ctx.cancel_event.wait(60)
        'stopped'
    """)
    kernel.execute("%%task never --after hang\n1")
    started = Path(kernel.cwd) / "hang-started"
    msg_id, code = kernel.submit("%wfy_run --no-widget")
    wait_until(started.exists, "the task to start", CELL_TIMEOUT)
    kernel.km.interrupt_kernel()
    res = kernel.collect(msg_id, code, check=False)
    assert res.error is not None and res.error["ename"] == "KeyboardInterrupt"
    statuses = kernel.value("{k: r.status.value for k, r in session.results.items()}")
    assert statuses["hang"] == statuses["never"] == "cancelled"
    assert statuses["remote_pid"] == "completed"
    assert kernel.value("session.last_run.done") is True
    # The worker that ran remote_pid is still alive: the interrupt did not kill it.
    assert kernel.value("os.kill(remote_pid, 0) is None") is True
    assert "1 completed" in kernel.execute("%wfy_run remote_pid --force --no-widget").stdout


def test_schedules_fire_and_stop(kernel: Kernel) -> None:
    kernel.execute("fired = []")
    kernel.execute("%%task stamp\nfired.append(len(fired))\nlen(fired)")
    res = kernel.execute("%wfy_schedule every 0.1 stamp")
    assert "scheduled stamp every 0.1s" in res.stdout
    wait_until(lambda: kernel.value("globals().get('stamp', 0)") >= 2, "two firings", CELL_TIMEOUT)
    kernel.execute('%wfy_schedule cron "0 3 * * *" stamp')
    listing = kernel.execute("%wfy_schedule list").stdout
    assert "every 0.1s" in listing and "cron '0 3 * * *'" in listing and "03:00:00" in listing
    assert "2 schedule(s) active" in kernel.execute("%wfy_status").stdout
    assert "stopped 2 schedule(s)" in kernel.execute("%wfy_schedule stop stamp").stdout
    assert kernel.value("[session.schedules.rows(), len(session.schedules._scheduler.jobs)]") == [
        [], 0]


# -- resume after a kernel restart (issue 5) ------------------------------------------------

HELPERS = """
%load_ext pyworkflowy_nb
import pathlib, time
LOG = pathlib.Path("executions.log")
RELEASE = pathlib.Path("release")

def note(what):
    with LOG.open("a") as f:
        f.write(what + "\\n")
"""

TASK_CELLS = {
    "a": "%%task a\nnote('a')\n3",
    "b": "%%task b --after a\nnote('b')\na + 4",
    "c": "%%task c --after a\nnote('c')\n[a] * 2",
    "slow": (
        "%%task slow --after b c\n"
        "note('slow-start')\n"
        "while not RELEASE.exists():\n"
        "    time.sleep(0.02)\n"
        "note('slow')\n"
        "{'total': b + sum(c)}"
    ),
    "final": "%%task final --after slow\nnote('final')\nslow['total'] * 2",
}
NAMES = list(TASK_CELLS)


def _notebook_kernel(folder: Path, key_file: Path) -> Kernel:
    folder.mkdir(parents=True, exist_ok=True)
    # What Jupyter Server tells a kernel about its notebook.
    env = {"JPY_SESSION_NAME": str(folder / "demo.ipynb"), "PYWORKFLOWY_NB_KEY_FILE": str(key_file)}
    return Kernel(cwd=folder, env=env)


def _log(folder: Path) -> list[str]:
    path = folder / "executions.log"
    return path.read_text().split() if path.exists() else []


def _stored_statuses(path: Path, key: bytes) -> dict[str, Any]:
    """What a fresh reader finds in the checkpoint now (its journal too); {} while absent."""
    try:
        records = CloudpickleCheckpointer(path, key=key).read_records() or {}
    except CheckpointError:  # a segment replaced between reading the manifest and it
        return {}
    return {k: r["status"] for k, r in records.items()}


def _values(k: Kernel) -> dict[str, Any]:
    result: dict[str, Any] = k.value("{n: globals()[n] for n in " + repr(NAMES) + "}")
    return result


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_runs_each_task_once(tmp_path: Path) -> None:
    key_file = tmp_path / "key" / "wfy.key"
    folder = tmp_path / "nb"
    ckpt = folder / ".wfy" / "demo.ckpt"

    # The reference: the same notebook, uninterrupted, in its own folder.
    ref_folder = tmp_path / "reference"
    with _notebook_kernel(ref_folder, key_file) as ref:
        ref.execute(HELPERS)
        (ref_folder / "release").touch()
        for name in NAMES:
            ref.execute(TASK_CELLS[name])
        ref.execute("%wfy_run --no-widget")
        expected = _values(ref)
    assert sorted(_log(ref_folder)) == sorted(["a", "b", "c", "slow-start", "slow", "final"])

    # First kernel: run in the background and kill it while `slow` is running.
    first = _notebook_kernel(folder, key_file)
    try:
        first.execute(HELPERS)
        for name in NAMES:
            first.execute(TASK_CELLS[name])
        first.execute("%wfy_run --background --no-widget")
        wait_until(lambda: "slow-start" in _log(folder), "the slow task to start", CELL_TIMEOUT)
        key = key_file.read_bytes()
        done_before = {"a", "b", "c"}
        # Give the checkpoint writer (off the loop thread, rate-limited) time to store them.
        wait_until(lambda: all(_stored_statuses(ckpt, key).get(n) == "completed"
                               for n in done_before),
                   "a, b and c in the checkpoint", CELL_TIMEOUT)
        first.sigkill()
    finally:
        first.close()
    stored = _stored_statuses(ckpt, key)
    assert "slow" not in stored or stored["slow"] != "completed"
    before_kill = _log(folder)
    assert sorted(before_kill) == ["a", "b", "c", "slow-start"]
    with (folder / "executions.log").open("a") as f:
        f.write("--restart--\n")

    # Second kernel: the cells again, in another order; restored values appear on definition.
    (folder / "release").touch()
    with _notebook_kernel(folder, key_file) as second:
        second.execute(HELPERS)
        restored_msgs = []
        for name in ["final", "c", "slow", "b", "a"]:
            restored_msgs.append(second.execute(TASK_CELLS[name]).stdout)
        # Nothing can be checked before a is defined (everything depends on it)...
        assert not any("restored" in msg for msg in restored_msgs[:4])
        # ...then a, and every task whose upstream a completes, come back at once.
        line = restored_msgs[4].strip()
        assert line.startswith("wfy: restored ") and line.endswith(
            "from the checkpoint (not run; the cell's code is unchanged)")
        assert sorted(line.split(" from ")[0].removeprefix("wfy: restored ").split(", ")) == [
            "a", "b", "c"]
        assert second.value("[n in globals() for n in ['a', 'b', 'c', 'slow', 'final']]") == [
            True, True, True, False, False]
        res = second.execute("%wfy_run --no-widget")
        assert "2 completed, 3 restored" in res.stdout
        after_restart = _log(folder)[len(before_kill) + 1:]
        # Every task ran exactly once in total, except slow, which the kill interrupted.
        assert sorted(after_restart) == ["final", "slow", "slow-start"]
        assert _values(second) == expected
        from_ckpt = "{n: r.restored for n, r in get_session().results.items()}"
        second.execute("from pyworkflowy_nb.notebook import get_session")
        assert second.value(from_ckpt) == {
            "a": True, "b": True, "c": True, "slow": False, "final": False}
        assert str(ckpt) in second.execute("%wfy_status").stdout

        # A changed cell re-runs itself and its downstream only.
        mark = len(_log(folder))
        second.execute(TASK_CELLS["c"].replace("[a] * 2", "[a] * 3"))
        second.execute("%wfy_run --no-widget")
        assert sorted(_log(folder)[mark:]) == ["c", "final", "slow", "slow-start"]
        assert second.value("final") == 2 * (7 + 9)
    assert oct(os.stat(ckpt).st_mode & 0o777) == "0o600"


def test_a_timed_out_process_cell_keeps_its_worker_slot(kernel: Kernel) -> None:
    # Issue 11's bug: with one worker, a process cell that timed out freed its slot while its
    # worker went on, so the next quick process cell timed out waiting in the pool's queue.
    # Its timeout must only count once it has a worker.
    kernel.execute("%%task stuck --backend process --timeout 0.5\nimport time\ntime.sleep(8)")
    kernel.execute("%%task quick --backend process --timeout 4\n6 * 7")
    kernel.execute("%wfy_config --max-workers 1")
    try:
        res = kernel.execute("%wfy_run --no-widget", check=False)
    finally:
        kernel.execute("session.max_workers = None")
    statuses = kernel.value("{k: r.status.value for k, r in session.results.items()}")
    assert statuses == {"stuck": "failed", "quick": "completed"}, res.stderr
    assert kernel.value("[type(session.results['stuck'].error).__name__, quick]") == [
        "TaskTimeoutError", 42]
