"""Widget benchmark rows: what the live view costs a run, and how long one picture takes.

Each case runs in a fresh subprocess. The DAG is the engine benchmark's "dag-100w" shape (layers
100 wide, each node with two random parents in the layer above) of no-op tasks.

- run with the widget attached vs the same run without: the widget is attached to the fresh
  runner first, then both are timed from the first submit to ``run()`` returning, best of
  several alternating repeats in one process. The final redraw, which happens on the widget's
  timer thread after ``run()`` returns, is reported in the note rather than counted. A no-op run
  is over before the first throttled redraw is due, so that row measures the listener; a second
  row, with tasks that sleep, shows redraws happening during the run.
- one render to SVG: snapshot + DOT + Graphviz for a finished 1,000-node run, the way the widget
  draws it (summarised, one node per task name), plus the same DAG drawn node by node and the
  largest DAG the widget still draws node by node (300), for reference.
"""

from __future__ import annotations

import sys
import textwrap
from typing import Any

from _harness import row, run_case

_RUN = textwrap.dedent(r'''
import asyncio, json, random, resource, sys, time
from pyworkflowy_nb import TaskRunner, task
from pyworkflowy_nb.notebook._widget import RunnerWidget

n, repeats, sleep = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
from _harness import layered_edges, submit_graph
edges = layered_edges(n)

@task
async def noop():
    return None

@task
async def nap():
    await asyncio.sleep(sleep)

def once(with_widget, sleep, bare_listener=False):
    runner = TaskRunner()
    widget = RunnerWidget(runner) if with_widget else None
    if bare_listener:
        runner.subscribe(lambda event: None)
    body = nap if sleep else noop
    start = time.perf_counter()
    handles = submit_graph(runner, body, edges)
    runner.run()
    elapsed = time.perf_counter() - start
    assert all(h.status.value == "completed" for h in handles)
    final = draws = None
    if widget is not None:
        t = time.perf_counter()
        assert widget.flush(60)
        final = time.perf_counter() - t
        draws = widget.draw_count
        assert "finished" in widget._header.value
        widget.close()
    runner.shutdown()
    return elapsed, final, draws

once(False, sleep); once(True, sleep)  # warm imports, pools, the dot binary's page cache
plain, widget, bare = [], [], []
for _ in range(repeats):
    plain.append(once(False, sleep)[0])
    widget.append(once(True, sleep))
    bare.append(once(False, sleep, bare_listener=True)[0])
best = min(widget, key=lambda r: r[0])
print(json.dumps({"plain": min(plain), "widget": best[0], "final": best[1], "draws": best[2],
                  "bare": min(bare),
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
''')

_RENDER = textwrap.dedent(r'''
import json, random, resource, sys, time
from pyworkflowy_nb import TaskRunner, task
from pyworkflowy_nb._html import snapshot_handles
from pyworkflowy_nb.notebook._dot import build_dot, render_svg

from _harness import layered_edges, submit_graph
n, repeats, summarise_above = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])

@task
async def noop():
    return None

runner = TaskRunner()
handles = submit_graph(runner, noop, layered_edges(n))
runner.run()
times = []
for _ in range(repeats):
    start = time.perf_counter()
    svg = render_svg(build_dot(snapshot_handles(runner.handles), summarise_above=summarise_above))
    times.append(time.perf_counter() - start)
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"s": min(times), "svg_kb": len(svg) / 1024, "dot_rss": children}))
''')


def rows(quick: bool) -> list[dict[str, Any]]:
    repeats = 5 if quick else 15
    n = 1000
    out: list[dict[str, Any]] = []
    run = run_case(_RUN, n, repeats, 0)
    out.append(row(
        "dag-100w no-op, widget attached", n, run["widget"], run["plain"], run["rss"],
        "<=1.2x without widget",
        f"floor = same run without widget; an empty listener alone: "
        f"{run['bare'] / run['plain']:.2f}x (the engine's cost of emitting events); "
        f"{run['draws']} draws; final redraw {run['final'] * 1000:.0f} ms after run() returned",
    ))
    slow = run_case(_RUN, n, max(1, repeats // 3), 0.05)
    out.append(row(
        "dag-100w, 50 ms async sleep each, widget attached", n, slow["widget"], slow["plain"],
        slow["rss"], "reference",
        f"long enough for live redraws: {slow['draws']} draws during and after the run",
    ))
    summary = run_case(_RENDER, n, repeats, 300)
    out.append(row(
        "render dag-100w to SVG (as the widget does)", n, summary["s"], None,
        summary["dot_rss"], "<=1 s",
        f"summarised: one group per task name; {summary['svg_kb']:.0f} KiB SVG; RSS is dot's",
    ))
    full = run_case(_RENDER, n, repeats, 10**9)
    out.append(row(
        "render dag-100w to SVG, node by node", n, full["s"], None, full["dot_rss"],
        "reference", f"not what the widget draws; {full['svg_kb']:.0f} KiB SVG; RSS is dot's",
    ))
    largest = run_case(_RENDER, 300, repeats, 300)
    out.append(row(
        "render dag-100w to SVG, largest per-node picture", 300, largest["s"], None,
        largest["dot_rss"], "<=1 s",
        f"the threshold: bigger DAGs are summarised; {largest['svg_kb']:.0f} KiB SVG",
    ))
    return out


if __name__ == "__main__":
    for r in rows("--quick" in sys.argv):
        print(r)
