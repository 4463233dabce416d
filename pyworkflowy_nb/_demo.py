"""The engine demo: a small data pipeline as a DAG, run, checkpointed and resumed.

It makes its own data (no downloads), shows the three backends, a retried flaky step, a
dependency policy, and a second runner that resumes from the checkpoint without re-running
what completed.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from . import TaskRunner, current_task, task

_calls: list[str] = []


@task(backend="thread")
def make_day(day: int) -> list[float]:
    """One day of synthetic sensor readings."""
    _calls.append(f"make_day({day})")
    rng = random.Random(day)
    time.sleep(0.05)  # pretend this is I/O
    return [round(20 + 5 * rng.random() + day * 0.1, 3) for _ in range(1_000)]


@task(retries=2, backoff="exponential", backoff_base=0.05)
def flaky_upload(day: int) -> str:
    """Fails on its first attempt, as a network call sometimes does."""
    ctx = current_task()
    _calls.append(f"flaky_upload({day})")
    if ctx is not None and ctx.attempt == 1:
        raise ConnectionError("simulated dropped connection")
    return f"day {day} uploaded on attempt {ctx.attempt if ctx else 1}"


def _summarise(values: list[float]) -> dict[str, float]:
    return {"mean": round(statistics.fmean(values), 3), "max": max(values)}


summarise = task(backend="process")(_summarise)


@task
async def report(days: int) -> str:
    _calls.append("report")
    return f"{days} days summarised"


def build(runner: TaskRunner, days: int) -> dict[str, Any]:
    made = {d: runner.submit(make_day, d) for d in range(days)}
    uploads = [runner.submit(flaky_upload, d, depends_on=[made[d]]) for d in range(days)]
    # Dependencies do not pass values along; a task that needs one reads it in its own body or
    # receives it as an argument once known. Here the summary runs after the data exists.
    return {"made": made, "uploads": uploads,
            "report": runner.submit(report, days, depends_on=uploads)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pyworkflowy_nb", description=__doc__)
    parser.add_argument("--days", type=int, default=6)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="wfy-demo-"))
    state = folder / "state.json"

    print(f"1) run a {args.days * 2 + 1}-task DAG, checkpointed to {state}")
    started = time.perf_counter()
    with TaskRunner(max_workers=4, checkpoint_path=state, checkpoint_interval=0) as runner:
        graph = build(runner, args.days)
        results = runner.run()
        summaries = [runner.submit(summarise, h.result()) for h in graph["made"].values()]
        runner.run()
    print(f"   finished in {time.perf_counter() - started:.2f} s, all ok: {results.ok}")
    for key, res in results.items():
        print(f"   {key:<40} {res.status.value:<10} attempts={res.attempts}")
    for h in summaries[:3]:
        print(f"   summary: {h.result()}")

    print("2) a new runner resumes from the checkpoint and re-submits everything")
    _calls.clear()
    resumed = TaskRunner.resume(state, max_workers=4)
    with resumed:
        graph = build(resumed, args.days)
        resumed.run()
    restored = sum(h.restored for h in resumed.handles)
    print(f"   {restored} of {len(resumed.handles)} tasks restored, "
          f"{len(_calls)} executed again: {_calls or 'none'}")
    print(f"   report: {graph['report'].result()}")
    return 0
