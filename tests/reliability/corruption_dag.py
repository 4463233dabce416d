"""The small DAG whose checkpoints test_corruption.py corrupts (not a test module).

``python -c "import corruption_dag; corruption_dag.write_and_die(KIND, PATH, VARIANT)"``
writes a checkpoint of KIND at PATH and SIGKILLs its own process, so the files are left as a
crash leaves them (a journal not yet compacted, say) rather than as a clean shutdown does:
VARIANT "killed" dies right after the last of three runs returned; "crashed" dies inside the
third run, in a body that depends on cell(10), so cell(11) never ran and cell(0..10) must be
restored. The tasks are imported by module name in both processes so their fingerprints match.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from pyworkflowy_nb import JSONCheckpointer, PickleCheckpointer, TaskRunner, task

KINDS = ("json", "pickle", "cloudpickle")
BATCHES = ((0, 1, 2, 3), (4, 5, 6, 7, 8), (9, 10, 11))
PARENTS = {0: (), 1: (0,), 2: (0,), 3: (1, 2), 4: (), 5: (4,), 6: (3, 5), 7: (6,), 8: (4,),
           9: (8,), 10: (9, 7), 11: (10,)}


def value_of(i: int) -> Any:
    """What cell(i) returns: strings and ints from ``i`` alone (the edges only give shape)."""
    return f"s{i}" if i % 3 == 0 else i * i + 1


@task(name="cell")
def cell(i: int) -> Any:
    return value_of(i)


def submit_all(runner: TaskRunner, only: tuple[int, ...] | None = None,
               handles: dict[int, Any] | None = None) -> dict[int, Any]:
    """Submit the DAG (or the nodes ``only``) in a fixed order."""
    handles = {} if handles is None else handles
    for i in only if only is not None else sorted(PARENTS):
        handles[i] = runner.submit(cell, i, depends_on=[handles[p] for p in PARENTS[i]])
    return handles


def open_kind(kind: str, path: Path) -> Any:
    if kind == "json":
        return JSONCheckpointer(path)
    if kind == "pickle":
        return PickleCheckpointer(path)
    from pyworkflowy_nb.notebook import CloudpickleCheckpointer

    return CloudpickleCheckpointer(path)


def write(kind: str, path: Path, interval: float = 0.0) -> tuple[TaskRunner, dict[int, Any]]:
    """Three runs on one runner, so the checkpoint spans several saves."""
    runner = TaskRunner(checkpointer=open_kind(kind, path), checkpoint_interval=interval)
    handles: dict[int, Any] = {}
    for batch in BATCHES:
        submit_all(runner, batch, handles)
        runner.run()
    return runner, handles


@task(name="die")
def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def write_and_die(kind: str, path: str, variant: str) -> None:
    if variant == "killed":
        write(kind, Path(path), interval=5.0)
    else:
        runner = TaskRunner(checkpointer=open_kind(kind, Path(path)), checkpoint_interval=5.0)
        handles: dict[int, Any] = {}
        for batch in BATCHES[:2]:
            submit_all(runner, batch, handles)
            runner.run()
        submit_all(runner, (9, 10), handles)
        runner.submit(die, depends_on=[handles[10]])
        runner.run()
    os.kill(os.getpid(), signal.SIGKILL)
