"""A small pipeline run in a subprocess by test_resume_restart.py (not a test module).

Usage: python restart_dag.py MODE CHECKPOINT SIDE_FILE RELEASE_FILE SEED
MODE is "first" (new checkpoint), "resume" (TaskRunner.resume) or "plain" (no checkpoint).
Every executed body appends "<mode> <task key>" to SIDE_FILE with one unbuffered write, so the
parent sees exactly what ran even if this process is SIGKILLed. The "slow" task blocks until
RELEASE_FILE exists. Submission order is a random topological order drawn from SEED, so each
process submits the same tasks in a different order. At the end the results are printed as
JSON on stdout.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from typing import Any

from pyworkflowy_nb import TaskHandle, TaskRunner, task

MODE, CHECKPOINT, SIDE, RELEASE, SEED = sys.argv[1:6]


def note(label: str) -> None:
    fd = os.open(SIDE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{MODE} {label}\n".encode())
    finally:
        os.close(fd)


@task(name="load")
def load(i: int) -> int:
    note(f"load({i})")
    return i * i


@task(name="clean")
def clean(i: int) -> int:
    note(f"clean({i})")
    return i + 100


@task(name="slow", backend="thread")
def slow() -> str:
    note("slow")
    deadline = time.monotonic() + 60
    while not os.path.exists(RELEASE) and time.monotonic() < deadline:
        time.sleep(0.01)
    return "slow-done"


@task(name="after-slow")
def after_slow() -> str:
    note("after-slow")
    return "after"


HANDLES: dict[str, TaskHandle[Any]] = {}


@task(name="report")
def report() -> dict[str, Any]:
    note("report")
    # Reads every parent's value, restored or freshly computed.
    return {k: HANDLES[k].result() for k in sorted(HANDLES) if k != "report"}


def nodes() -> dict[str, tuple[Any, tuple[Any, ...], list[str]]]:
    spec: dict[str, tuple[Any, tuple[Any, ...], list[str]]] = {}
    for i in range(4):
        spec[f"load({i})"] = (load, (i,), [])
        spec[f"clean({i})"] = (clean, (i,), [f"load({i})"])
    spec["slow"] = (slow, (), ["load(0)"])
    spec["after-slow"] = (after_slow, (), ["slow", "clean(1)"])
    spec["report"] = (report, (), list(spec))
    return spec


def main() -> None:
    if MODE == "resume":
        runner = TaskRunner.resume(CHECKPOINT, checkpoint_interval=0)
    elif MODE == "first":
        runner = TaskRunner(checkpoint_path=CHECKPOINT, checkpoint_interval=0)
    else:
        runner = TaskRunner()
    spec = nodes()
    rng = random.Random(int(SEED))
    order: list[str] = []
    while len(order) < len(spec):
        ready = [k for k, (_, _, deps) in spec.items()
                 if k not in HANDLES and all(d in HANDLES for d in deps)]
        label = rng.choice(sorted(ready))
        fn, args, deps = spec[label]
        HANDLES[label] = runner.submit(fn, *args, depends_on=[HANDLES[d] for d in deps])
        order.append(label)
    with runner:
        results = runner.run()
    print(json.dumps({
        "order": order,
        "keys": {label: h.key for label, h in HANDLES.items()},
        "restored": sorted(label for label, h in HANDLES.items() if h.restored),
        "values": {label: HANDLES[label].result() for label in HANDLES},
        "ok": results.ok,
    }))


if __name__ == "__main__":
    main()
