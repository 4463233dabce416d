"""Notebook-session benchmark rows: a 1,000-task DAG of ``%%task`` cells.

* with the session's cloudpickle checkpoint (what a notebook gets by default), against the same
  session run without one. Target: at most 2x.
* the session without a checkpoint, against the same DAG submitted to the engine as plain
  thread-backend tasks: what compiling cells into tasks, namespace snapshots and upstream
  injection cost. Informational (no target).

Cells are defined before the clock starts; each timed run uses a fresh checkpoint file, so
nothing is primed. The variants are interleaved and the best of several runs is kept, so each
sees the same background load.
"""

from __future__ import annotations

import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _harness import layered_edges

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))



def _session_run(n: int, checkpoint: Path | None) -> float:
    from pyworkflowy_nb.notebook import Session

    session = Session(user_ns={"__name__": "__main__"},
                      checkpoint=checkpoint if checkpoint is not None else False)
    for i, parents in enumerate(layered_edges(n)):
        body = "max(" + ", ".join(f"t{p}" for p in parents) + ") + 1" if parents else "0"
        session.define(f"t{i}", body, after=[f"t{p}" for p in parents])
    start = time.perf_counter()
    results = session.run()
    elapsed = time.perf_counter() - start
    assert results.ok and len(results) == n
    session.close()
    return elapsed


def _engine_run(n: int) -> float:
    from pyworkflowy_nb import TaskRunner, task

    @task(backend="thread")
    def step(*values: int) -> int:
        return max(values) + 1 if values else 0

    runner = TaskRunner(on_task_error="continue")
    handles: list[Any] = []
    start = time.perf_counter()
    for i, parents in enumerate(layered_edges(n)):
        handles.append(runner.submit(step, depends_on=[handles[p] for p in parents],
                                     task_key=f"t{i}"))
    results = runner.run()
    elapsed = time.perf_counter() - start
    assert results.ok
    runner.shutdown()
    return elapsed


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rows(quick: bool) -> list[dict[str, object]]:
    n = 1_000
    work = Path(tempfile.mkdtemp(prefix="wfy-bench-session-"))
    old_key = os.environ.get("PYWORKFLOWY_NB_KEY_FILE")
    os.environ["PYWORKFLOWY_NB_KEY_FILE"] = str(work / "checkpoint.key")
    best = {"ckpt": float("inf"), "plain": float("inf"), "engine": float("inf")}
    try:
        for i in range(2 if quick else 5):
            best["plain"] = min(best["plain"], _session_run(n, None))
            best["ckpt"] = min(best["ckpt"], _session_run(n, work / f"run{i}" / "s.ckpt"))
            best["engine"] = min(best["engine"], _engine_run(n))
    finally:
        if old_key is None:
            os.environ.pop("PYWORKFLOWY_NB_KEY_FILE", None)
        else:
            os.environ["PYWORKFLOWY_NB_KEY_FILE"] = old_key
        shutil.rmtree(work, ignore_errors=True)
    rss = _rss_mb()
    return [
        {
            "shape": "notebook session dag-100w + cloudpickle checkpoint (default interval)",
            "n": n, "ours_s": best["ckpt"], "floor_s": best["plain"],
            "ratio": best["ckpt"] / best["plain"], "us_per_task": best["ckpt"] / n * 1e6,
            "peak_rss_mb": rss, "note": "target <=2x; floor = same session, checkpoint off",
        },
        {
            "shape": "notebook session dag-100w, no checkpoint, vs engine plain tasks",
            "n": n, "ours_s": best["plain"], "floor_s": best["engine"],
            "ratio": best["plain"] / best["engine"], "us_per_task": best["plain"] / n * 1e6,
            "peak_rss_mb": rss,
            "note": "informational: cost of cell tasks (namespace snapshot, upstream lookup)",
        },
    ]


if __name__ == "__main__":
    for row in rows(quick="--quick" in sys.argv):
        print(row)
