"""The engine's layers point one way: checked on the source, and through a fresh process.

The import graph is read with ``ast`` (every import, also those under ``TYPE_CHECKING`` and
inside functions), so a seam that runs backwards fails here before anyone has to notice it in
review. The codec test resumes a cloudpickle checkpoint in an interpreter that never imported
the notebook layer: the codec is found through its ``pyworkflowy_nb.codecs`` entry point.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

import pyworkflowy_nb
from pyworkflowy_nb import TaskRunner
from pyworkflowy_nb._checkpoint import CODEC_ENTRY_POINTS, checkpointer_for_path
from pyworkflowy_nb._dispatch import ActiveRun, Dispatcher
from pyworkflowy_nb._events import EventBus
from pyworkflowy_nb._handle import TaskHandle
from pyworkflowy_nb._pools import Pools
from pyworkflowy_nb._task import Task
from pyworkflowy_nb.exceptions import CheckpointError

PACKAGE = Path(pyworkflowy_nb.__file__).resolve().parent
ROOT = PACKAGE.parent
ENGINE = sorted(p for p in PACKAGE.glob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, as absolute dotted names."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the package these modules sit in
                base = "pyworkflowy_nb" + (f".{node.module}" if node.module else "")
            else:
                base = node.module or ""
            found.add(base)
            # `from . import _graph` imports the module _graph itself
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_the_engine_modules_are_all_read() -> None:
    names = {p.stem for p in ENGINE}
    assert {"_dispatch", "_run", "_persist", "_handle", "_checkpoint"} <= names


def test_the_dispatcher_never_imports_the_runner() -> None:
    imports = imported_modules(PACKAGE / "_dispatch.py")
    assert "pyworkflowy_nb._run" not in imports
    source = (PACKAGE / "_dispatch.py").read_text(encoding="utf-8")
    assert "TaskRunner" not in source and "self.runner" not in source


@pytest.mark.parametrize("module", ["_persist.py", "_graph.py", "_pools.py", "_events.py",
                                    "_writer.py", "_records.py", "_policy.py"])
def test_pieces_below_the_runner_never_import_it(module: str) -> None:
    assert "pyworkflowy_nb._run" not in imported_modules(PACKAGE / module)


@pytest.mark.parametrize("module", ["_handle.py", "_context.py"])
def test_handles_and_contexts_name_the_runner_for_annotations_only(module: str) -> None:
    """``handle.runner`` and ``current_task().runner`` are typed TaskRunner; the import that
    types them sits under ``if TYPE_CHECKING:`` and never runs."""
    tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
    guarded = [n for n in ast.walk(tree) if isinstance(n, ast.If)
               and isinstance(n.test, ast.Name) and n.test.id == "TYPE_CHECKING"]
    inside = {id(x) for g in guarded for x in ast.walk(g)}
    runtime = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
               and n.module == "_run" and id(n) not in inside]
    assert runtime == []


@pytest.mark.parametrize("path", [p for p in ENGINE if p.name != "__init__.py"],
                         ids=lambda p: p.name)
def test_no_engine_module_imports_the_notebook_layer(path: Path) -> None:
    imports = imported_modules(path)
    assert not {m for m in imports if m.startswith("pyworkflowy_nb.notebook")}
    assert "notebook" not in {m.rsplit(".", 1)[-1] for m in imports if m.startswith(
        "pyworkflowy_nb")}


def test_the_package_imports_the_notebook_only_for_ipython_s_extension_hooks() -> None:
    """``%load_ext pyworkflowy_nb`` calls these two functions, which import the layer then."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    top_level = {m for n in tree.body if isinstance(n, ast.ImportFrom)
                 for m in [n.module or ""]}
    assert not {m for m in top_level if "notebook" in m}
    hooks = {f.name for f in tree.body if isinstance(f, ast.FunctionDef)
             and any(isinstance(n, ast.ImportFrom) and n.module == "notebook"
                     for n in ast.walk(f))}
    assert hooks == {"load_ipython_extension", "unload_ipython_extension"}


def test_handles_do_not_reach_into_the_runner() -> None:
    source = (PACKAGE / "_handle.py").read_text(encoding="utf-8")
    assert "runner._" not in source


def test_only_the_dispatcher_changes_unfinished() -> None:
    writers = [p.name for p in ENGINE
               if "unfinished +=" in p.read_text(encoding="utf-8")
               or "unfinished -=" in p.read_text(encoding="utf-8")]
    assert writers == ["_dispatch.py"]


# -- codecs ----------------------------------------------------------------------------------


def test_the_cloudpickle_codec_is_declared_as_an_entry_point() -> None:
    points = {p.name: p.value for p in entry_points(group=CODEC_ENTRY_POINTS)}
    assert points.get("cloudpickle") == \
        "pyworkflowy_nb.notebook._checkpoint:CloudpickleCheckpointer", (
            "reinstall the package (pip install --no-deps -e .) so its entry points exist")


