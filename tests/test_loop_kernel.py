"""Runs inside a real Jupyter kernel: the running loop, top-level await, background runs,
nest_asyncio, and the parent header of messages sent from the run's threads (ipykernel 7).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from engine_helpers import wait_until
from kernel_utils import CELL_TIMEOUT, Kernel, Message

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(600)]

SETUP = """
import asyncio, contextvars, threading
from pyworkflowy_nb import TaskRunner, task

@task
async def where_async():
    await asyncio.sleep(0)
    return threading.current_thread().name

@task(backend="thread")
def where_thread():
    return threading.current_thread().name
"""


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    with Kernel() as k:
        k.execute(SETUP)
        yield k


def test_the_kernel_cell_has_a_running_loop(kernel: Kernel) -> None:
    # The premise of everything below: a plain asyncio.run() would fail in a cell.
    res = kernel.execute("asyncio.run(asyncio.sleep(0))", check=False)
    assert not res.ok
    assert "cannot be called from a running event loop" in str(res.error)


def test_run_in_a_cell_drives_a_loop_thread_and_blocks(kernel: Kernel) -> None:
    kernel.execute("""
        r = TaskRunner()
        ha, ht = r.submit(where_async), r.submit(where_thread)
        out = r.run()
        print(out.ok, ha.result(), ht.result() != "MainThread")
    """)
    assert kernel.value("[out.ok, ha.result(), ht.result() != 'MainThread']") == [
        True, "wfy-run", True]


def test_top_level_await_runs_on_the_kernel_loop(kernel: Kernel) -> None:
    kernel.execute("""
        r = TaskRunner()
        h = r.submit(where_async)
        out = await r.arun()
        assert out.ok
    """)
    assert kernel.value("h.result()") == "MainThread"


def test_background_run_while_the_user_keeps_working(kernel: Kernel) -> None:
    kernel.execute("""
        gate, started = threading.Event(), threading.Event()

        @task(backend="thread")
        def gated():
            started.set()
            gate.wait(120)
            return "opened"

        rb = TaskRunner()
        hb = rb.submit(gated)
        fut = rb.run_in_background()
    """)
    wait_until(lambda: kernel.value("started.is_set()"), "the task to start", CELL_TIMEOUT)
    # Other cells run while the task is blocked in the background.
    assert kernel.value("[fut.done(), hb.status.value, 6 * 7]") == [False, "running", 42]
    kernel.execute("gate.set()")
    wait_until(lambda: kernel.value("fut.done()"), "the background run to finish", CELL_TIMEOUT)
    assert kernel.value("[fut.result().ok, hb.result()]") == [True, "opened"]


# -- parent headers --------------------------------------------------------------------------


def _comm_updates(messages: list[Message], comm_id: str) -> list[Message]:
    return [m for m in messages if m["msg_type"] == "comm_msg"
            and m["content"]["comm_id"] == comm_id
            and m["content"]["data"].get("method") == "update"]


WIDGET_SETUP = """
import ipywidgets
from IPython.display import display
bar = ipywidgets.IntProgress(min=0, max=10_000)
display(bar)
bar_id = bar.comm.comm_id
stale = contextvars.copy_context()   # a context captured while *this* cell ran

def bump(event):
    if event.kind == "completed":
        bar.value += 1

@task
def inline(i):
    return i

@task(backend="thread")
def threaded(i):
    return i
