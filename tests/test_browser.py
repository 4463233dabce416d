"""The live widget in a real browser: JupyterLab 4 and Notebook 7 on localhost, headless Chromium.

A notebook runs a small DAG in which one task fails (so one is skipped), with the live view
displayed. The test reads the SVG JupyterLab rendered and checks each node's final fill, then
saves a screenshot under ``test-artifacts/``. In both front ends a ``%wfy_run`` shows live colours
while a task waits, then its static picture, which is still there after the notebook is saved,
its kernel shut down and the page reloaded. A 500-task layered DAG must fit the output's width.

One server (module scope) serves every test: starting JupyterLab is the slow part.

Isolation: the server gets a random token, a temporary root directory and temporary Jupyter
config/data/runtime directories; Chromium gets a fresh profile and flags that keep it off the
network. The browser is the system one (``/usr/bin/chromium``); Playwright never downloads one.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import HANG_GUARD

from pyworkflowy_nb._html import STATE_STYLES
from pyworkflowy_nb.notebook._dot import node_id

CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
# JupyterLab and Chromium start slowly on a busy 2-core machine: six times the usual guard.
LAB_GUARD = 6 * HANG_GUARD

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason=f"{CHROMIUM} is not installed (apt-get install chromium)"),
]

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

# State of each task in the notebook below, by task key: while "gate" waits for the test to
# release it (so the cell is still blocked in run()), and at the end.
MIDWAY = {
    "load": "completed",
    "clean": "completed",
    "explode": "failed",
    "report": "skipped",
    "gate": "running",
    "other": "pending",
}
FINAL = {**MIDWAY, "gate": "completed", "other": "completed"}
# The same DAG as %%task cells (a session's task fails when its dependency did).
SAVED_MIDWAY = {"load": "completed", "explode": "failed", "report": "failed",
                "gate": "running", "other": "pending"}
SAVED_FINAL = {**SAVED_MIDWAY, "gate": "completed", "other": "completed"}

CELLS = [
    """\
import pyworkflowy_nb.notebook
from pyworkflowy_nb import TaskRunner, task
from pyworkflowy_nb.notebook import watch

@task
def load():
    return [1, 2, 3]

@task
def clean():
    return [r * 2 for r in a.result()]

@task
def explode():
    raise ValueError("this task fails on purpose")

@task(on_dep_failure="skip")
def report():
    return "never runs"

@task(backend="thread")
def gate():
    # Waits until the browser test creates this file, so it can look at a run in progress.
    import os, time
    deadline = time.monotonic() + 600
    while not os.path.exists("release-gate"):
        if time.monotonic() > deadline:
            raise TimeoutError("the test never released the gate")
        time.sleep(0.05)
    return "released"

@task
def other():
    return "after the gate"
""",
    """\
runner = TaskRunner(on_task_error="continue")
a = runner.submit(load, task_key="load")
b = runner.submit(clean, depends_on=[a], task_key="clean")
c = runner.submit(explode, depends_on=[a], task_key="explode")
d = runner.submit(report, depends_on=[b, c], task_key="report")
g = runner.submit(gate, task_key="gate")
e = runner.submit(other, depends_on=[g], task_key="other")
view = watch(runner)
results = runner.run()
print("ran:", sorted((k, r.status.value) for k, r in results.by_key().items()))
""",
]


LARGE_CELLS = [
    """\
import pyworkflowy_nb.notebook
from pyworkflowy_nb import Task, TaskRunner
from pyworkflowy_nb.notebook import watch

def step(*parents):
    return len(parents)

# 10 layers of 50 tasks, each task after two of the layer before: 500 tasks, 10 task names.
runner = TaskRunner(max_workers=8)
layers = []
for layer in range(10):
    fn = Task(step, name=f"layer_{layer}")
    prev = layers[-1] if layers else []
    layers.append([
        runner.submit(fn, depends_on=[prev[i], prev[(i + 1) % 50]] if prev else [],
                      task_key=f"layer_{layer}-{i}")
        for i in range(50)
    ])
