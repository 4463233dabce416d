"""The live widget, in-process: what it draws for each state, how often, and how it degrades.

Redraw timing is tested against a MockClock (the widget's time and timers come from its clock),
so "at most ten redraws a second" is checked by counting, never by measuring.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import subprocess
import sys
import threading
import types
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from engine_helpers import HANG_GUARD, wait_until

from pyworkflowy_nb import TaskRunner, TaskStatus, task
from pyworkflowy_nb._cache import MemoryStore
from pyworkflowy_nb._html import STATE_STYLES, STATES, display_key
from pyworkflowy_nb.notebook import _dot, _widget
from pyworkflowy_nb.notebook._dot import group_id, node_id
from pyworkflowy_nb.notebook._widget import RunnerWidget, register_display, watch
from pyworkflowy_nb.testing import MockClock

REPO = Path(__file__).resolve().parent.parent
SVG = "{http://www.w3.org/2000/svg}"

needs_dot = pytest.mark.skipif(_dot.find_dot() is None, reason="Graphviz 'dot' is not installed")


# -- a mock clock: its call_later timers are the widget's redraws --------------------------------


@pytest.fixture
def clock() -> MockClock:
    return MockClock(start=0.0)


def make_widget(runner: TaskRunner, clock: MockClock, **kwargs: object) -> RunnerWidget:
    return RunnerWidget(runner, clock=clock, **kwargs)  # type: ignore[arg-type]


def record_draws(w: RunnerWidget, clock: MockClock) -> list[float]:
    """Wrap the widget's single push point; returns the (virtual) times of each push."""
    times: list[float] = []
    original = w._push

    def push(graph: str, header: str, table: str) -> None:
        times.append(clock.time())
        original(graph, header, table)

    w._push = push  # type: ignore[method-assign]
    return times


def svg_fills(w: RunnerWidget) -> dict[str, str]:
    """Node id -> fill of its shape, read from the SVG the widget currently shows."""
    value = w._graph.value
    start, end = value.index("<svg"), value.index("</svg>") + len("</svg>")
    root = ET.fromstring(value[start:end])
    out = {}
    for g in root.iter(f"{SVG}g"):
        if "node" in (g.get("class") or "").split():
            shape = next(e for e in g.iter() if e.tag in (f"{SVG}path", f"{SVG}polygon"))
            out[g.get("id", "")] = shape.get("fill", "")
    return out


# -- tasks ----------------------------------------------------------------------------------------

GATE = threading.Event()


@task(cache=True)
def cached_one() -> int:
    return 1


@task
def one() -> int:
    return 1


@task
def quick(x: int) -> int:
    return x


@task
def explode(x: int) -> int:
    raise ValueError(f"boom {x}")


@task(on_dep_failure="skip")
def after(x: int) -> int:
    return x


def _wait_gate() -> int:
    if not GATE.wait(HANG_GUARD):
        raise RuntimeError("the test never opened the gate")
    return 1


@task(backend="thread")
def hold() -> int:
    return _wait_gate()


@task(retries=1, backoff="linear", backoff_base=3600.0)
def flaky() -> int:
    raise RuntimeError("not yet")  # then waits an hour to retry: it stays "retrying"


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    GATE.clear()
    yield GATE
    GATE.set()


# -- what is drawn ------------------------------------------------------------------------------


@needs_dot
def test_first_draw_happens_at_once_and_shows_pending_tasks(
    clock: MockClock,
) -> None:
    runner = TaskRunner()
    a = runner.submit(one)
    b = runner.submit(quick, 2, depends_on=[a])
    w = make_widget(runner, clock)
    assert w.draw_count == 1
    assert svg_fills(w) == {node_id(a.key): STATE_STYLES["ready"].fill,  # nothing to wait for
                            node_id(b.key): STATE_STYLES["pending"].fill}
    header = w._header.value
    assert "2 tasks" in header and "idle" in header
    assert "1 pending" in header and "1 ready" in header
    assert "quick(2)" in w._table.value
    w.close()