"""


def test_updates_from_a_blocking_run_carry_the_cells_header(kernel: Kernel) -> None:
    kernel.execute(WIDGET_SETUP)
    comm_id = kernel.value("bar_id")
    start = len(kernel.iopub)
    res = kernel.execute("""
        r = TaskRunner()
        handle = display("waiting", display_id=True)
        def report(event):
            if event.kind == "completed":
                handle.update(f"{event.key} done")
                print("from", threading.current_thread().name, event.key)
        r.subscribe(bump)
        r.subscribe(report)
        for i in range(3):
            r.submit(inline, i)
            r.submit(threaded, i)
        assert r.run().ok
    """)
    during = kernel.messages_since(start)
    updates = _comm_updates(during, comm_id)
    assert len(updates) == 6
    assert {m["parent_header"]["msg_id"] for m in updates} == {res.msg_id}
    display_updates = [m for m in during if m["msg_type"] == "update_display_data"]
    assert len(display_updates) == 6
    assert {m["parent_header"]["msg_id"] for m in display_updates} == {res.msg_id}
    # The prints came from the run's threads, not the cell's, and still landed in the cell.
    printed = [line for line in res.stdout.splitlines() if line.startswith("from ")]
    assert len(printed) == 6 and not any("MainThread" in line for line in printed)


def test_parent_pin_fixes_a_run_started_from_a_stale_context(kernel: Kernel) -> None:
    """The ipykernel 7 trap: a loop thread whose context came from an earlier cell sends its
    messages under that cell's header (the frontend files them there, or drops them).
    The engine hands the caller's context to its loop thread, so running from a stale context
    reproduces it; ParentPin's listener re-pins the executing cell."""
    kernel.execute("bar.value = 0")
    comm_id = kernel.value("bar_id")
    stale_id = kernel.value("stale.run(lambda: get_ipython().kernel.get_parent()['header']"
                            "['msg_id'])")

    # Control: without the pin, updates from the loop thread go to the stale cell.
    start = len(kernel.iopub)
    res = kernel.execute("""
        r = TaskRunner()
        r.subscribe(bump)
        for i in range(3):
            r.submit(inline, i)
        assert stale.run(r.run).ok
    """)
    updates = _comm_updates(kernel.messages_since(start), comm_id)
    assert len(updates) == 3
    assert {m["parent_header"]["msg_id"] for m in updates} == {stale_id} != {res.msg_id}

    # With the pin subscribed first, the same run sends under the executing cell.
    start = len(kernel.iopub)
    res = kernel.execute("""
        from pyworkflowy_nb.notebook._loop import ParentPin
        pin = ParentPin.capture()
        r = TaskRunner()
        r.subscribe(pin.listener)
        r.subscribe(bump)
        for i in range(3):
            r.submit(inline, i)
            r.submit(threaded, i)
        assert stale.run(r.run).ok
    """)
    updates = _comm_updates(kernel.messages_since(start), comm_id)
    assert len(updates) == 6
    assert {m["parent_header"]["msg_id"] for m in updates} == {res.msg_id}


def test_parent_pin_wrap_on_a_foreign_thread(kernel: Kernel) -> None:
    comm_id = kernel.value("bar_id")
    stale_id = kernel.value("stale.run(lambda: get_ipython().kernel.get_parent()['header']"
                            "['msg_id'])")
    start = len(kernel.iopub)
    res = kernel.execute("""
        from pyworkflowy_nb.notebook._loop import ParentPin
        pin = ParentPin.capture()
        def set_bar(v):
            bar.value = v
            print("pinned print", v)
        # A thread running in the stale context: one plain call, one through the pin.
        t = threading.Thread(target=stale.run, args=(set_bar, 1)); t.start(); t.join()
        t = threading.Thread(target=stale.run, args=(pin.wrap(set_bar), 2)); t.start(); t.join()
    """)
    updates = _comm_updates(kernel.messages_since(start), comm_id)
    by_value = {m["content"]["data"]["state"]["value"]: m["parent_header"]["msg_id"]
                for m in updates}
    assert by_value == {1: stale_id, 2: res.msg_id}
    assert "pinned print 2" in res.stdout


# -- nest_asyncio: its own kernel, since the patch cannot be undone ------------------------


def test_nest_asyncio_mode_runs_on_the_kernel_loop() -> None:
    with Kernel() as k:
        k.execute(SETUP)
        k.execute("""
            from pyworkflowy_nb.notebook import enable_nest_asyncio
            from pyworkflowy_nb.notebook._loop import nest_asyncio_enabled
            before = nest_asyncio_enabled()
            loop = enable_nest_asyncio()
            r = TaskRunner()
            h = r.submit(where_async)
            ok = r.run().ok
        """)
        assert k.value("[before, nest_asyncio_enabled(), ok, h.result()]") == [
            False, True, True, "MainThread"]
        # The magics work in this mode too.
        k.execute("""
            %load_ext pyworkflowy_nb
        """)
        k.execute("""
            %%task answer
            import threading
            (threading.current_thread().name, 42)
        """)
        res = k.execute("%wfy_run --no-widget")
        assert "1 completed" in res.stdout
        assert k.value("answer[1]") == 42
        assert "nest_asyncio" in k.execute("%wfy_status").stdout
