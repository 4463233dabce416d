"""Engine benchmark rows: our runner against a bare-asyncio floor measured in the same run.

Each case runs in a fresh subprocess so its peak RSS is its own. Shapes:
fan-out (independent tasks), chain (each waits for the previous), layered DAG (100 wide, two
random parents per node in the layer above). The floor uses only asyncio: create_task + gather
for the fan-out, tasks awaiting their parents' tasks for chain and DAG.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

from _harness import best_interleaved, best_of, row

_CASE = textwrap.dedent(r'''
import asyncio, json, random, resource, sys, time
kind, shape, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
extra = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
from _harness import layered_edges, submit_graph
if shape == "fan-out":
    edges = [()] * n
elif shape == "chain":
    edges = [(i - 1,) if i else () for i in range(n)]
else:
    edges = layered_edges(n)

def noop():
    return None

def run_ours():
    from pyworkflowy_nb import TaskRunner, task
    t = task(noop)
    runner = TaskRunner(**extra)
    start = time.perf_counter()
    handles = submit_graph(runner, t, edges)
    runner.run()
    elapsed = time.perf_counter() - start
    assert all(h.status.value == "completed" for h in handles)
    runner.shutdown()
    return elapsed

async def floor_main():
    async def leaf():
        return noop()
    async def node(ps):
        for p in ps:
            await p
        return noop()
    if shape == "fan-out":
        await asyncio.gather(*[asyncio.create_task(leaf()) for _ in range(n)])
        return
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(node([tasks[p] for p in edges[i]])))
    await asyncio.gather(*tasks)

def run_floor():
    start = time.perf_counter()
    asyncio.run(floor_main())
    return time.perf_counter() - start

elapsed = run_ours() if kind == "ours" else run_floor()
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"s": elapsed, "rss": rss_mb}))
''')

_THREAD = textwrap.dedent(r'''
import json, sys, time
from pyworkflowy_nb import TaskRunner, task
@task(backend="thread")
def nap():
    time.sleep(0.01)
n = int(sys.argv[1])
with TaskRunner(max_workers=8) as runner:
    for _ in range(n):
        runner.submit(nap)
    start = time.perf_counter()
    runner.run()
    print(json.dumps({"s": time.perf_counter() - start}))
''')

_PROCESS = textwrap.dedent(r'''
import json, sys, time
from concurrent.futures import ProcessPoolExecutor
from pyworkflowy_nb import TaskRunner, task

def burn(k):
    total = 0
    for i in range(k):
        total += i * i
    return total

burn_task = task(backend="process")(burn)

if __name__ == "__main__":
    kind, n, work = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    workers = 2
    if kind == "floor":
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(burn, [1] * workers))  # warm the pool, as ours is warmed below
            start = time.perf_counter()
            out = list(pool.map(burn, [work] * n))
            elapsed = time.perf_counter() - start
    else:
        with TaskRunner(max_workers=workers) as runner:
            for _ in range(workers):
                runner.submit(burn_task, 1)
            runner.run()
            start = time.perf_counter()
            hs = [runner.submit(burn_task, work, task_key=f"b{i}") for i in range(n)]
            runner.run()
            elapsed = time.perf_counter() - start
            out = [h.result() for h in hs]
    assert len(out) == n
    print(json.dumps({"s": elapsed}))
''')


def rows(quick: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    big = 20_000 if quick else 100_000
    repeats = 1 if quick else 3
    big_fanout = 0.0
    for shape in ("fan-out", "chain", "dag-100w"):
        times: dict[int, float] = {}
        for n in (10_000, big):
            ours, floor = best_interleaved(repeats, _CASE, ("ours", shape, n),
                                           ("floor", shape, n))
            times[n] = ours["s"]
            out.append(row(shape, n, ours["s"], floor["s"], ours["rss"],
                           "<=1.0x floor, <=250 MB" if n == big else "<=3x floor"))
        out[-1]["note"] = f"{big // 1000}k/10k time = {times[big] / times[10_000]:.1f}x (<=12x)"
        if shape == "fan-out":
            big_fanout = times[big]
    # What the default max_workers=8 costs a pass of inline sync tasks (they share one slot).
    default, unbounded = best_interleaved(
        repeats, _CASE, ("ours", "fan-out", big),
        ("ours", "fan-out", big, json.dumps({"max_workers": None})))
    out.append(row("fan-out, default max_workers=8", big, default["s"], unbounded["s"], None,
                   "~1.0x max_workers=None", "floor = the same run with max_workers=None"))
    if not quick:
        huge = 1_000_000
        ours, floor = best_interleaved(1, _CASE, ("ours", "fan-out", huge),
                                       ("floor", "fan-out", huge))
        out.append(row("fan-out", huge, ours["s"], floor["s"], ours["rss"],
                       "<=1.0x floor, <=600 MB, <=11x 100k",
                       f"1M/100k time = {ours['s'] / big_fanout:.1f}x"))
    plain = best_of(repeats, _CASE, "ours", "fan-out", 10_000)
    ckpt_path = "/tmp/wfy-bench-ckpt/state.json"
    import shutil
    shutil.rmtree("/tmp/wfy-bench-ckpt", ignore_errors=True)
    import os
    os.makedirs("/tmp/wfy-bench-ckpt", exist_ok=True)
    ckpt = best_of(repeats, _CASE, "ours", "fan-out", 10_000,
                 json.dumps({"checkpoint_path": ckpt_path, "checkpoint_interval": 0}))
    out.append(row("fan-out + checkpoint_interval=0", 10_000, ckpt["s"], plain["s"], ckpt["rss"],
                    "<=3x no checkpoint", "floor = same run without checkpoint"))
    n_thread = 200 if quick else 1000
    thread = best_of(1, _THREAD, n_thread)
    ideal = n_thread * 0.01 / 8
    out.append(row("thread sleep(0.01) x8 workers", n_thread, thread["s"], ideal, None,
                    "<=1.15x ideal", f"floor = ideal {ideal:.2f} s"))
    n_proc, work = (40, 300_000) if quick else (200, 1_000_000)
    ours_p = best_of(repeats, _PROCESS, "ours", n_proc, work)
    floor_p = best_of(repeats, _PROCESS, "floor", n_proc, work)
    out.append(row("process CPU-bound, 2 workers", n_proc, ours_p["s"], floor_p["s"], None,
                    "<=1.15x pool.map", "floor = ProcessPoolExecutor.map"))
    return out
