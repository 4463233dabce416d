"""The run's timeline, built from events: waits, attempts and retry waits, one row per task."""

from __future__ import annotations

import threading

import pytest

from pyworkflowy_nb import TaskRunner, task
from pyworkflowy_nb._html import STATE_STYLES
from pyworkflowy_nb.notebook._timeline import (
    Segment,
    TimelineRecorder,
    TimelineRow,
    timeline_svg,
)

CALLS: list[int] = []


@task(retries=1, backoff="linear", backoff_base=0.01)
def flaky() -> str:
    CALLS.append(1)
    if len(CALLS) == 1:
        raise RuntimeError("first attempt fails")
    return "second time lucky"


@task
def after() -> str:
    return "after"


@task(backend="thread")
def broken() -> None:
    raise ValueError("no")


def test_attempts_retry_waits_and_waits_for_dependencies_are_rows_of_segments() -> None:
    CALLS.clear()
    with TaskRunner(on_task_error="continue") as runner:
        recorder = TimelineRecorder(runner)
        a = runner.submit(flaky, task_key="flaky")
        runner.submit(after, depends_on=[a], task_key="after")
        runner.submit(broken, task_key="broken")
        runner.run()
        rows = {r.key: r for r in recorder.rows()}
        recorder.close()
    flaky_row = rows["flaky"]
    kinds = [(s.kind, s.state, s.attempt) for s in flaky_row.segments
             if s.kind != "wait"]
    assert kinds == [("attempt", "retrying", 1), ("retry-wait", "retry-wait", 0),
                     ("attempt", "completed", 2)]
    assert flaky_row.attempts == 2 and flaky_row.state == "completed"
    after_row = rows["after"]
    assert after_row.segments[-1].kind == "attempt" and after_row.segments[-1].state == "completed"
    # "after" cannot start before "flaky" has ended: its attempt begins after flaky's last.
    assert after_row.segments[-1].start >= flaky_row.segments[-1].end
    assert rows["broken"].segments[-1].state == "failed"
    for row in rows.values():  # segments follow each other in time
        for first, second in zip(row.segments, row.segments[1:], strict=False):
            assert first.end <= second.start + 1e-9


def test_tasks_submitted_before_the_recorder_wait_from_its_start() -> None:
    with TaskRunner(on_task_error="continue") as runner:
        bad = runner.submit(broken, task_key="broken")
        runner.submit(after, depends_on=[bad], task_key="never")  # fails without starting
        recorder = TimelineRecorder(runner)
        runner.run()
        rows = {r.key: r for r in recorder.rows()}
        recorder.close()
    assert [s.kind for s in rows["never"].segments] == ["wait"]
    assert rows["never"].state == "failed"
    assert 'data-key="never"' in timeline_svg(list(rows.values()))


def test_a_recorder_attached_late_uses_the_handles_times() -> None:
    with TaskRunner() as runner:
        h = runner.submit(after, task_key="late")
        runner.run()
        recorder = TimelineRecorder(runner)
        (row,) = recorder.rows()
        recorder.close()
    assert row.segments == (Segment("attempt", h.started_at, h.finished_at, "completed", 1),)


def test_a_running_task_grows_to_now() -> None:
    gate = threading.Event()

    @task(backend="thread")
    def waits() -> None:
        gate.wait(30)

    with TaskRunner() as runner:
        recorder = TimelineRecorder(runner)
        started = threading.Event()
        runner.subscribe(lambda e: started.set() if e.kind == "started" else None)
        runner.submit(waits, task_key="w")
        future = runner.run_in_background()
        try:
            assert started.wait(30)
            (row,) = recorder.rows(now=1e12)
            assert row.segments[-1].state == "running" and row.segments[-1].end == 1e12
        finally:
            gate.set()
            future.result(30)
        recorder.close()


def _row(key: str, state: str, start: float, end: float) -> TimelineRow:
    return TimelineRow(key, state, 1, (Segment("attempt", start, end, state, 1),))


def test_the_svg_draws_a_bar_per_segment_coloured_by_state_and_caps_rows() -> None:
    rows = [_row("a", "completed", 0.0, 1.0), _row("b", "failed", 0.5, 2.0)]
    svg = timeline_svg(rows)
    assert svg.count('class="wfy-timeline-row"') == 2
    assert f'fill="{STATE_STYLES["failed"].fill}"' in svg
    assert 'data-key="b" data-state="failed"' in svg
    assert 'viewBox="0 0 900' in svg and 'width="100%"' in svg
    many = [_row(f"t{i}", "completed", i, i + 1.0) for i in range(10)]
    capped = timeline_svg(many, max_rows=4)
    assert capped.count('class="wfy-timeline-row"') == 4
    assert "and 6 more tasks" in capped
    assert "no task has started yet" in timeline_svg([])


@pytest.mark.parametrize("label", ["<script>", 'a"b'])
def test_labels_are_escaped(label: str) -> None:
    svg = timeline_svg([_row(label, "completed", 0.0, 1.0)])
    assert label not in svg
