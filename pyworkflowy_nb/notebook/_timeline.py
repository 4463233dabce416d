"""The timeline of a run: one row per task, its waits and attempts on a shared time axis.

Design decisions:

- Built from the runner's events, not from the handles: a handle keeps only its last start and
  end, while the events tell every attempt, the retry waits between them and how long a task
  waited (for its dependencies or a free slot) before its first start.
- :class:`TimelineRecorder` only appends ``(time, kind, attempt)`` per key, without a lock; the
  picture is computed when asked, so a run's thread never pays for drawing. A recorder attached
  in the middle of a run has not seen the earlier events; for those tasks the handle's own
  start and end make a one-segment row.
- The picture is plain SVG written here (no Graphviz): bars on a time axis are simple, and the
  same string goes in the live widget's tab and in the saved static picture. It scales to the
  output's width through its ``viewBox``. Past :data:`MAX_ROWS` tasks only the first rows (by
  first start) are drawn, with a note saying how many were left out.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..display import STATE_STYLES, display_key, format_duration, state_of

__all__ = ["MAX_ROWS", "Segment", "TimelineRecorder", "TimelineRow", "timeline_svg"]

MAX_ROWS = 60

_TERMINAL = {"completed", "failed", "cancelled", "skipped", "restored"}
_WAIT_FILL = "#eeeeee"
_RETRY_WAIT_FILL = "#f6dfb0"


@dataclass(frozen=True, slots=True)
class Segment:
    """A stretch of one task's time: ``kind`` is "wait", "retry-wait" or "attempt"."""

    kind: str
    start: float
    end: float
    state: str  # the colour: a display state (attempts) or the kind (waits)
    attempt: int = 0


@dataclass(frozen=True, slots=True)
class TimelineRow:
    key: str
    state: str
    attempts: int
    segments: tuple[Segment, ...]

    @property
    def start(self) -> float:
        return self.segments[0].start if self.segments else float("inf")


class TimelineRecorder:
    """Listens to ``runner`` and keeps each task's events, for :meth:`rows`."""

    def __init__(self, runner: Any, clock: Callable[[], float] = time.time, *,
                 listen: bool = True) -> None:
        self.runner = runner
        self._clock = clock
        self._lock = threading.Lock()
        #: ``(time, kind, attempt)`` per task key. With ``listen=False`` the owner feeds it
        #: (the widget does, from its own listener, to save the bus a call per event).
        self.log: dict[str, list[tuple[float, str, int]]] = {}
        self._events = self.log
        self._unsubscribe: Callable[[], None] | None = (
            runner.subscribe(self._record) if listen else None)
        # Tasks submitted before the recorder (``%wfy_run`` submits, then shows the view) have
        # been waiting since at least now: without this a task that never starts (failed or
        # skipped because of a dependency) would have no row at all.
        attached = self._clock()
        with self._lock:
            for h in runner.handles:
                if h.started_at is None and h.key not in self._events:
                    self._events[h.key] = [(attached, "submitted", 0)]

    def _record(self, event: Any) -> None:
        # No lock on this path (it runs on the run's thread for every event): dict.setdefault
        # and list.append are atomic in CPython, and readers copy the lists first.
        handle = event.handle
        if handle is not None and event.kind != "progress":
            self._events.setdefault(handle.key, []).append(
                (event.time, event.kind, event.attempt))

    def close(self) -> None:
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()

    def rows(self, now: float | None = None) -> list[TimelineRow]:
        """One row per handle of the runner, in order of first activity."""
        now = self._clock() if now is None else now
        with self._lock:
            events = {k: list(v) for k, v in list(self._events.items())}
        out = []
        for h in self.runner.handles:
            state = state_of(h)
            segments = _segments(events.get(h.key, []), state, now)
            if not segments and h.started_at is not None:  # attached after it started
                end = h.finished_at if h.finished_at is not None else now
                segments = [Segment("attempt", h.started_at, end, state, h.attempts)]
            out.append(TimelineRow(h.key, state, h.attempts, tuple(segments)))
        out.sort(key=lambda r: r.start)
        return out


