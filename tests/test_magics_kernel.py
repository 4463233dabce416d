"""The magics through a real Jupyter kernel: ``%load_ext pyworkflowy_nb`` and what follows."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from kernel_utils import CellResult, Kernel, poll

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(600)]

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    with Kernel() as k:
        k.execute("""
            %load_ext pyworkflowy_nb
            import threading, os
            from pyworkflowy_nb.notebook import get_session
            session = get_session()
        """)
        yield k


@pytest.fixture(autouse=True)
def fresh_session(kernel: Kernel) -> Iterator[None]:
    yield
    kernel.execute("%wfy_reset")


def _usage_error(res: CellResult) -> str:
    assert res.status == "error"
    err = res.error
    assert err is not None and err["ename"] == "UsageError", err
    return str(err["evalue"])


def test_define_run_and_results_in_the_namespace_with_the_live_widget(kernel: Kernel) -> None:
    kernel.execute("""
        %%task load
        rows = [3, 1, 2]
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
    assert "downstream did not run" in res.stderr
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
    poll(lambda: kernel.value("'after_slow' in globals()"), what="background results")
    assert kernel.value("[slow, after_slow]") == ["slow done", "SLOW DONE"]


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
    poll(lambda: kernel.value("session.last_run.handles['spin'].status.value") == "running",
         what="spin to start")
    assert "cancelling" in kernel.execute("%wfy_cancel").stdout
    poll(lambda: kernel.value("stop_seen.is_set() and session.last_run.done"),
         what="the cancelled run to end")
    assert kernel.value("session.results['spin'].status.value") == "cancelled"


def test_schedules_fire_and_stop(kernel: Kernel) -> None:
    kernel.execute("fired = []")
    kernel.execute("%%task stamp\nfired.append(len(fired))\nlen(fired)")
    res = kernel.execute("%wfy_schedule every 0.1 stamp")
    assert "scheduled stamp every 0.1s" in res.stdout
    poll(lambda: kernel.value("globals().get('stamp', 0)") >= 2, what="two firings")
    kernel.execute('%wfy_schedule cron "0 3 * * *" stamp')
    listing = kernel.execute("%wfy_schedule list").stdout
    assert "every 0.1s" in listing and "cron '0 3 * * *'" in listing and "03:00:00" in listing
    assert "2 schedule(s) active" in kernel.execute("%wfy_status").stdout
    assert "stopped 2 schedule(s)" in kernel.execute("%wfy_schedule stop stamp").stdout
    assert kernel.value("[session.schedules.rows(), len(session.schedules._scheduler.jobs)]") == [
        [], 0]
