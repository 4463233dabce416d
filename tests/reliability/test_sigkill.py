"""SIGKILL at random moments: a checkpointed run loses only the attempts that were in flight.

Each test drives one checkpoint through a chain of processes (sigkill_worker.py): every
process submits the same 300-task DAG in another random topological order, alternating the
asyncio and thread backends, and is SIGKILLed at a random moment: from the outside, after a
random number of bodies started (plus a random delay of up to a few milliseconds) or after a
random delay from its start; or from inside a body (the k-th body of the process kills its own
process right after it logged). The last process runs to the end; one more process must then
restore everything and run nothing. The kills per test: ten mid-run in the first test; in the
second, one in the very first body (nothing completed, so nothing written), one during
start-up, one at a random moment of the next run.

Every body logs its start with fsync before doing any work, so the log is the ground truth of
what started. The oracle:

(a) a body of task T that starts in process s means T's completion was not durable; but if a
    child of T had started in an earlier process, T had completed before that child started
    and its completion had to be on disk by then. So: no task runs again in a process after
    one where any of its children started, nor after one where its handle reported it
    completed (a watcher thread in the worker logs that, also with fsync);
(b) the final values equal both an uninterrupted reference run (a process without a
    checkpoint) and the values computed without the engine;
(c) every handle of the final process is terminal and completed, and a further resume
    restores every task and runs no body (``run()`` returning implies durability).

Kills happen at ``checkpoint_interval=0``, the default (argument not passed) and 5.0. The
random choices come from one seed, printed at the start of each test (``-s`` shows it) and
in every failure; set ``WFY_RELIABILITY_SEED`` to replay a failure's choices. The moments of
outside kills also depend on timing, so a replay follows the same plan, not the same
instruction.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sigkill_worker as dag
from harness import package_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL"),
]

WORKER = Path(__file__).with_name("sigkill_worker.py")
SEED = int(os.environ.get("WFY_RELIABILITY_SEED", "20261201"))
INTERVALS = ["0", "default", "5.0"]
KILLS_MID_RUN = 10
HANG_GUARD = 120.0  # seconds; only reached when something is broken
CHILDREN: dict[str, list[str]] = {dag.label(i): [] for i in range(dag.SIZE)}
for _i, _ps in enumerate(dag.PARENTS):
    for _p in _ps:
        CHILDREN[dag.label(_p)].append(dag.label(_i))


@dataclass
class Chain:
    """One checkpoint driven through a sequence of processes."""

    tmp: Path
    interval: str
    seed: int
    rng: random.Random = field(init=False)
    sessions: list[str] = field(default_factory=list)
    kills: int = 0

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.seed}/{self.interval}")
        self.checkpoint = self.tmp / "state.json"
        self.log = self.tmp / "started.log"

    def where(self) -> str:
        return (f"seed={self.seed} interval={self.interval} after processes "
                f"{self.sessions} (replay with WFY_RELIABILITY_SEED={self.seed})")

    def started(self) -> dict[str, list[str]]:
        """The labels whose body started, per process, in log order."""
        return self.read_log(self.log)

    def seen_completed(self) -> dict[str, list[str]]:
        """The labels whose handle reported COMPLETED, per process."""
        return self.read_log(self.log.with_name(self.log.name + ".seen"))

    def read_log(self, log: Path) -> dict[str, list[str]]:
        per: dict[str, list[str]] = {s: [] for s in self.sessions}
        if log.exists():
            text = log.read_text()
            # A line being appended right now is not complete yet: read up to the last newline.
            for line in text[:text.rfind("\n") + 1].splitlines():
                session, name = line.split(" ")
                per.setdefault(session, []).append(name)
        return per

    def never_started(self) -> int:
        seen = {n for names in self.started().values() for n in names}
        return dag.SIZE - len(seen)

    def spawn(self, kill_at: int = 0) -> subprocess.Popen[str]:
        session = str(len(self.sessions))
        backend = "asyncio" if len(self.sessions) % 2 == 0 else "thread"
        order_seed = self.rng.randrange(2**32)
        self.sessions.append(session)
        return subprocess.Popen(
            [sys.executable, str(WORKER), session, str(self.checkpoint), str(self.log),
             backend, self.interval, str(order_seed), str(kill_at)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=package_env())

    def lines_of(self, session: str) -> int:
        return len(self.started().get(session, []))

    def wait(self, proc: subprocess.Popen[str]) -> dict[str, Any] | None:
        """The process's report if it ran to the end, None if it was SIGKILLed."""
        out, err = proc.communicate(timeout=HANG_GUARD)
        if proc.returncode == -signal.SIGKILL:
            self.kills += 1
            return None
        assert proc.returncode == 0, (
            f"process {self.sessions[-1]} failed (rc {proc.returncode}), {self.where()}:\n{err}")
        report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return report

    # -- the kinds of kill --------------------------------------------------------------------
    def kill_inside(self, ordinal: int) -> dict[str, Any] | None:
        """The ``ordinal``-th body of the next process kills that process."""
        return self.wait(self.spawn(kill_at=ordinal))

    def kill_after(self, low: float, high: float) -> dict[str, Any] | None:
        """SIGKILL from the harness after a random delay in [low, high) seconds from spawn,
        wherever the process is then (start-up, resume, the run or its final write)."""
        proc = self.spawn()
        try:
            proc.wait(self.rng.uniform(low, high))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
        return self.wait(proc)

    def kill_outside(self, after: int) -> dict[str, Any] | None:
        """SIGKILL from the harness once ``after`` bodies started, plus a random few ms."""
        proc = self.spawn()
        session = self.sessions[-1]
        deadline = time.monotonic() + HANG_GUARD
        while proc.poll() is None and self.lines_of(session) < after:
            assert time.monotonic() < deadline, f"no progress, {self.where()}"
            time.sleep(0.001)
        time.sleep(self.rng.choice((0.0, self.rng.uniform(0.0, 0.005))))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        return self.wait(proc)

    def random_count(self) -> int:
        """A number of bodies to let start: within the first third of the work left, so
        every process makes some progress and is still killed mid-run."""
        return self.rng.randint(1, max(1, self.never_started() // 3))

    # -- the oracle ---------------------------------------------------------------------------
    def check_no_durable_task_ran_again(self) -> None:
        """(a): no task runs in a process after one where a child of it started or where
        its handle was seen completed."""
        per = self.started()
        first_child_start: dict[str, int] = {}
        for index, session in enumerate(self.sessions):
            names = per.get(session, [])
            assert len(names) == len(set(names)), (
                f"a body ran twice in process {session}, {self.where()}")
            for name in names:
                for parent in dag.PARENTS[int(name[4:])]:
                    first_child_start.setdefault(dag.label(parent), index)
        first_seen: dict[str, int] = {}
        seen_per = self.seen_completed()
        for index, session in enumerate(self.sessions):
            for name in seen_per.get(session, []):
                first_seen.setdefault(name, index)
        offenders = []
        for index, session in enumerate(self.sessions):
            for name in per.get(session, []):
                earlier = first_child_start.get(name)
                if earlier is not None and earlier < index:
                    child = next(c for c in CHILDREN[name]
                                 if c in per.get(self.sessions[earlier], []))
                    offenders.append(f"{name} ran in process {session} although its child "
                                     f"{child} had started in process {self.sessions[earlier]}")
                seen = first_seen.get(name)
                if seen is not None and seen < index:
                    offenders.append(f"{name} ran in process {session} although its handle "
                                     f"reported it completed in process {self.sessions[seen]}")
        assert not offenders, (
            f"{len(offenders)} completed tasks ran again, {self.where()}:\n"
            + "\n".join(offenders[:10]))

    def finish_and_verify(self, reference: dict[str, int]) -> None:
        """Run to the end, check (a), (b), (c), then check that a resume restores it all."""
        report = self.wait(self.spawn())
        assert report is not None
        self.check_no_durable_task_ran_again()
        assert all(report["terminal"].values()), f"handles left open, {self.where()}"
        assert set(report["status"].values()) == {"completed"}, self.where()
        assert report["values"] == reference, f"wrong final values, {self.where()}"
        again = self.wait(self.spawn())
        assert again is not None
        ran = self.started()[self.sessions[-1]]
        assert ran == [], f"{len(ran)} bodies ran after a finished run, e.g. {ran[:5]}, " \
                          f"{self.where()}"
        assert len(again["restored"]) == dag.SIZE, self.where()
        assert again["values"] == reference, self.where()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, int]:
    """The values of an uninterrupted run without a checkpoint (checked against the model)."""
    tmp = tmp_path_factory.mktemp("reference")
    proc = subprocess.run(
        [sys.executable, str(WORKER), "plain", str(tmp / "unused"), str(tmp / "log"),
         "asyncio", "default", "0", "0"],
        capture_output=True, text=True, env=package_env(), timeout=HANG_GUARD)
    assert proc.returncode == 0, proc.stderr
    values: dict[str, int] = json.loads(proc.stdout.strip().splitlines()[-1])["values"]
    assert values == dag.expected_values()
    return values


@pytest.mark.parametrize("interval", INTERVALS)
def test_kills_mid_run_lose_no_durable_completion(
        interval: str, tmp_path: Path, reference: dict[str, int]) -> None:
    chain = Chain(tmp_path, interval, SEED)
    print(f"seed={SEED}")
    # Ten kills: alternating outside and inside, each after a random number of bodies.
    for step in range(KILLS_MID_RUN):
        count = chain.random_count()
        killed = chain.kill_outside(count) if step % 2 == 0 else chain.kill_inside(count)
        assert killed is None, f"process {chain.sessions[-1]} was not killed, {chain.where()}"
        chain.check_no_durable_task_ran_again()
    assert chain.kills == KILLS_MID_RUN
    chain.finish_and_verify(reference)


@pytest.mark.parametrize("interval", INTERVALS)
def test_kill_before_the_first_write_resumes_fresh(
        interval: str, tmp_path: Path, reference: dict[str, int]) -> None:
    chain = Chain(tmp_path, interval, SEED)
    print(f"seed={SEED}")
    # The first body kills its process: nothing has completed, so nothing is written yet.
    assert chain.kill_inside(1) is None
    # The next process dies during start-up, before it could write anything either.
    assert chain.kill_after(0.0, 0.05) is None
    assert chain.kills == 2
    # Then one at a random moment of the first real run (it may, rarely, finish first).
    chain.kill_after(0.1, 0.4)
    chain.check_no_durable_task_ran_again()
    chain.finish_and_verify(reference)
