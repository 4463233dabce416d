"""One process of the SIGKILL harness (run by test_sigkill.py; not a test module).

Usage: python sigkill_worker.py SESSION CHECKPOINT LOG BACKEND INTERVAL ORDER_SEED KILL_AT

SESSION is a label written in front of every log line (``plain`` runs without a checkpoint,
``0`` creates the checkpoint with ``TaskRunner(checkpoint_path=...)``, any other label resumes
it with ``TaskRunner.resume(CHECKPOINT)``). INTERVAL is a number of seconds or ``default`` (the
argument is then not passed at all). ORDER_SEED draws the random topological order in which the
DAG is submitted, so every process submits the same tasks in another order. KILL_AT > 0 makes
the KILL_AT-th body started in this process SIGKILL its own process right after it logged.

Every body appends ``<SESSION> <label>`` to LOG, then flushes and fsyncs, *before* doing its
work: the harness then knows every body that started, even when the process dies right after.
A watcher thread polls the handles and appends ``<SESSION> <label>`` to LOG.seen (fsync'd)
once a handle reports COMPLETED, so the harness also knows what a user saw finish.
At the end one JSON line reports each handle's value, status and whether it was restored.

The DAG is fixed (not drawn from the seed) so every process and the test agree on it: a few
hundred nodes mixing chains, fan-outs from hubs, diamonds and wide merges. A node's value is a
deterministic function of its index and its parents' values, read from the parents' handles,
so a wrongly restored parent changes every value downstream of it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time
from typing import Any

SIZE = 300
MODULUS = 1_000_003


def build_dag(size: int = SIZE) -> list[list[int]]:
    """``parents[i]``: the parents of node ``i`` (all smaller than ``i``), in a fixed order."""
    rng = random.Random(20261201)
    parents: list[list[int]] = []
    hubs: list[int] = []
    for i in range(size):
        if i < 6:
            chosen: list[int] = []  # roots
            hubs.append(i)
        else:
            kind = rng.choice(("chain", "chain", "fanout", "diamond", "merge"))
            if kind == "chain":
                chosen = [i - 1]
            elif kind == "fanout":
                chosen = [rng.choice(hubs)]
                if rng.random() < 0.1:
                    hubs.append(i)
            elif kind == "diamond":
                # Two parents that share an ancestor: i-1 and i-2 usually hang off one node.
                chosen = [i - 2, i - 1]
            else:
                chosen = sorted(rng.sample(range(i), min(i, rng.randint(3, 6))))
        parents.append(chosen)
    return parents


PARENTS = build_dag()


def label(i: int) -> str:
    return f"node{i:03d}"


def node_value(i: int, parent_values: list[int]) -> int:
    total = i * 7919 + 1
    for k, v in enumerate(parent_values):
        total += (k + 1) * v * 31
    return total % MODULUS


def expected_values() -> dict[str, int]:
    """The values an uninterrupted run must end with, computed without the engine."""
    values: list[int] = []
    for i, ps in enumerate(PARENTS):
        values.append(node_value(i, [values[p] for p in ps]))
    return {label(i): v for i, v in enumerate(values)}


def topological_order(seed: int) -> list[int]:
    """A random topological order of the DAG drawn from ``seed``."""
    rng = random.Random(seed)
    children: list[list[int]] = [[] for _ in PARENTS]
    waiting = [len(ps) for ps in PARENTS]
    for i, ps in enumerate(PARENTS):
        for p in ps:
            children[p].append(i)
    ready = [i for i, n in enumerate(waiting) if n == 0]
    order: list[int] = []
    while ready:
        i = ready.pop(rng.randrange(len(ready)))
        order.append(i)
        for c in children[i]:
            waiting[c] -= 1
            if waiting[c] == 0:
                ready.append(c)
    return order


def watch(handles: dict[int, Any], session: str, seen_log: str,
          finished: threading.Event) -> None:
    """Log (with fsync) each task as soon as its handle says it completed, as a user polling
    ``status`` would see it: what was seen completed must survive the process."""
    fd = os.open(seen_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    unseen = {i for i, h in handles.items() if not h.restored}
    while unseen and not finished.is_set():
        done = [i for i in unseen if handles[i].status.value == "completed"]
        if done:
            os.write(fd, "".join(f"{session} {label(i)}\n" for i in done).encode())
            os.fsync(fd)
            unseen.difference_update(done)
        time.sleep(0.001)
    os.close(fd)


def main(argv: list[str]) -> None:
    from pyworkflowy_nb import TaskHandle, TaskRunner, task

    session, checkpoint, log, backend, interval, order_seed, kill_at = argv
    kill_ordinal = int(kill_at)
    handles: dict[int, TaskHandle[int]] = {}
    started = 0
    lock = threading.Lock()
    log_fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    @task(name="node")
    def node(i: int) -> int:
        nonlocal started
        with lock:
            started += 1
            ordinal = started
            os.write(log_fd, f"{session} {label(i)}\n".encode())
            os.fsync(log_fd)
        if ordinal == kill_ordinal:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.0005 * (i % 4))  # a little work, so kills land inside bodies too
        return node_value(i, [handles[p].result() for p in PARENTS[i]])

    options: dict[str, Any] = {"backend": backend}
    if interval != "default":
        options["checkpoint_interval"] = float(interval)
    if session == "plain":
        runner = TaskRunner(backend=backend)
    elif session == "0":
        runner = TaskRunner(checkpoint_path=checkpoint, **options)
    else:
        runner = TaskRunner.resume(checkpoint, **options)
    for i in topological_order(int(order_seed)):
        handles[i] = runner.submit(node, i, depends_on=[handles[p] for p in PARENTS[i]])
    finished = threading.Event()
    watcher = threading.Thread(target=watch, args=(handles, session, log + ".seen", finished),
                               daemon=True)
    watcher.start()
    with runner:
        runner.run()
    finished.set()
    watcher.join()
    report = {
        "values": {label(i): h.result() if h.status.value == "completed" else None
                   for i, h in handles.items()},
        "status": {label(i): h.status.value for i, h in handles.items()},
        "terminal": {label(i): h.status.terminal for i, h in handles.items()},
        "restored": sorted(label(i) for i, h in handles.items() if h.restored),
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
