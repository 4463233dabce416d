"""What every benchmark module shares: running a case in a fresh interpreter, and a table row.

Each case is a Python snippet run with ``python -c`` so that its peak RSS is its own and no
state leaks between cases; it prints one JSON object on its last line of output.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WIDTH = 100


def layered_edges(n: int, width: int = WIDTH, seed: int = 7) -> list[tuple[int, ...]]:
    """Parents of each node of the layered DAG: ``width`` nodes a layer, two random parents
    each in the layer above (the same graph in every benchmark, thanks to the seed)."""
    rng = random.Random(seed)
    edges: list[tuple[int, ...]] = []
    for i in range(n):
        layer = i // width
        if layer == 0:
            edges.append(())
        else:
            lo = (layer - 1) * width
            edges.append(tuple(sorted(set(rng.sample(range(lo, lo + width), 2)))))
    return edges


def submit_graph(runner: Any, task: Any, edges: list[tuple[int, ...]],
                 args: Callable[[int], tuple[Any, ...]] | None = None) -> list[Any]:
    """Submit one ``task`` per node of ``edges`` (parents by index), in order; the handles."""
    handles: list[Any] = []
    for i, ps in enumerate(edges):
        handles.append(runner.submit(task, *(args(i) if args else ()),
                                     depends_on=[handles[p] for p in ps] if ps else None))
    return handles


def run_case(code: str, *args: object, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``code`` with ``args`` in a new interpreter (repo on the path); its JSON result."""
    base = env if env is not None else dict(os.environ)
    # The package, and this module for the cases that import layered_edges.
    path = os.pathsep.join(filter(None, [str(ROOT), str(HERE), base.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, check=False, cwd=ROOT, env={**base, "PYTHONPATH": path})
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark case {args} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def best_of(repeats: int, code: str, *args: object,
            env: dict[str, str] | None = None) -> dict[str, Any]:
    """The fastest of ``repeats`` runs (by its ``"s"`` field): the least disturbed by others."""
    return min((run_case(code, *args, env=env) for _ in range(repeats)), key=lambda r: r["s"])


def best_interleaved(repeats: int, code: str, *variants: tuple[object, ...],
                     env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The fastest run of each variant (its ``args``), the variants taking turns: on a busy
    machine every variant then samples the same stretches of load, so their ratio holds."""
    best: list[dict[str, Any] | None] = [None] * len(variants)
    for _ in range(repeats):
        for i, args in enumerate(variants):
            result = run_case(code, *args, env=env)
            current = best[i]
            if current is None or result["s"] < current["s"]:
                best[i] = result
    return [b for b in best if b is not None]


def row(shape: str, n: int, ours: float, floor: float | None, rss: float | None,
        target: str, note: str = "") -> dict[str, Any]:
    """One line of the table; the ratio is ours over the floor measured in the same run."""
    return {"shape": shape, "n": n, "ours_s": ours, "floor_s": floor,
            "ratio": None if floor is None else ours / floor,
            "us_per_task": ours / n * 1e6, "peak_rss_mb": rss, "target": target, "note": note}