@pytest.mark.usefixtures("key_file")  # a key of this test's own, through the environment
def test_resume_of_a_cloudpickle_checkpoint_in_a_fresh_process(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    path = tmp_path / "state.wfy"
    write = textwrap.dedent(f"""
        from pyworkflowy_nb import TaskRunner
        from pyworkflowy_nb.notebook._checkpoint import CloudpickleCheckpointer
        def work():
            return {{"n": 41}}
        with TaskRunner(checkpointer=CloudpickleCheckpointer({str(path)!r})) as runner:
            runner.submit(work, task_key="a")
            runner.run()
    """)
    subprocess.run([sys.executable, "-c", write], env=env, timeout=120, check=True,
                   capture_output=True, text=True)
    read = textwrap.dedent(f"""
        import json, sys
        from pyworkflowy_nb import TaskRunner
        assert "pyworkflowy_nb.notebook" not in sys.modules
        runner = TaskRunner.resume({str(path)!r})
        calls = []
        def work():  # the same task (name and version): its stored result is reused
            calls.append(1)
            return {{"n": 0}}
        with runner:
            h = runner.submit(work, task_key="a")
            runner.run()
        print(json.dumps([type(runner.checkpointer).__name__, h.restored, h.result(), calls]))
    """)
    out = subprocess.run([sys.executable, "-c", read], env=env, timeout=120, check=True,
                         capture_output=True, text=True)
    name, restored, value, calls = json.loads(out.stdout.strip().splitlines()[-1])
    assert name == "CloudpickleCheckpointer"
    assert value == {"n": 41} and calls == []
    assert restored is True


def test_an_unprovided_codec_names_the_entry_point_group_and_the_fix(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch
                                                                     ) -> None:
    from pyworkflowy_nb import _checkpoint

    path = tmp_path / "state.wfy"
    with TaskRunner(checkpoint_path=path) as runner:
        runner.submit(lambda: 1, task_key="a")
        runner.run()
    monkeypatch.setattr(_checkpoint, "_recorded_codec", lambda files: "nosuchcodec")
    with pytest.raises(CheckpointError) as caught:
        checkpointer_for_path(path)
    message = str(caught.value)
    assert "'nosuchcodec'" in message and CODEC_ENTRY_POINTS in message
    assert "checkpointer=" in message and "import the package" in message


# -- the dispatcher on its own ----------------------------------------------------------------


class RecordingPersistence:
    """A Persistence that notes what the dispatcher asks, and what was visible at the time."""

    def __init__(self, durable: bool) -> None:
        self.durable = durable
        self.calls: list[tuple[str, str, str]] = []

    def prime(self, h: Any) -> bool:
        self.calls.append(("prime", h.key, h.status.value))
        return h.key == "restored"

    def commit(self, completed: list[Any]) -> None:
        self.calls.extend(("commit", h.key, h.status.value) for h in completed)

    def ended(self, h: Any) -> None:
        self.calls.append(("ended", h.key, h.status.value))


def build(persistence: RecordingPersistence, on_task_error: str = "continue"
          ) -> tuple[Dispatcher, dict[str, TaskHandle[Any]], threading.RLock]:
    lock = threading.RLock()
    handles: dict[str, TaskHandle[Any]] = {}
    dispatcher = Dispatcher(lock=lock, bus=EventBus(), pools=Pools(2), handles=handles,
                            max_workers=2, on_task_error=on_task_error,
                            persistence=persistence, owner=None)
    return dispatcher, handles, lock


def submit(dispatcher: Dispatcher, handles: dict[str, TaskHandle[Any]], lock: threading.RLock,
           fn: Callable[[], Any], key: str, parents: tuple[TaskHandle[Any], ...] = ()
           ) -> TaskHandle[Any]:
    with lock:
        h: TaskHandle[Any] = TaskHandle(object(), Task(fn, name=key), (), {}, key, parents,
                                        "asyncio", len(handles) + 1, dispatcher)
        handles[key] = h
        h._fingerprint = key
        dispatcher.admit(h)
    return h


def drive(dispatcher: Dispatcher) -> None:
    async def main() -> None:
        run = ActiveRun()
        run.attach(asyncio.get_running_loop())
        dispatcher.run = run
        await dispatcher.drive(run)

    asyncio.run(main())


def test_a_dispatcher_runs_without_a_runner_and_commits_before_completions_show() -> None:
    persistence = RecordingPersistence(durable=True)
    dispatcher, handles, lock = build(persistence)
    a = submit(dispatcher, handles, lock, lambda: 1, "a")
    b = submit(dispatcher, handles, lock, _raise, "b", (a,))
    c = submit(dispatcher, handles, lock, lambda: 3, "c", (b,))
    restored = submit(dispatcher, handles, lock, lambda: 4, "restored")
    assert dispatcher.unfinished == 3  # the primed handle never counted
    drive(dispatcher)
    assert dispatcher.unfinished == 0 and dispatcher.run is None
    assert [h.status.value for h in (a, b, c)] == ["completed", "failed", "failed"]
    # a is committed while still running (nobody could see it complete yet); the failures
    # are recorded once terminal; the primed handle is never committed or ended.
    assert ("commit", "a", "running") in persistence.calls
    assert ("ended", "b", "failed") in persistence.calls
    assert ("ended", "c", "failed") in persistence.calls
    assert not [c for c in persistence.calls if c[1] == "restored" and c[0] != "prime"]
    assert restored.status.value == "pending"  # the fake prime says True but sets nothing


def test_the_abort_policy_is_the_dispatchers_on_task_error() -> None:
    dispatcher, handles, lock = build(RecordingPersistence(durable=False), "raise")
    bad = submit(dispatcher, handles, lock, _raise, "bad")
    other = submit(dispatcher, handles, lock, lambda: 1, "other", (bad,))

    async def main() -> BaseException | None:
        run = ActiveRun(serving=True)  # an abort ends a serve too
        run.attach(asyncio.get_running_loop())
        dispatcher.run = run
        await dispatcher.drive(run)
        return run.abort_error

    error = asyncio.run(main())
    assert isinstance(error, ValueError)
    assert bad.status.value == "failed" and other.status.value == "failed"


def _raise() -> None:
    raise ValueError("no")