@needs_dot
def test_every_state_has_its_colour_and_restored_is_not_completed(
    tmp_path: Path, clock: MockClock, gate: threading.Event
) -> None:
    path = str(tmp_path / "ck")
    first = TaskRunner(checkpoint_path=path)
    first.submit(one)
    first.run()
    first.shutdown()
    store = MemoryStore()
    warm = TaskRunner(cache=store)
    warm.submit(cached_one)
    warm.run()
    warm.shutdown()

    runner = TaskRunner.resume(path, on_task_error="continue", cache=store)
    restored = runner.submit(one)
    cached = runner.submit(cached_one)
    completed = runner.submit(quick, 1)
    failed = runner.submit(explode, 1)
    skipped = runner.submit(after, 1, depends_on=[failed])
    running = runner.submit(hold)
    pending = runner.submit(quick, 2, depends_on=[running])
    cancelled = runner.submit(quick, 3, depends_on=[running])
    retrying = runner.submit(flaky)
    assert cancelled.cancel()
    w = make_widget(runner, clock)
    future = runner.run_in_background()
    try:
        wait_until(lambda: running.status is TaskStatus.RUNNING
                        and retrying.status is TaskStatus.RETRYING
                        and skipped.status is TaskStatus.SKIPPED
                        and completed.status is TaskStatus.COMPLETED, "the mid-run states")
        w.refresh()
        expected = {
            restored: "restored", completed: "completed", failed: "failed",
            skipped: "skipped", running: "running", pending: "pending",
            cancelled: "cancelled", retrying: "retrying", cached: "cached",
        }
        # READY is seen in the first-draw test: here every ready handle gets a slot at once.
        assert sorted(expected.values()) == sorted(set(STATES) - {"ready"})
        fills = svg_fills(w)
        for h, state in expected.items():
            assert fills[node_id(h.key)] == STATE_STYLES[state].fill, state
        assert fills[node_id(restored.key)] != fills[node_id(completed.key)]
        assert fills[node_id(cached.key)] != fills[node_id(completed.key)]
        header = w._header.value
        assert "running" in header
        for state in expected.values():
            assert f"1 {state}" in header
    finally:
        gate.set()
        retrying.cancel()
        future.result(HANG_GUARD)
    clock.advance(1.0)  # the final redraw
    fills = svg_fills(w)
    assert fills[node_id(running.key)] == STATE_STYLES["completed"].fill
    assert fills[node_id(pending.key)] == STATE_STYLES["completed"].fill
    assert fills[node_id(retrying.key)] == STATE_STYLES["cancelled"].fill
    assert "finished" in w._header.value
    assert "ValueError: boom 1" in w._table.value
    w.close()


def test_large_dag_is_drawn_as_groups(clock: MockClock) -> None:
    runner = TaskRunner()
    firsts = [runner.submit(quick, i) for i in range(200)]
    for i, h in enumerate(firsts):
        runner.submit(after, i, depends_on=[h])
    w = make_widget(runner, clock)
    if _dot.find_dot() is not None:
        names = {display_key(h.name) for h in runner.handles}
        assert len(names) == 2
        assert set(svg_fills(w)) == {group_id(n) for n in names}
    assert "400 tasks" in w._header.value
    w.close()


# -- throttling and coalescing --------------------------------------------------------------------


def test_listener_never_draws_and_redraws_are_spaced_by_the_frame_interval(
    clock: MockClock,
) -> None:
    runner = TaskRunner()
    w = make_widget(runner, clock, max_fps=10, heartbeat=None)
    draws = record_draws(w, clock)
    for i in range(1000):  # one event every millisecond for one simulated second
        runner.submit(quick, i)  # emits "submitted" synchronously, on this thread
        assert len(clock.timers()) == 1  # events coalesce into one due redraw
        clock.advance(0.001)
    clock.advance(1.0)
    assert 10 <= len(draws) <= 11  # live (about ten a second), never more
    gaps = [b - a for a, b in itertools.pairwise(draws)]
    assert min(gaps) >= 0.1 - 1e-9
    assert draws[0] >= 0.1 - 1e-9  # the first event waited for the construction-time draw
    assert "1000 tasks" in w._header.value  # the last draw has everything
    w.close()