view = watch(runner)
results = runner.run()
view.flush(timeout=60)
print("large run ok:", results.ok, len(runner.handles))
""",
]

FRONT_ENDS = ("lab", "notebook7")


def _saved_cells(front: str) -> list[str]:
    """A %wfy_run whose 'gate' task waits for the file ``release-<front>``."""
    return [
        "%load_ext pyworkflowy_nb\n%wfy_config --no-checkpoint",
        "%%task load\n[1, 2, 3]",
        "%%task explode --after load\nraise ValueError('this task fails on purpose')",
        "%%task report --after explode\n'never runs'",
        "%%task gate\n"
        "import os, time\n"
        "deadline = time.monotonic() + 600\n"
        f"while not os.path.exists('release-{front}') and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        "'released'",
        "%%task other --after gate\n'after the gate'",
        "%wfy_run",
        "%%task later\n'in the background'",
        "%wfy_run later --background",
        "%wfy_wait",
    ]


def _notebook(cells: list[str] | None = None) -> dict[str, Any]:
    return {
        "cells": [
            {"cell_type": "code", "execution_count": None, "id": f"cell{i}", "metadata": {},
             "outputs": [], "source": src}
            for i, src in enumerate(CELLS if cells is None else cells)
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                           "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_server(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + LAB_GUARD
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"JupyterLab exited early:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"JupyterLab did not answer at {url}:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """A JupyterLab server (Notebook 7 too): yields (base url, token, root dir)."""
    tmp_path = tmp_path_factory.mktemp("lab")
    root = tmp_path / "root"
    root.mkdir()
    (root / "demo.ipynb").write_text(json.dumps(_notebook()), encoding="utf-8")
    (root / "large.ipynb").write_text(json.dumps(_notebook(LARGE_CELLS)), encoding="utf-8")
    for front in FRONT_ENDS:
        (root / f"saved-{front}.ipynb").write_text(
            json.dumps(_notebook(_saved_cells(front))), encoding="utf-8")
    token = secrets.token_hex(16)
    port = _free_port()
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""),
        "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp_path / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "PYWORKFLOWY_NB_KEY_FILE": str(tmp_path / "checkpoint.key"),
    }
    # No news fetching, no first-run notices, and every cell rendered (no virtual scrolling).
    settings = tmp_path / "settings"
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
     ).write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
     ).write_text(json.dumps({"windowingMode": "none"}))
    log = tmp_path / "lab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
             f"--port={port}", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0", "--allow-root",
             "--LabApp.expose_app_in_browser=True", "--LabApp.extension_manager=readonly",
             "--JupyterNotebookApp.expose_app_in_browser=True"],
            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(f"{base}/api/status?token={token}", proc, log)
        yield base, token, root
    finally:
        # Stop kernels through the API first so none is left behind, then the server itself.
        try:
            req = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
            urllib.request.urlopen(req, timeout=10).close()
            proc.wait(timeout=30)
        except Exception:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


_KERNEL_READY = """
() => {
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  const kernel = panel && panel.sessionContext && panel.sessionContext.session
    && panel.sessionContext.session.kernel;
  return !!kernel && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}
