"""Events: the kinds a run emits, in order; subscribers; the event log file."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from engine_helpers import Boom

from pyworkflowy_nb import EventLog, TaskEvent, TaskRunner, task


@task
def square(x: int) -> int:
    return x * x


def test_event_log_records_kinds_in_order_for_a_small_dag(tmp_path: Path) -> None:
    @task
    def a() -> int:
        return 1

    @task
    def b() -> int:
        raise Boom("b")

    @task
    def c() -> int:
        return 3

    @task(on_dep_failure="skip")
    def d() -> int:
        return 4

    path = tmp_path / "events.jsonl"
    with TaskRunner(on_task_error="continue", max_workers=1) as runner:
        log = EventLog(runner, str(path))
        ha = a.submit()
        hb = b.submit(depends_on=[ha])
        hc = c.submit(depends_on=[ha])
        hd = d.submit(depends_on=[hb, hc])
        runner.run()
        log.close()
    assert log.kinds(ha.key) == ["submitted", "started", "completed"]
    assert log.kinds(hb.key) == ["submitted", "started", "failed"]
    assert log.kinds(hc.key) == ["submitted", "started", "completed"]
    assert log.kinds(hd.key) == ["submitted", "skipped"]
    kinds = log.kinds()
    assert kinds[:4] == ["submitted"] * 4
    assert kinds[4] == "run-started" and kinds[-1] == "run-finished"
    # Parents end before their children start.
    keyed = [(e.kind, e.key) for e in log.events]
    assert keyed.index(("completed", ha.key)) < keyed.index(("started", hb.key))
    assert keyed.index(("failed", hb.key)) < keyed.index(("skipped", hd.key))
    failed = next(e for e in log.events if e.kind == "failed")
    assert isinstance(failed.error, Boom) and failed.attempt == 1 and failed.handle is hb
    times = [e.time for e in log.events]
    assert times == sorted(times)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [x["kind"] for x in lines] == kinds
    assert lines[0]["key"] == ha.key
    # After close() nothing more is recorded.
    with TaskRunner() as r2:
        log2 = EventLog(r2)
        log2.close()
        square.submit(1)
        r2.run()
    assert log2.events == []


def test_subscribe_and_unsubscribe(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[TaskEvent] = []

    def broken(event: TaskEvent) -> None:
        raise RuntimeError("listener bug")

    with TaskRunner() as runner:
        unsubscribe = runner.subscribe(seen.append)
        runner.subscribe(broken)
        h = square.submit(2)
        with caplog.at_level(logging.ERROR, logger="pyworkflowy_nb"):
            runner.run()  # a failing listener never breaks the run
        assert h.result() == 4
        assert any("listener" in r.getMessage() for r in caplog.records)
        count = len(seen)
        unsubscribe()
        square.submit(3)
        runner.run()
    assert len(seen) == count
    assert [e.kind for e in seen] == ["submitted", "run-started", "started", "completed",
                                      "run-finished"]
    assert seen[0].handle is h and seen[1].handle is None
    assert seen[2].attempt == 1
    with pytest.raises(TypeError, match="callable"):
        runner.subscribe(42)  # type: ignore[arg-type]


def test_event_kinds_include_retrying_and_cancelled_and_restored(tmp_path: Path) -> None:
    attempts: list[int] = []

    @task(retries=1, backoff="none")
    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise Boom("once")
        return "ok"

    path = tmp_path / "state.json"
    with TaskRunner(checkpoint_path=path, checkpoint_interval=0) as runner:
        log = EventLog(runner)
        h = flaky.submit()
        gone = square.submit(1)
        gone.cancel()
        runner.run()
    assert log.kinds(h.key) == ["submitted", "started", "retrying", "started", "completed"]
    assert log.kinds(gone.key) == ["submitted", "cancelled"]
    with TaskRunner.resume(path) as again:
        log2 = EventLog(again)
        h2 = again.submit(flaky)
        again.run()
    assert h2.restored and log2.kinds(h2.key) == ["submitted", "restored"]