def test_a_slow_redraw_spaces_out_the_next_one(clock: MockClock) -> None:
    runner = TaskRunner()
    w = make_widget(runner, clock, max_fps=10, heartbeat=None)
    original = w._push

    def slow_push(graph: str, header: str, table: str) -> None:
        clock.advance(0.3)  # this redraw "takes" 300 ms, three frames
        original(graph, header, table)
        runner.submit(quick, len(runner.handles))  # and something changes meanwhile

    w._push = slow_push  # type: ignore[method-assign]
    runner.submit(quick, 0)
    clock.advance(0.1)  # first redraw: starts at 0.1, ends at 0.4
    (next_,) = clock.timers()
    assert next_.due == pytest.approx(0.1 + 0.6)  # as long again after it ended, not at 0.4
    w.close()
    with pytest.raises(ValueError, match="summarise_above"):
        RunnerWidget(runner, summarise_above=1)


def test_a_whole_run_coalesces_into_one_final_redraw(
    clock: MockClock,
) -> None:
    runner = TaskRunner(on_task_error="continue")
    hs = [runner.submit(quick, i) for i in range(50)]
    bad = runner.submit(explode, 0, depends_on=[hs[0]])
    w = make_widget(runner, clock)
    draws = record_draws(w, clock)
    runner.run()  # events arrive from the run's loop; the mock clock stands still meanwhile
    assert len(clock.timers()) == 1
    assert draws == []
    clock.advance(0.1)
    assert len(draws) == 1
    assert "finished" in w._header.value and "50 completed" in w._header.value
    if _dot.find_dot() is not None:
        assert svg_fills(w)[node_id(bad.key)] == STATE_STYLES["failed"].fill
    assert clock.timers() == []  # finished: no heartbeat
    w.close()


def test_a_change_during_a_redraw_is_drawn_afterwards(
    clock: MockClock,
) -> None:
    runner = TaskRunner()
    runner.submit(quick, 1)
    w = make_widget(runner, clock, heartbeat=None)
    original = w._push
    late: list[object] = []

    def push(graph: str, header: str, table: str) -> None:
        original(graph, header, table)
        if not late:  # a task arrives while this redraw is still going on
            late.append(runner.submit(quick, 2))
            assert clock.timers() == []  # no second redraw overlaps this one

    w._push = push  # type: ignore[method-assign]
    runner.submit(quick, 3)
    clock.advance(0.1)
    assert late and "2 tasks" in w._header.value
    (follow_up,) = clock.timers()  # armed when the redraw ended, one frame later
    assert follow_up.due == pytest.approx(0.2)
    clock.advance(0.1)
    assert "3 tasks" in w._header.value
    assert clock.timers() == []
    w.close()


def test_run_finished_arriving_mid_redraw_still_gets_drawn(
    clock: MockClock,
) -> None:
    runner = TaskRunner()
    runner.submit(quick, 1)
    w = make_widget(runner, clock, heartbeat=None)
    original = w._push
    pushes: list[str] = []

    def push(graph: str, header: str, table: str) -> None:
        pushes.append(header)
        original(graph, header, table)
        if len(pushes) == 1:
            runner.run()  # the whole run (and its "run-finished") lands during this redraw

    w._push = push  # type: ignore[method-assign]
    runner.submit(quick, 2)
    clock.advance(0.1)
    assert "2 ready" in pushes[0]
    clock.advance(0.1)
    assert len(pushes) == 2 and "2 completed" in pushes[1] and "finished" in pushes[1]
    w.close()


def test_heartbeat_refreshes_a_quiet_run_and_yields_to_real_events(
    clock: MockClock, gate: threading.Event
) -> None:
    runner = TaskRunner()
    h = runner.submit(hold)
    w = make_widget(runner, clock, heartbeat=1.0)
    started = threading.Event()
    # Listeners run in subscription order: when this one fires, the widget has seen the event.
    runner.subscribe(lambda e: started.set() if e.kind == "started" else None)
    draws = record_draws(w, clock)
    future = runner.run_in_background()
    try:
        assert started.wait(HANG_GUARD)
        clock.advance(0.1)
        assert len(draws) == 1 and "running" in w._header.value
        (beat,) = clock.timers()
        assert beat.delay == 1.0  # nothing happens, so the next redraw is the heartbeat
        clock.advance(1.0)
        # A quiet heartbeat only ticks the clocks: no full redraw.
        assert len(draws) == 1 and w.tick_count == 1
        (beat,) = clock.timers()
        runner.submit(quick, 1, depends_on=[h])  # a real change cancels the slow heartbeat
        assert beat.cancelled
        (soon,) = clock.timers()
        assert soon.delay == pytest.approx(0.1)  # one frame after the heartbeat draw
    finally:
        gate.set()
        future.result(HANG_GUARD)
    clock.advance(1.0)
    assert "finished" in w._header.value
    assert clock.timers() == []
    w.close()