def _segments(events: Sequence[tuple[float, str, int]], final: str, now: float
              ) -> list[Segment]:
    segments: list[Segment] = []
    waiting_since: float | None = None
    wait_kind = "wait"
    attempt_start: float | None = None
    attempt = 0
    for when, kind, number in events:
        if kind == "submitted":
            waiting_since, wait_kind = when, "wait"
        elif kind == "started":
            if waiting_since is not None and when > waiting_since:
                segments.append(Segment(wait_kind, waiting_since, when, wait_kind))
            waiting_since = None
            attempt_start, attempt = when, number
        elif kind == "retrying":
            if attempt_start is not None:
                segments.append(Segment("attempt", attempt_start, when, "retrying", attempt))
            attempt_start = None
            waiting_since, wait_kind = when, "retry-wait"
        elif kind in _TERMINAL:
            if attempt_start is not None:
                segments.append(Segment("attempt", attempt_start, when, final, attempt))
            elif waiting_since is not None and when > waiting_since:
                segments.append(Segment(wait_kind, waiting_since, when, wait_kind))
            attempt_start = waiting_since = None
    if attempt_start is not None:  # still running
        segments.append(Segment("attempt", attempt_start, max(now, attempt_start), "running",
                                attempt))
    elif waiting_since is not None:
        segments.append(Segment(wait_kind, waiting_since, max(now, waiting_since), wait_kind))
    return segments


def _fill(segment: Segment) -> str:
    if segment.kind == "wait":
        return _WAIT_FILL
    if segment.kind == "retry-wait":
        return _RETRY_WAIT_FILL
    style = STATE_STYLES.get(segment.state)
    return style.fill if style is not None else "#999999"


_ROW = 18
_LABEL = 170
_WIDTH = 900
_AXIS = 22


def timeline_svg(rows: Sequence[TimelineRow], *, max_rows: int = MAX_ROWS) -> str:
    """The rows as an SVG Gantt chart that scales to its container's width."""
    drawn = [r for r in rows if r.segments][:max_rows]
    if not drawn:
        return '<div class="wfy-timeline"><i>no task has started yet</i></div>'
    t0 = min(r.segments[0].start for r in drawn)
    t1 = max(s.end for r in drawn for s in r.segments)
    span = max(t1 - t0, 1e-6)
    scale = (_WIDTH - _LABEL - 10) / span
    height = _AXIS + _ROW * len(drawn) + 4
    parts = [
        f'<svg class="wfy-timeline-svg" viewBox="0 0 {_WIDTH} {height}" width="100%" '
        f'style="max-width:{_WIDTH}px;height:auto" xmlns="http://www.w3.org/2000/svg" '
        'font-family="Helvetica,Arial,sans-serif" font-size="11">',
    ]
    for i in range(5):  # an axis with five ticks
        x = _LABEL + (_WIDTH - _LABEL - 10) * i / 4
        parts.append(f'<line x1="{x:.1f}" y1="{_AXIS - 4}" x2="{x:.1f}" y2="{height}" '
                     'stroke="#e0e0e0"/>')
        parts.append(f'<text x="{x:.1f}" y="12" text-anchor="middle" fill="#555">'
                     f"{html.escape(format_duration(span * i / 4))}</text>")
    for row_index, row in enumerate(drawn):
        y = _AXIS + row_index * _ROW
        label = display_key(row.key)
        label = label if len(label) <= 26 else label[:25] + "…"
        parts.append(f'<g class="wfy-timeline-row" data-key="{html.escape(row.key)}" '
                     f'data-state="{html.escape(row.state)}">')
        parts.append(f'<text x="4" y="{y + 12}" fill="#000">{html.escape(label)}</text>')
        for seg in row.segments:
            x = _LABEL + (seg.start - t0) * scale
            w = max(1.0, (seg.end - seg.start) * scale)
            what = (f"attempt {seg.attempt}: {seg.state}" if seg.kind == "attempt"
                    else ("waiting to retry" if seg.kind == "retry-wait" else "waiting"))
            parts.append(
                f'<rect class="wfy-seg wfy-seg-{seg.kind}" x="{x:.1f}" y="{y + 2}" '
                f'width="{w:.1f}" height="{_ROW - 5}" rx="2" fill="{_fill(seg)}" '
                f'stroke="#4d4d4d" stroke-width="0.5"><title>{html.escape(label)}: '
                f"{html.escape(what)}, {html.escape(format_duration(seg.end - seg.start))}"
                "</title></rect>"
            )
        parts.append("</g>")
    parts.append("</svg>")
    more = len([r for r in rows if r.segments]) - len(drawn)
    note = f"<div><i>… and {more} more tasks (not drawn)</i></div>" if more > 0 else ""
    return f'<div class="wfy-timeline" style="max-width:100%">{"".join(parts)}{note}</div>'
