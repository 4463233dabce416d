"""The live view of a runner: its DAG drawn by Graphviz, counts, elapsed time and a details table.

Design decisions:

- Thin, in the manner of ``tqdm.notebook``: the view subscribes to the runner's events and
  renders what the handles say. It keeps no counters of its own, so it cannot disagree with the
  engine, and it can be attached to a runner at any moment (before, during or after a run).
- Rendering never happens on the run's thread. The event listener only marks the view dirty
  and, if no redraw is due yet, schedules one; redraws run on a timer thread, at most
  ``max_fps`` times a second, each one drawing the latest state (events in between coalesce).
  A change that arrives during a redraw schedules the next one, so the last state of a run is
  always drawn, "run-finished" included.
- A redraw runs in a copy of the context of the event that asked for it. In a kernel, that is
  where the notebook layer pins the executing cell's parent header (ipykernel 7 keeps it in
  context variables), so messages sent by the timer thread are filed under the right cell.
  Every frontend update goes through :meth:`RunnerWidget._push`, the one place to wrap if more
  routing is ever needed.
- While a run goes on and nothing happens (one long task), a heartbeat ticks twice a second. A
  tick sends only the header (elapsed time) and a small line of running tasks with their times
  and progress; the graph is not laid out again. Node labels carry no running time for that
  reason: the DOT source of a quiet run does not change, so neither does the picture.
- Failure to draw the picture is never a traceback: without Graphviz's ``dot`` the view says how
  to install it and still shows the table; any other rendering error is reported in the view.
- ipywidgets is imported when a view is built, not when this module is imported, so the
  notebook layer loads without it and the install hint comes exactly when it is needed.
- The graph and the run's timeline (``_timeline``) are two tabs of one box, so the timeline
  costs no space until it is asked for.
- The picture never makes the output wider than the page: the SVG scales down to the output's
  width and a tall graph scrolls in its own box. Past a few dozen tasks the details table
  starts folded (failures and running tasks first when it is opened).
- Time and timers come from one clock, the engine's (``pyworkflowy_nb.schedule.Clock``): by
  default the runner's, so a view of a runner on a ``MockClock`` redraws on virtual time, and
  tests count redraws against a ``MockClock`` instead of measuring wall time. Redraws are paced
  on that clock's ``time()``; a delay is never longer than the pacing itself needs, so a wall
  clock that jumps back cannot stall the view.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..display import NodeSnapshot, nodes_table_html, snapshot_handles
from ..schedule import Clock, SystemClock
from . import _dot, _static
from ._timeline import TimelineRecorder, timeline_svg

__all__ = ["RunnerWidget", "register_display", "watch"]

logger = logging.getLogger("pyworkflowy_nb")


class Cancellable(Protocol):
    """A timer the clock armed (``Clock.call_later``)."""

    def cancel(self) -> None: ...

_INSTALL_HINT = (
    "the live view needs ipywidgets: `pip install ipywidgets` (or `pip install pyworkflowy-nb`, "
    "which depends on it), then restart the kernel"
)


def _import_ipywidgets() -> Any:
    try:
        import ipywidgets
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return ipywidgets


class RunnerWidget:
    """A live ipywidgets view of ``runner``; display it (or use :func:`watch`) in a notebook.

    ``max_fps`` caps redraws per second (a redraw that took longer than a frame also delays
    the next one by as much); ``heartbeat`` is how often (seconds) a quiet running view
    refreshes its clocks, ``None`` to never; past ``summarise_above`` tasks the DAG is drawn as
    one group per task name. ``clock`` gives the time and the
    redraw timers; it defaults to the runner's (``pyworkflowy_nb.testing.MockClock`` in tests).

    The ipywidgets tree is :attr:`widget` (a ``VBox``): put it in your own layouts. :meth:`close`
    stops the updates and leaves the last picture in place.
    """

    def __init__(
        self,
        runner: Any,
        *,
        max_fps: float = 10.0,
        heartbeat: float | None = 0.5,
        summarise_above: int = _dot.SUMMARY_THRESHOLD,
        clock: Clock | None = None,
    ) -> None:
        if not (callable(getattr(runner, "subscribe", None)) and hasattr(runner, "handles")):
            raise TypeError(
                f"RunnerWidget needs a TaskRunner, got {type(runner).__name__}: pass the runner "
                "you submit tasks to"
            )
        if isinstance(max_fps, bool) or not isinstance(max_fps, (int, float)) or not (
            0 < max_fps <= 1000
        ):
            raise ValueError(f"max_fps must be a number in (0, 1000], got {max_fps!r}")
        if heartbeat is not None and (
            isinstance(heartbeat, bool) or not isinstance(heartbeat, (int, float)) or heartbeat <= 0
        ):
            raise ValueError(f"heartbeat must be a positive number of seconds or None, "
                             f"got {heartbeat!r}")
        _dot.build_dot([], summarise_above=summarise_above)  # validates it, with a clear error
        widgets = _import_ipywidgets()

        self.runner = runner
        self.max_fps = float(max_fps)
        self._interval = 1.0 / self.max_fps
        self._heartbeat = None if heartbeat is None else float(heartbeat)
        if clock is not None and not isinstance(clock, Clock):
            raise TypeError(f"RunnerWidget(clock=...) must be a clock such as "
                            f"pyworkflowy_nb.testing.MockClock(), got {clock!r}")
        if clock is None:
            clock = getattr(runner, "clock", None)
        self._clock: Clock = clock if isinstance(clock, Clock) else SystemClock()

        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._dirty = False
        self._due = False  # a redraw is armed (not a heartbeat) or in progress
        self._drawing = False
        self._closed = False
        self._timer: Cancellable | None = None
        self._timer_is_beat = False
        self._generation = 0  # of the armed timer; a cancelled timer that fires anyway is stale
        self._last_draw = -float("inf")
        self._last_cost = 0.0  # how long the last redraw took, on the same clock
        self._summarise_above = summarise_above
        self._run_started: float | None = None
        self._run_finished: float | None = None
        self._last_source: str | None = None
        self._last_graph = ""
        #: How many times the view was drawn (tests and benchmarks read this).
        self.draw_count = 0
        #: How many clock ticks (header and running times only) were sent.
        self.tick_count = 0

        self._header = widgets.HTML(value="")
        self._clock_line = widgets.HTML(value="")
        self._graph = widgets.HTML(value="")
        self._timeline = widgets.HTML(value="")
        self._recorder = TimelineRecorder(runner, listen=False)  # fed by _on_event
        self._log = self._recorder.log
        self._views = widgets.Tab(children=[self._graph, self._timeline], selected_index=0)
        self._views.set_title(0, "Graph")
        self._views.set_title(1, "Timeline")
        self._table = widgets.HTML(value="")
        # Folded from the start for a large run: a few hundred rows would bury the picture.
        self._folded = len(runner.handles) > _static.OPEN_TABLE_ROWS
        details = widgets.Accordion(children=[self._table],
                                    selected_index=None if self._folded else 0)
        details.set_title(0, "Details")
        self._details = details
        self.widget = widgets.VBox(
            [self._header, self._views, self._clock_line, details],
            layout=widgets.Layout(width="100%")
        )
        self.widget.add_class("wfy-runner-widget")

        self._unsubscribe: Callable[[], None] | None = runner.subscribe(self._on_event)
        # Draw what is there now, in the caller's thread: the view is never shown empty.
        with self._lock:
            self._dirty = True
        self._fire(None)

    # -- events (run's thread) ----------------------------------------------------------------
    def _on_event(self, event: Any) -> None:
        kind = event.kind
        handle = event.handle
        if handle is not None and kind != "progress":  # for the timeline (no lock: see there)
            self._log.setdefault(handle.key, []).append((event.time, kind, event.attempt))
        if kind == "run-started":
            self._run_started, self._run_finished = event.time, None
        elif kind == "run-finished":
            self._run_finished = event.time
        # Fast path, no lock: while a redraw is due or in progress it will read the state this
        # event describes (handles change before their event is emitted). Writing the flag
        # before reading ``_due`` pairs with the redraw clearing ``_due`` before it reads the
        # flag, so one of the two always notices the other.
        self._dirty = True
        if self._due:
            return
        with self._lock:
            self._request()

    def _request(self) -> None:
        """Mark dirty and make sure a redraw is due; the caller holds ``self._lock``."""
        self._dirty = True
        if self._closed or self._drawing:
            return  # a redraw in progress reschedules when it ends
        if self._timer is not None:
            if not self._timer_is_beat:
                return  # one is already due: this change joins it
            self._timer.cancel()  # a real change should not wait for the next heartbeat
            self._timer = None
        self._arm(self._next_delay(), beat=False)

    def _arm(self, delay: float, *, beat: bool) -> None:
        # The redraw runs in a copy of this context: see the module docstring.
        ctx = contextvars.copy_context()
        self._generation += 1
        generation = self._generation
        self._timer_is_beat = beat
        self._due = not beat
        self._timer = self._clock.call_later(delay,
                                             lambda: ctx.run(self._fire, generation, beat))

    # -- redrawing (timer thread) -------------------------------------------------------------
    def _fire(self, generation: int | None, beat: bool = False) -> None:
        """Draw if anything changed; *generation* is the timer's, None for a direct call.

        A heartbeat with nothing changed only ticks the clocks (header and running times):
        the graph and the table are left alone.
        """
        tick_only = False
        with self._lock:
            if generation is not None:
                if generation != self._generation or self._timer is None:
                    return  # cancelled, or replaced by a newer timer
                self._timer = None
                tick_only = beat and not self._dirty
            if self._closed or self._drawing:
                return  # the redraw in progress reschedules if anything is left
            self._due = False
            if not (self._dirty or tick_only):
                self._idle.notify_all()
                return
            self._due = True
            self._dirty = False
            self._drawing = True
            self._last_draw = self._clock.time()
        try:
            if tick_only:
                self._tick()
            else:
                self._redraw()
        except Exception:  # a view must never break anything; leave a trace in the log
            logger.exception("the live view failed to redraw")
        finally:
            with self._lock:
                self._last_cost = max(0.0, self._clock.time() - self._last_draw)
                self._drawing = False
                self._due = False  # before reading the flag: see _on_event
                if not self._closed:
                    if self._dirty:
                        self._arm(self._next_delay(), beat=False)
                    elif self._heartbeat is not None and self._is_running():
                        self._arm(self._heartbeat, beat=True)
                self._idle.notify_all()

    def _next_delay(self) -> float:
        # One frame after the last redraw began; and if that redraw took longer than half a
        # frame, as long again after it ended, so that drawing a big DAG uses at most half a
        # core and the run keeps the rest.
        spacing = max(self._interval, 2.0 * self._last_cost)
        return min(max(0.0, self._last_draw + spacing - self._clock.time()), spacing)

    def _is_running(self) -> bool:
        try:
            return bool(self.runner.running)
        except Exception:
            return False

    def _redraw(self) -> None:
        now = self._clock.time()
        nodes = snapshot_handles(self.runner.handles, now=now)
        header = self._header_html(nodes, now)
        graph = self._graph_html(nodes)
        table = nodes_table_html(nodes, running_times=False)  # the clock line has those
        if not self._folded and len(nodes) > _static.OPEN_TABLE_ROWS:
            self._folded = True  # once: a user who opens it again keeps it open
            self._details.selected_index = None
        self.draw_count += 1
        self._clock_line.value = _static.running_html(nodes)
        self._timeline.value = self.timeline_html()
        self._push(graph, header, table)

    def _tick(self) -> None:
        """Move the clocks on: the header's elapsed time and the running tasks' times."""
        now = time.time()
        nodes = snapshot_handles(self.runner.handles, now=now)
        self.tick_count += 1
        if self._views.selected_index == 1:  # the running bars grow; only when looked at
            self._timeline.value = self.timeline_html()
        self._push_tick(self._header_html(nodes, now), _static.running_html(nodes))

    def _push(self, graph: str, header: str, table: str) -> None:
        """Send a redraw to the frontend: the single place where the picture changes."""
        # ipywidgets only sends a trait whose value changed, so unchanged parts cost nothing.
        self._header.value = header
        self._graph.value = graph
        self._table.value = table

    def _push_tick(self, header: str, clock: str) -> None:
        """Send a clock tick: two small HTML values, never the graph."""
        self._header.value = header
        self._clock_line.value = clock

    # -- pieces of the picture ----------------------------------------------------------------
    def _header_html(self, nodes: tuple[NodeSnapshot, ...], now: float) -> str:
        running = self._is_running()
        elapsed = _static.run_span(nodes, now, running=running, started=self._run_started,
                                   finished=self._run_finished)
        status = "running" if running else ("finished" if self._run_finished else "idle")
        return _static.header_html(nodes, status, elapsed)

    def _graph_html(self, nodes: tuple[NodeSnapshot, ...]) -> str:
        if not nodes:
            return ""
        source = _dot.build_dot(nodes, summarise_above=self._summarise_above)
        if source == self._last_source:
            return self._last_graph
        graph, svg = _static.render_graph(source)
        if svg is not None:  # a notice is not cached: the next redraw tries again
            self._last_source, self._last_graph = source, graph
        return graph

    def _disarm(self) -> bool:
        """Cancel the pending redraw timer (lock held); True if there was one."""
        timer, self._timer = self._timer, None
        if timer is None:
            return False
        timer.cancel()
        return True

    # -- public -------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Redraw now, in the calling thread (or right after a redraw that is in progress)."""
        with self._lock:
            self._dirty = True
            if self._disarm():
                self._due = self._drawing
        self._fire(None)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every change seen so far is drawn; False if *timeout* ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while not self._closed and (self._drawing or (self._dirty and self._timer)):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self) -> None:
        """Stop following the runner; the last picture stays on screen."""
        with self._lock:
            self._closed = True
            self._disarm()
            self._idle.notify_all()
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        self._recorder.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def graph_html(self) -> str:
        """The graph as last drawn: HTML around the Graphviz SVG (or a notice without dot)."""
        return str(self._graph.value)

    def timeline_html(self) -> str:
        """The run's timeline now: one row per task, its waits and attempts (an SVG)."""
        return timeline_svg(self._recorder.rows())

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = self.widget._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):
            # Not the runner's repr: saved with the notebook, its "N pending" would go stale.
            bundle["text/plain"] = ("Live view of a TaskRunner (a widget, shown while its "
                                     "kernel runs)")
        return bundle

    def __repr__(self) -> str:
        return f"<RunnerWidget of {self.runner!r}, {self.draw_count} draws>"


def watch(runner: Any, *, max_fps: float = 10.0) -> RunnerWidget:
    """Show a live view of ``runner`` in the current notebook cell and return it."""
    view = RunnerWidget(runner, max_fps=max_fps)
    from IPython.display import display

    display(view)  # type: ignore[no-untyped-call]
    return view


def _runner_bundle(runner: Any) -> Any:
    try:
        return RunnerWidget(runner)._repr_mimebundle_()
    except ImportError:
        return None  # no ipywidgets: the runner's HTML table is shown instead


def register_display(shell: Any = None) -> bool:
    """Make ``display(runner)`` (and a runner as a cell's value) show the live view.

    Returns False when there is no kernel to register with (plain Python, terminal IPython).
    """
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False  # a terminal cannot show widgets; keep the text repr there
    from .. import TaskRunner

    shell.display_formatter.mimebundle_formatter.for_type(TaskRunner, _runner_bundle)
    return True