def test_ticks_move_the_clocks_twice_a_second_without_redrawing_the_graph(
    clock: MockClock, gate: threading.Event
) -> None:
    runner = TaskRunner()
    runner.submit(hold, task_key="hold")
    w = make_widget(runner, clock)  # the default heartbeat
    started = threading.Event()
    runner.subscribe(lambda e: started.set() if e.kind == "started" else None)
    draws = record_draws(w, clock)
    graph_sets: list[str] = []
    w._graph.observe(lambda change: graph_sets.append(change["new"]), names="value")
    future = runner.run_in_background()
    try:
        assert started.wait(HANG_GUARD)
        clock.advance(0.1)
        assert len(draws) == 1 and len(graph_sets) == 1
        for expected in (1, 2, 3, 4):
            (beat,) = clock.timers()
            assert beat.delay <= 0.5
            clock.advance(beat.delay)
            assert w.tick_count == expected
        assert len(draws) == 1 and len(graph_sets) == 1  # the graph was never sent again
        clock_line = w._clock_line.value
        assert 'class="wfy-running-task" data-key="hold"' in clock_line
        assert "elapsed" in w._header.value and "running" in w._header.value
    finally:
        gate.set()
        future.result(HANG_GUARD)
    clock.advance(1.0)
    assert w._clock_line.value == ""  # nothing runs any more
    w.close()


@task(backend="thread")
def reports() -> int:
    from pyworkflowy_nb import current_task

    ctx = current_task()
    assert ctx is not None
    ctx.update_progress(0.42, "epoch 3 of 7")
    return _wait_gate()


@needs_dot
def test_progress_shows_on_the_node_and_in_the_clock_line(
    clock: MockClock, gate: threading.Event
) -> None:
    runner = TaskRunner()
    h = runner.submit(reports, task_key="train")
    w = make_widget(runner, clock)
    reported = threading.Event()
    runner.subscribe(lambda e: reported.set() if e.kind == "progress" else None)
    future = runner.run_in_background()
    try:
        assert reported.wait(HANG_GUARD)
        clock.advance(0.1)
        assert h.progress is not None and h.progress.fraction == 0.42
        assert "42% · epoch 3 of 7" in w._graph.value  # on the node
        assert "42% · epoch 3 of 7" in w._clock_line.value
        assert "42% · epoch 3 of 7" in w._table.value
    finally:
        gate.set()
        future.result(HANG_GUARD)
    clock.advance(1.0)
    assert "42%" not in w._graph.value  # a finished node shows its time, not its progress
    # The timeline tab has the task's row, from the events.
    assert w._views.children[1] is w._timeline
    assert 'class="wfy-timeline-row" data-key="train" data-state="completed"' in w.timeline_html()
    assert 'data-key="train"' in w._timeline.value
    w.close()


def test_redraw_runs_in_the_context_of_the_event_that_asked_for_it(
    clock: MockClock,
) -> None:
    # The notebook layer pins a cell's parent header in the event's context; the timer thread
    # must see it, or ipykernel 7 sends the widget update under no (or the wrong) cell.
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="none")
    runner = TaskRunner()
    w = make_widget(runner, clock)
    seen: list[str] = []
    original = w._push

    def push(graph: str, header: str, table: str) -> None:
        seen.append(marker.get())
        original(graph, header, table)

    w._push = push  # type: ignore[method-assign]

    def emit() -> None:
        marker.set("cell-42")
        runner.submit(quick, 1)

    contextvars.copy_context().run(emit)
    assert marker.get() == "none"
    contextvars.Context().run(clock.advance, 0.1)  # fired from an unrelated context
    assert seen == ["cell-42"]
    w.close()


def test_real_timer_draws_the_final_state() -> None:
    runner = TaskRunner(on_task_error="continue")
    a = runner.submit(one)
    runner.submit(explode, 2, depends_on=[a])
    w = RunnerWidget(runner)  # the default timer thread
    runner.run()
    assert w.flush(HANG_GUARD)
    assert "finished" in w._header.value
    assert "1 completed" in w._header.value and "1 failed" in w._header.value
    w.close()