"""

_READ_FILLS = """
(ids) => {
  const out = {};
  for (const id of ids) {
    const g = document.querySelector(`.jp-OutputArea g.node[id="${id}"]`);
    const shape = g && g.querySelector('path, polygon');
    out[id] = shape ? shape.getAttribute('fill') : null;
  }
  return out;
}
"""

_FILLS_MATCH = """
([ids, want, scope]) => {
  for (let i = 0; i < ids.length; i++) {
    const g = document.querySelector(`${scope || '.jp-OutputArea'} g.node[id="${ids[i]}"]`);
    const shape = g && g.querySelector('path, polygon');
    if (!shape || shape.getAttribute('fill') !== want[i]) return false;
  }
  return true;
}
"""


def _fills(states: dict[str, str]) -> dict[str, str]:
    return {node_id(key): STATE_STYLES[state].fill for key, state in states.items()}


def test_widget_shows_live_and_final_colours_in_jupyterlab(lab: tuple[str, str, Path]) -> None:
    from playwright import sync_api
    base, token, root = lab
    midway, final = _fills(MIDWAY), _fills(FINAL)
    ARTIFACTS.mkdir(exist_ok=True)
    profile = root.parent / "chromium-profile"
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        page = context.new_page()
        page.set_default_timeout(LAB_GUARD * 1000)
        want = midway
        try:
            page.goto(f"{base}/lab/tree/demo.ipynb?token={token}")
            page.wait_for_function(_KERNEL_READY)
            # Not awaited: the command's promise settles only when every cell has finished.
            page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
            # Live: the cell is blocked in run() while "gate" waits, yet the view has moved on.
            page.wait_for_function(_FILLS_MATCH, arg=[list(want), list(want.values())])
            live_header = page.inner_text(".jp-OutputArea .wfy-header")
            prompts = page.evaluate(
                "() => Array.from(document.querySelectorAll('.jp-InputPrompt'))"
                ".map(e => e.innerText.trim())"
            )
            page.locator(".jp-OutputArea .wfy-runner-widget").last.screenshot(
                path=str(ARTIFACTS / "browser-widget-live.png"))
            (root / "release-gate").touch()
            want = final
            page.wait_for_function(_FILLS_MATCH, arg=[list(want), list(want.values())])
            fills = page.evaluate(_READ_FILLS, list(want))
            header = page.inner_text(".jp-OutputArea .wfy-header")
            table = page.inner_text(".jp-OutputArea .wfy-table")
            page.wait_for_selector(
                ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stdout']")
            stdout = page.inner_text(
                ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stdout']"
            )
            page.locator(".jp-OutputArea .wfy-runner-widget").last.screenshot(
                path=str(ARTIFACTS / "browser-widget.png"))
            page.screenshot(path=str(ARTIFACTS / "browser-page.png"))
        except Exception as exc:
            page.screenshot(path=str(ARTIFACTS / "browser-widget-failure.png"))
            try:
                seen = page.evaluate(_READ_FILLS, list(want))
                outputs = page.inner_text(".jp-NotebookPanel")
            except Exception as inner:
                seen, outputs = {}, f"(page unreadable: {inner!r})"
            raise AssertionError(
                f"{exc}\nfills seen: {seen}\nwanted: {want}\nnotebook text:\n{outputs[-4000:]}"
                "\nscreenshot: test-artifacts/browser-widget-failure.png"
            ) from exc
        finally:
            context.close()
    assert prompts[-1] == "[*]:", prompts  # the run's cell was still executing (blocked)
    assert "running" in live_header and "1 running" in live_header
    assert fills == final
    assert "finished" in header and "6 tasks" in header
    assert "4 completed" in header and "1 failed" in header and "1 skipped" in header
    assert "this task fails on purpose" in table
    assert "('explode', 'failed')" in stdout and "('gate', 'completed')" in stdout


@contextlib.contextmanager
def _browser(root: Path, name: str) -> Iterator[Any]:
    """A fresh headless Chromium page; a failure screenshot lands in test-artifacts/."""
    from playwright import sync_api
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(root.parent / f"chromium-{name}"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000},
        )
        page = context.new_page()
        page.set_default_timeout(HANG_GUARD * 1000)
        try:
            yield page
        except Exception:
            page.screenshot(path=str(ARTIFACTS / f"browser-{name}-failure.png"))
            raise
        finally:
            context.close()


_NOTEBOOK_READY = """
(name) => {
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  const kernel = panel && panel.sessionContext && panel.sessionContext.session
    && panel.sessionContext.session.kernel;
  return !!kernel && panel.context.path.endsWith(name)
    && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
}
"""


def _open(page: Any, base: str, token: str, front: str, notebook: str) -> None:
    # ``reset``: JupyterLab must not reopen the other tests' notebooks from its workspace.
    path = f"lab/tree/{notebook}?reset&" if front == "lab" else f"notebooks/{notebook}?"
    page.goto(f"{base}/{path}token={token}")
    page.wait_for_function(_NOTEBOOK_READY, arg=notebook)


def _run_all(page: Any) -> None:
    # Not awaited: the command's promise settles only when every cell has finished.
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


def _api(base: str, token: str, path: str, method: str = "GET") -> Any:
    req = urllib.request.Request(f"{base}/api/{path}?token={token}", method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = resp.read()
    return json.loads(body) if body else None


_STATIC = ".jp-OutputArea .wfy-run-static"


@pytest.mark.parametrize("front", FRONT_ENDS)
def test_live_colours_then_a_static_picture_that_survives_a_reload(
    lab: tuple[str, str, Path], front: str
) -> None:
    base, token, root = lab
    notebook = f"saved-{front}.ipynb"
    midway, final = _fills(SAVED_MIDWAY), _fills(SAVED_FINAL)
    with _browser(root, front) as page:
        _open(page, base, token, front, notebook)
        _run_all(page)
        page.wait_for_function(_FILLS_MATCH, arg=[list(midway), list(midway.values()),
                                                  ".jp-OutputArea .wfy-runner-widget"])
        (root / f"release-{front}").touch()
        page.wait_for_function(_FILLS_MATCH, arg=[list(final), list(final.values()), _STATIC])
        # The background run's widget gives way to its picture too, once %wfy_wait has run.
        page.wait_for_function(
            f"() => document.querySelectorAll('{_STATIC}').length === 2")
        assert page.locator(".jp-OutputArea .wfy-runner-widget").count() == 0  # replaced
        page.locator(_STATIC).first.screenshot(
            path=str(ARTIFACTS / f"browser-static-{front}.png"))
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        page.wait_for_function(
            "() => !window.jupyterapp.shell.currentWidget.context.model.dirty")
        # No kernel behind the reloaded page: the picture comes from the saved file alone.
        for session in _api(base, token, "sessions"):
            if session["path"].endswith(notebook):
                _api(base, token, f"sessions/{session['id']}", method="DELETE")
        page.reload()
        page.wait_for_function(
            f"() => document.querySelectorAll('{_STATIC}').length === 2")
        page.wait_for_function(_FILLS_MATCH, arg=[list(final), list(final.values()), _STATIC])
        text = page.inner_text(".jp-NotebookPanel")
        header = page.locator(f"{_STATIC} .wfy-header").first.inner_text()
    saved = json.loads((root / notebook).read_text())
    later = "".join(next(o for o in saved["cells"][-2]["outputs"] if "data" in o)["data"]
                    ["text/plain"])
    assert later.startswith("wfy run completed: 1 tasks")
    outputs = saved["cells"][-4]["outputs"]
    assert [o["output_type"] for o in outputs if "data" in o] == ["display_data"]
    assert "application/vnd.jupyter.widget-view+json" not in outputs[0]["data"]
    assert "".join(outputs[0]["data"]["text/plain"]).startswith("wfy run failed: 5 tasks")
    assert "Error displaying widget" not in text
    assert "run failed" in header and "5 tasks" in header


_FIT = """
() => {
  const widget = document.querySelector('.jp-OutputArea .wfy-runner-widget');
  const output = widget.closest('.jp-OutputArea-output');
  const svg = widget.querySelector('.wfy-graph svg');
  const table = widget.querySelector('.wfy-table');
  return {
    outputWidth: output.clientWidth, outputScroll: output.scrollWidth,
    svgWidth: svg.getBoundingClientRect().width,
    widgetHeight: widget.getBoundingClientRect().height,
    tableShown: !!(table && table.offsetParent !== null && table.offsetHeight > 0),
    header: widget.querySelector('.wfy-header').innerText,
  };
}
"""


def test_a_500_task_dag_fits_the_output_width(lab: tuple[str, str, Path]) -> None:
    base, token, root = lab
    with _browser(root, "large") as page:
        _open(page, base, token, "lab", "large.ipynb")
        _run_all(page)
        page.wait_for_selector(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stdout']")
        page.wait_for_function(
            "() => (document.querySelector('.jp-OutputArea .wfy-header') || {}).innerText"
            "?.includes('finished')")
        fit = page.evaluate(_FIT)
        page.locator(".jp-OutputArea .wfy-runner-widget").screenshot(
            path=str(ARTIFACTS / "browser-large-dag.png"))
        stdout = page.inner_text(
            ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stdout']")
    assert "large run ok: True 500" in stdout
    assert "500 tasks" in fit["header"]
    assert fit["outputScroll"] <= fit["outputWidth"] + 1, fit  # no horizontal overflow
    assert fit["svgWidth"] <= fit["outputWidth"] + 1, fit
    assert not fit["tableShown"], fit  # 500 rows start folded
