"""The engine works with every Jupyter-side dependency blocked.

A fresh interpreter installs a meta-path finder that refuses ipywidgets, ipykernel, IPython,
graphviz, nest_asyncio and cloudpickle, then imports pyworkflowy_nb and runs a small DAG on all
three backends, with retries, a skip policy and a JSON checkpoint. Afterwards none of the blocked
modules may be in ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

BLOCKED = ("ipywidgets", "ipykernel", "IPython", "graphviz", "nest_asyncio", "cloudpickle")

PROGRAM = textwrap.dedent('''
    import importlib.abc
    import json
    import sys

    BLOCKED = set(sys.argv[1].split(","))
    attempted = []

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                attempted.append(name)
                raise ImportError(f"{name} is blocked for this test")
            return None

    sys.meta_path.insert(0, Refuse())
    for name in list(sys.modules):
        if name.split(".")[0] in BLOCKED:
            del sys.modules[name]

    sys.path.insert(0, sys.argv[3])
    import pyworkflowy_nb
    from pyworkflowy_nb import TaskRunner, task
    from pyworkflowy_nb.exceptions import TaskError
    import engine_helpers

    tries = []

    @task(retries=1, backoff="none")
    def flaky(x):
        tries.append(x)
        if len(tries) == 1:
            raise RuntimeError("once")
        return x + 1

    @task
    async def async_double(x):
        return 2 * x

    @task(backend="thread")
    def in_thread(x):
        return x * 10

    @task(on_dep_failure="skip")
    def skipped():
        return "never"

    @task
    def broken():
        raise ValueError("broken")

    if __name__ == "__main__":
        with TaskRunner(checkpoint_path=sys.argv[2], on_task_error="continue") as runner:
            a = flaky.submit(1)
            b = async_double.submit(3)
            c = in_thread.submit(4)
            d = engine_helpers.process_square.submit(5)
            e = runner.submit(engine_helpers.add, 1, 2, depends_on=[a, b, c, d])
            f = skipped.submit(depends_on=[broken.submit()])
            results = runner.run()
        resumed = TaskRunner.resume(sys.argv[2])
        again = resumed.submit(flaky, 1)
        resumed.run()
        resumed.shutdown()
        print(json.dumps({
            "values": [h.result() for h in (a, b, c, d, e)],
            "skipped": f.status.value,
            "restored": again.restored,
            "attempted": attempted,
            "loaded": sorted(n for n in sys.modules if n.split(".")[0] in BLOCKED),
            "notebook_loaded": "pyworkflowy_nb.notebook" in sys.modules,
        }))
''')


def test_engine_runs_with_jupyter_dependencies_blocked(tmp_path: Path) -> None:
    script = tmp_path / "blocked_run.py"
    script.write_text(PROGRAM)
    out = subprocess.run(
        [sys.executable, str(script), ",".join(BLOCKED), str(tmp_path / "state.json"),
         str(Path(__file__).parent)],
        capture_output=True, text=True, timeout=180, check=False, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["values"] == [2, 6, 40, 25, 3]
    assert report["skipped"] == "skipped"
    assert report["restored"] is True
    assert report["loaded"] == []
    assert report["notebook_loaded"] is False


def test_the_blocker_really_blocks(tmp_path: Path) -> None:
    # Guards the guard: with the finder installed, importing a blocked module must fail.
    code = PROGRAM.split("sys.path.insert(0, sys.argv[3])")[0] + textwrap.dedent('''
        try:
            import cloudpickle
        except ImportError as exc:
            print("blocked:", exc)
        else:
            print("not blocked")
    ''')
    script = tmp_path / "check.py"
    script.write_text(code)
    out = subprocess.run([sys.executable, str(script), ",".join(BLOCKED)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("blocked: cloudpickle is blocked")