def test_no_change_is_lost_between_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    # Real timer threads at a high frame rate, events from the run's loop thread and from this
    # thread at once: every run must end with its final state on screen. A lost wake-up (an
    # event that sees a redraw "due" just as that redraw finishes) would leave it stale.
    monkeypatch.setattr(_dot, "render_svg", lambda source, timeout=60.0: "<svg></svg>")
    for round_ in range(5):
        runner = TaskRunner()
        w = RunnerWidget(runner, max_fps=1000, heartbeat=None)
        for i in range(200):
            runner.submit(quick, i)
        future = runner.run_in_background()
        extra = [runner.submit(quick, 1000 + i) for i in range(200)]  # racing the run
        future.result(HANG_GUARD)
        runner.run()  # whatever the first run had already finished before they arrived
        assert all(h.status is TaskStatus.COMPLETED for h in extra)
        assert w.flush(HANG_GUARD)
        assert "400 completed" in w._header.value, round_
        assert "finished" in w._header.value
        w.close()


# -- closing, bad input, degraded environments -----------------------------------------------------


def test_the_view_takes_its_runners_clock_by_default() -> None:
    clock = MockClock(start=0.0)
    runner = TaskRunner(clock=clock)
    w = RunnerWidget(runner, heartbeat=None)
    runner.submit(quick, 1)
    (timer,) = clock.timers()  # the redraw waits on the runner's (virtual) clock
    assert timer.due == pytest.approx(0.1)
    clock.advance(0.1)
    assert w.draw_count == 2 and "1 tasks" in w._header.value
    w.close()


def test_close_unsubscribes_and_cancels(clock: MockClock) -> None:
    runner = TaskRunner()
    w = make_widget(runner, clock)
    runner.submit(quick, 1)
    (timer,) = clock.timers()
    w.close()
    assert timer.cancelled and w.closed
    runner.submit(quick, 2)
    assert clock.timers() == []
    clock.advance(5.0)
    assert w.draw_count == 1
    assert w.flush(0.0)
    assert runner._bus.active is False  # nobody else listens to this runner
    w.close()  # twice is fine


@pytest.mark.parametrize("fps", [0, -1, True, "10", float("nan"), 10_000])
def test_bad_max_fps_is_rejected(fps: object) -> None:
    with pytest.raises(ValueError, match="max_fps"):
        RunnerWidget(TaskRunner(), max_fps=fps)  # type: ignore[arg-type]


def test_bad_heartbeat_and_runner_are_rejected() -> None:
    with pytest.raises(ValueError, match="heartbeat"):
        RunnerWidget(TaskRunner(), heartbeat=0)
    with pytest.raises(TypeError, match="TaskRunner, got list"):
        RunnerWidget([])


def test_without_dot_the_view_explains_and_keeps_the_table(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    clock: MockClock,
) -> None:
    monkeypatch.setattr(_dot, "find_dot", lambda: None)
    runner = TaskRunner(on_task_error="continue")
    a = runner.submit(one)
    b = runner.submit(explode, 5, depends_on=[a])
    with caplog.at_level(logging.WARNING, logger="pyworkflowy_nb"):
        w = make_widget(runner, clock)
        runner.run()
        clock.advance(0.1)
    graph = w._graph.value
    assert "<svg" not in graph
    assert "Graphviz" in graph and "install" in graph and "table below" in graph
    assert "Traceback" not in graph
    for h in (a, b):
        assert f'data-key="{h.key}"' in w._table.value
    assert "ValueError: boom 5" in w._table.value
    assert "1 failed" in w._header.value
    assert caplog.records == []
    w.close()


def test_a_failing_render_is_reported_in_the_view(
    monkeypatch: pytest.MonkeyPatch, clock: MockClock
) -> None:
    def broken(source: str, *, timeout: float = 60.0) -> str:
        raise _dot.RenderError("Graphviz failed (exit 1): syntax error")

    monkeypatch.setattr(_dot, "render_svg", broken)
    runner = TaskRunner()
    runner.submit(one)
    w = make_widget(runner, clock)
    assert "could not be drawn (Graphviz failed (exit 1): syntax error)" in w._graph.value
    assert "one" in w._table.value
    w.close()


