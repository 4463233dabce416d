"""Run every benchmark and print one table.

    python benchmarks/run.py [--quick] [--only engine,scheduler,...] [--json out.json]

Rows come from ``benchmarks/bench_*.py`` modules, each exposing ``rows(quick) -> list[dict]``.
Ratios compare our time with a floor measured in the same run on the same machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
COLUMNS = ("area", "shape", "n", "ours_s", "floor_s", "ratio", "us_per_task", "peak_rss_mb",
           "target", "note")


def _load(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if value < 100 else f"{value:.0f}"
    return str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, one repeat")
    parser.add_argument("--only", default="", help="comma-separated areas, e.g. engine,widget")
    parser.add_argument("--json", default="", help="also write the rows to this file")
    args = parser.parse_args()
    wanted = {a for a in args.only.split(",") if a}
    sys.path[:0] = [str(HERE), str(HERE.parent)]  # _harness, and the package itself
    table: list[dict[str, Any]] = []
    for path in sorted(HERE.glob("bench_*.py")):
        area = path.stem.removeprefix("bench_")
        if wanted and area not in wanted:
            continue
        started = time.perf_counter()
        print(f"running {area}...", file=sys.stderr, flush=True)
        for row in _load(path).rows(args.quick):
            table.append({"area": area, **row})
        print(f"  {area} took {time.perf_counter() - started:.1f} s", file=sys.stderr)
    cells = [[_fmt(r.get(c)) for c in COLUMNS] for r in table]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(COLUMNS)]
    print(" | ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)))
    print("-+-".join("-" * w for w in widths))
    for row in cells:
        print(" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
