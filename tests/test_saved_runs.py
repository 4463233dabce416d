"""Runs that stay visible: a finished ``%wfy_run`` leaves a static picture in its output.

Through a real kernel (the messages a frontend receives) and through nbclient (what a saved
notebook holds, and what nbconvert makes of it without a kernel).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import wait_until
from kernel_utils import CELL_TIMEOUT, REPO, WIDGET_MIME, Kernel, Message

from pyworkflowy_nb._html import STATE_STYLES
from pyworkflowy_nb.notebook._dot import find_dot, node_id

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.timeout(600),
    pytest.mark.skipif(find_dot() is None, reason="Graphviz 'dot' is not installed"),
]


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    with Kernel() as k:
        k.execute("""
            %load_ext pyworkflowy_nb
            %wfy_config --no-checkpoint
            import threading
            from pyworkflowy_nb.notebook import get_session
            release = threading.Event()
        """)
        yield k


def _display_id(msg: Message) -> str:
    return str(msg["content"].get("transient", {}).get("display_id", ""))


def _fill(svg: str, key: str) -> str | None:
    # Graphviz escapes '-' in ids as &#45;.
    nid = node_id(key).replace("-", "&#45;")
    m = re.search(rf'<g id="{nid}" class="node[^"]*">.*?<path fill="([^"]+)"', svg, re.S)
    return m.group(1) if m else None


def _final_update(kernel: Kernel, shown: Message) -> Message:
    display_id = _display_id(shown)
    assert display_id, shown
    return kernel.wait_for(
        lambda m: m["msg_type"] == "update_display_data" and _display_id(m) == display_id,
        what="the static picture of the run",
    )


def test_a_failed_blocking_run_ends_as_a_static_picture(kernel: Kernel) -> None:
    kernel.execute("""
        %%task load
        [1, 2, 3]
    """)
    kernel.execute("""
        %%task explode --after load
        raise ValueError("on purpose")
    """)
    kernel.execute("""
        %%task report --after explode
        "never"
    """)
    res = kernel.execute("%wfy_run")
    (shown,) = [m for m in res.of_type("display_data") if WIDGET_MIME in m["content"]["data"]]
    assert "RunnerWidget(" not in shown["content"]["data"]["text/plain"]
    update = _final_update(kernel, shown)
    # Sent by the cell itself, before it ended: the saved output is the static one.
    assert update in res.messages
    data = update["content"]["data"]
    assert WIDGET_MIME not in data
    page = data["text/html"]
    assert 'class="wfy-run-static" data-status="failed"' in page
    assert "<svg" in page and data["image/svg+xml"].startswith("<svg")
    assert _fill(page, "load") == STATE_STYLES["completed"].fill
    assert _fill(page, "explode") == STATE_STYLES["failed"].fill
    assert _fill(page, "report") == STATE_STYLES["failed"].fill  # its dependency failed
    assert "on purpose" in page  # the details table names the error
    assert 'class="wfy-timeline-row" data-key="explode" data-state="failed"' in page
    plain = data["text/plain"]
    assert plain.startswith("wfy run failed: 3 tasks") and "1 completed" in plain
    assert "2 failed" in plain


def _start_blocked(kernel: Kernel, name: str) -> Message:
    """Define ``name`` (it waits for ``release``), start it in the background; its display."""
    kernel.execute(f"""
        %%task {name}
        release.wait(120)
        "done"
    """)
    start = kernel.execute(f"%wfy_run {name} --background")
    assert "in the background" in start.stdout
    (shown,) = [m for m in start.of_type("display_data") if WIDGET_MIME in m["content"]["data"]]
    return shown


def test_a_background_run_is_finished_by_wfy_wait(kernel: Kernel) -> None:
    shown = _start_blocked(kernel, "slow")
    kernel.execute("release.set()")
    wait = kernel.execute("%wfy_wait --timeout 120")
    update = _final_update(kernel, shown)
    data = update["content"]["data"]
    assert 'data-status="completed"' in data["text/html"]
    assert data["text/plain"].startswith("wfy run completed: 1 tasks (1 completed)")
    assert _fill(data["image/svg+xml"], "slow") == STATE_STYLES["completed"].fill
    # %wfy_wait sends the picture from its own cell, whether or not the run's thread did.
    updates = [m for m in wait.messages if m["msg_type"] == "update_display_data"
               and _display_id(m) == _display_id(shown)]
    assert len(updates) == 1 and updates[0]["content"]["data"] == data
    assert kernel.value("slow") == "done"
    assert wait.ok
    kernel.execute("release.clear()")


def test_a_cancelled_run_says_so(kernel: Kernel) -> None:
    shown = _start_blocked(kernel, "stuck")
    wait_until(lambda: kernel.value("get_session().last_run.handles['stuck'].status.value")
               == "running", "the task to start", CELL_TIMEOUT)
    kernel.execute("%wfy_cancel")
    kernel.execute("release.set()")
    wait = kernel.execute("%wfy_wait --timeout 120")
    data = _final_update(kernel, shown)["content"]["data"]
    assert 'data-status="cancelled"' in data["text/html"]
    assert "1 cancelled" in data["text/plain"]
    assert "cancelled" in wait.stderr or "cancelled" in wait.stdout
    kernel.execute("release.clear()")


def test_wfy_wait_without_a_run_is_a_usage_error() -> None:
    with Kernel() as k:
        k.execute("%load_ext pyworkflowy_nb")
        res = k.execute("%wfy_wait", check=False)
        assert res.error is not None and res.error["ename"] == "UsageError"
        assert "no run was started" in res.error["evalue"]


NOTEBOOK_CELLS = [
    "%load_ext pyworkflowy_nb\n%wfy_config --no-checkpoint",
    "%%task sales\n[3, 1, 2]",
    "%%task clean --after sales\nsorted(sales)",
    "%%task broken --after clean\n1 / 0",
    "%wfy_run",
    "%%task total --after clean\nsum(clean)",
    "%wfy_run total --background",
    "%wfy_wait",
    "print(total)",
]


def _outputs(nb: Any, index: int) -> list[Any]:
    return list(nb.cells[index].get("outputs", []))


def test_an_executed_notebook_keeps_the_pictures_and_nbconvert_shows_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nbconvert = pytest.importorskip("nbconvert")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in NOTEBOOK_CELLS]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    client = nbclient.NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    path = tmp_path / "saved.ipynb"
    nbformat.write(nb, path)
    saved = nbformat.read(path, as_version=4)

    for index, status in ((4, "failed"), (6, "completed")):
        shown = [o for o in _outputs(saved, index) if o.get("output_type") == "display_data"]
        assert len(shown) == 1, _outputs(saved, index)
        data = shown[0]["data"]
        assert WIDGET_MIME not in data, "the saved output still needs the kernel's widget"
        assert f'data-status="{status}"' in data["text/html"]
        assert data["image/svg+xml"].startswith("<svg")
        assert not data["text/plain"].startswith("RunnerWidget(")
        assert data["text/plain"].startswith(f"wfy run {status}")
    failed = _outputs(saved, 4)[0]["data"]["text/html"]
    assert _fill(failed, "broken") == STATE_STYLES["failed"].fill
    assert _fill(failed, "clean") == STATE_STYLES["completed"].fill
    assert "ZeroDivisionError" in failed
    assert "6" in "".join(o.get("text", "") for o in _outputs(saved, 8))

    body, _ = nbconvert.HTMLExporter().from_notebook_node(saved)
    assert body.count('class="wfy-run-static"') == 2
    assert "Error displaying widget" not in body