def test_an_unexpected_error_is_logged_and_the_view_carries_on(
    caplog: pytest.LogCaptureFixture, clock: MockClock
) -> None:
    runner = TaskRunner()
    w = make_widget(runner, clock, heartbeat=None)
    original = w._push
    calls: list[int] = []

    def flaky_push(graph: str, header: str, table: str) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("frontend hiccup")
        original(graph, header, table)

    w._push = flaky_push  # type: ignore[method-assign]
    runner.submit(quick, 1)
    with caplog.at_level(logging.ERROR, logger="pyworkflowy_nb"):
        clock.advance(0.1)
    assert any("failed to redraw" in r.getMessage() for r in caplog.records)
    runner.submit(quick, 2)
    clock.advance(0.1)
    assert "2 tasks" in w._header.value
    w.close()


def test_missing_ipywidgets_fails_only_when_a_view_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "ipywidgets", None)
    runner = TaskRunner()
    with pytest.raises(ImportError, match="pip install ipywidgets"):
        RunnerWidget(runner)
    assert _widget._runner_bundle(runner) is None  # display() falls back to the HTML table
    assert runner._bus.active is False  # the failed build left no listener behind


def test_widget_module_imports_without_ipywidgets() -> None:
    code = (
        "import sys; sys.modules['ipywidgets'] = None\n"
        "import pyworkflowy_nb.notebook._widget as w\n"
        "from pyworkflowy_nb import TaskRunner\n"
        "try:\n"
        "    w.RunnerWidget(TaskRunner())\n"
        "except ImportError as e:\n"
        "    print('hint:', e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True,
        env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=HANG_GUARD * 2,
    )
    assert "hint: the live view needs ipywidgets: `pip install ipywidgets`" in out.stdout


# -- display integration ---------------------------------------------------------------------------


def _shell(kernel: object) -> types.SimpleNamespace:
    from IPython.core.formatters import DisplayFormatter

    return types.SimpleNamespace(kernel=kernel, display_formatter=DisplayFormatter())


def test_register_display_makes_runners_show_the_widget() -> None:
    shell = _shell(kernel=object())
    runner = TaskRunner()
    runner.submit(one)
    before, _ = shell.display_formatter.format(runner)
    assert "application/vnd.jupyter.widget-view+json" not in before
    assert register_display(shell) is True
    data, _ = shell.display_formatter.format(runner)
    assert "application/vnd.jupyter.widget-view+json" in data
    assert data["text/plain"].startswith("Live view of a TaskRunner")  # never a stale repr
    assert "TaskRunner" in data["text/html"]  # the table stays for frontends without widgets


def test_register_display_needs_a_kernel() -> None:
    shell = _shell(kernel=None)
    assert register_display(shell) is False
    data, _ = shell.display_formatter.format(TaskRunner())
    assert "application/vnd.jupyter.widget-view+json" not in data


def test_watch_displays_and_returns_the_view(capsys: pytest.CaptureFixture[str]) -> None:
    runner = TaskRunner()
    w = watch(runner, max_fps=5)
    assert isinstance(w, RunnerWidget) and w.max_fps == 5
    assert "<RunnerWidget of <TaskRunner" in capsys.readouterr().out  # plain Python prints it
    w.close()


def test_a_large_run_folds_the_details_and_the_graph_fits_the_width(
    clock: MockClock
) -> None:
    from pyworkflowy_nb.notebook._static import OPEN_TABLE_ROWS

    small = TaskRunner()
    small.submit(one)
    assert make_widget(small, clock)._details.selected_index == 0  # a small run: open
    runner = TaskRunner()
    for _ in range(OPEN_TABLE_ROWS + 1):
        runner.submit(one)
    w = make_widget(runner, clock)
    assert w._details.selected_index is None
    growing = TaskRunner()
    w = make_widget(growing, clock, heartbeat=None)
    assert w._details.selected_index == 0
    for _ in range(OPEN_TABLE_ROWS + 1):
        growing.submit(one)
    w.refresh()
    assert w._details.selected_index is None  # folded once it grew past the limit
    if _dot.find_dot() is not None:
        assert '<svg style="max-width:100%;height:auto" ' in w._graph.value
