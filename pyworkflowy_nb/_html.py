"""HTML reprs for handles and runners, and the state palette every view shares.

Design decisions:

- Standard library only. The engine must import without Jupyter packages, and these reprs are
  what a notebook shows for a handle or runner even when ipywidgets or Graphviz are absent.
- One palette, :data:`STATE_STYLES`, used by these tables, the DOT renderer and the tests, so a
  state never looks different in two places. It is the Okabe-Ito set, chosen to stay
  distinguishable under the common colour-vision deficiencies; each state also carries a glyph
  so that colour is never the only cue, and its text colour keeps WCAG AA contrast (>= 4.5).
- ``restored`` is not a :class:`TaskStatus`: it is a completed handle whose value came from a
  checkpoint. Views show it apart from ``completed`` because "did this actually run?" is the
  first question after a resume. ``cached`` likewise is a completed handle whose value came
  from the result cache (a lighter green than ``completed``: same outcome, no run).
- Views work on a :class:`NodeSnapshot` taken once per redraw, not on live handles: the run
  keeps mutating handles on its own thread, and one consistent picture is easier to reason
  about than fields read at slightly different instants.
- Tables are capped (:data:`TABLE_ROW_LIMIT`); the interesting rows (failures, work in flight)
  come first so that the cap hides only the boring ones.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._handle import TaskHandle
    from ._run import TaskRunner

__all__ = [
    "STATES",
    "STATE_STYLES",
    "TABLE_ROW_LIMIT",
    "NodeSnapshot",
    "StateStyle",
    "counts_html",
    "display_key",
    "format_duration",
    "handle_html",
    "nodes_table_html",
    "progress_text",
    "runner_html",
    "snapshot_handles",
    "state_of",
]


@dataclass(frozen=True, slots=True)
class StateStyle:
    """How one state is drawn: fill and text colour, a glyph, and whether to stress the border."""

    fill: str
    font: str
    glyph: str
    emphasis: bool = False


#: Display states, in the order views list them.
STATES: tuple[str, ...] = (
    "pending",
    "ready",
    "running",
    "retrying",
    "completed",
    "restored",
    "cached",
    "failed",
    "skipped",
    "cancelled",
)

STATE_STYLES: Mapping[str, StateStyle] = MappingProxyType(
    {
        "pending": StateStyle(fill="#d9d9d9", font="#000000", glyph="○"),
        "ready": StateStyle(fill="#f5f5f5", font="#000000", glyph="◌"),
        "running": StateStyle(fill="#56b4e9", font="#000000", glyph="▶"),
        "retrying": StateStyle(fill="#e69f00", font="#000000", glyph="↻"),
        "completed": StateStyle(fill="#009e73", font="#000000", glyph="✓"),
        "restored": StateStyle(fill="#0072b2", font="#ffffff", glyph="⟲"),
        "cached": StateStyle(fill="#a6dcc8", font="#000000", glyph="◆"),
        "failed": StateStyle(fill="#d55e00", font="#000000", glyph="✗", emphasis=True),
        "skipped": StateStyle(fill="#f0e442", font="#000000", glyph="↷"),
        "cancelled": StateStyle(fill="#cc79a7", font="#000000", glyph="⊘"),
    }
)

#: Rows shown in a runner table before the rest is summarised in one line.
TABLE_ROW_LIMIT = 200

# Failures first, then what is moving, then the rest: the order in which a user scans a table.
_TABLE_ORDER = {
    s: i
    for i, s in enumerate(
        ("failed", "retrying", "running", "cancelled", "skipped", "ready", "pending", "completed",
         "restored", "cached")
    )
}
_ERROR_CHARS = 300


def state_of(handle: TaskHandle[Any]) -> str:
    """The display state of *handle*: its status value, ``"restored"`` or ``"cached"``."""
    status = handle.status
    value = str(getattr(status, "value", status))
    if value == "completed":
        if getattr(handle, "restored", False):
            return "restored"
        if getattr(handle, "cached", False):
            return "cached"
    return value


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    """What a view needs to know about one handle at one instant."""

    key: str
    name: str
    state: str
    attempts: int
    duration: float | None  # for a running handle: time since it started
    error: str | None
    parents: tuple[str, ...]
    started_at: float | None = None
    finished_at: float | None = None
    progress: float | None = None  # the latest update_progress() fraction, 0..1
    progress_message: str | None = None


def display_key(key: str) -> str:
    """*key* as shown in views: tasks defined in a notebook or script lose the ``__main__.``."""
    return key.removeprefix("__main__.")


def _error_text(exc: BaseException | None) -> str | None:
    if exc is None:
        return None
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def snapshot_handles(
    handles: Iterable[TaskHandle[Any]], *, now: float | None = None
) -> tuple[NodeSnapshot, ...]:
    """Freeze the fields views need from each handle (safe to call while a run goes on)."""
    if now is None:
        now = time.time()
    out = []
    for h in handles:
        started = h.started_at
        finished = h.finished_at
        if started is not None and finished is not None:
            duration: float | None = max(0.0, finished - started)
        elif started is not None:
            duration = max(0.0, now - started)
        else:
            duration = None
        report = getattr(h, "progress", None)
        out.append(
            NodeSnapshot(
                key=h.key,
                name=h.name,
                state=state_of(h),
                attempts=h.attempts,
                duration=duration,
                error=_error_text(h._exception),
                parents=tuple(p.key for p in h.parents),
                started_at=started,
                finished_at=finished,
                progress=None if report is None else report.fraction,
                progress_message=None if report is None else report.message,
            )
        )
    return tuple(out)


def progress_text(node: NodeSnapshot, limit: int = 40) -> str:
    """``"42% · message"`` for a node that reported progress and is still going, else ``""``."""
    if node.progress is None or node.state not in ("running", "retrying"):
        return ""
    text = f"{node.progress * 100:.0f}%"
    if node.progress_message:
        text += f" · {_truncate(node.progress_message, limit)}"
    return text


def format_duration(seconds: float | None) -> str:
    """A short human duration: ``"340 ms"``, ``"2.3 s"``, ``"4m 05s"``, ``"1h 02m"``."""
    if seconds is None:
        return "–"
    if seconds < 1.0:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60.0:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def _badge(state: str, text: str | None = None) -> str:
    style = STATE_STYLES.get(state)
    if style is None:  # a state this palette does not know: show it plainly rather than fail
        return html.escape(text or state)
    return (
        f'<span class="wfy-badge wfy-{state}" style="background:{style.fill};'
        f"color:{style.font};border-radius:3px;padding:0 4px;white-space:nowrap"
        f'">{style.glyph} {html.escape(text or state)}</span>'
    )


def counts_html(nodes: Sequence[NodeSnapshot]) -> str:
    """One line of badges, a count per state that occurs (e.g. ``✓ 12 completed``)."""
    counts = Counter(n.state for n in nodes)
    order = list(STATES) + sorted(s for s in counts if s not in STATE_STYLES)
    parts = [_badge(s, f"{counts[s]} {s}") for s in order if counts.get(s)]
    return " ".join(parts) if parts else "<i>no tasks</i>"


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_TABLE_STYLE = "border-collapse:collapse;font-size:12px;text-align:left"
_CELL = "padding:1px 6px;border-bottom:1px solid #e0e0e0;text-align:left;vertical-align:top"


def nodes_table_html(nodes: Sequence[NodeSnapshot], *, limit: int = TABLE_ROW_LIMIT,
                     running_times: bool = True) -> str:
    """A table of task, state, attempts, duration and error, interesting rows first.

    ``running_times=False`` leaves the duration of unfinished tasks blank, for a view that
    shows them elsewhere and does not want to resend the table every tick.
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit!r}")
    ordered = sorted(
        enumerate(nodes), key=lambda item: (_TABLE_ORDER.get(item[1].state, 99), item[0])
    )
    rows = []
    for _, n in ordered[:limit]:
        error = html.escape(_truncate(n.error, _ERROR_CHARS)) if n.error else ""
        took = n.duration if running_times or n.finished_at is not None else None
        rows.append(
            f'<tr data-key="{html.escape(n.key)}">'
            f'<td style="{_CELL}"><code>{html.escape(display_key(n.key))}</code></td>'
            f'<td style="{_CELL}">{_badge(n.state)} {html.escape(progress_text(n))}</td>'
            f'<td style="{_CELL}">{n.attempts}</td>'
            f'<td style="{_CELL}">{format_duration(took)}</td>'
            f'<td style="{_CELL}">{error}</td></tr>'
        )
    more = len(nodes) - min(len(nodes), limit)
    if more:
        rows.append(
            f'<tr><td colspan="5" style="{_CELL}"><i>… and {more} more '
            f"(not shown)</i></td></tr>"
        )
    head = "".join(
        f'<th style="{_CELL}">{h}</th>' for h in ("task", "state", "attempts", "duration", "error")
    )
    return (
        f'<table class="wfy-table" style="{_TABLE_STYLE}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def handle_html(handle: TaskHandle[Any]) -> str:
    """The notebook repr of one handle: a small key/value table."""
    (node,) = snapshot_handles([handle], now=handle.runner.clock.time())
    parents = ", ".join(
        f"<code>{html.escape(display_key(k))}</code>" for k in node.parents[:20]
    )
    if len(node.parents) > 20:
        parents += f", … ({len(node.parents) - 20} more)"
    fields = [
        ("task", f"<code>{html.escape(node.key)}</code>"),
        ("state", _badge(node.state)),
        ("attempts", str(node.attempts)),
        ("duration", format_duration(node.duration)),
        ("depends on", parents or "–"),
    ]
    if node.error:
        fields.append(("error", html.escape(_truncate(node.error, _ERROR_CHARS))))
    rows = "".join(
        f'<tr><th style="{_CELL}">{k}</th><td style="{_CELL}">{v}</td></tr>' for k, v in fields
    )
    return (
        f'<div class="wfy-handle"><table style="{_TABLE_STYLE}">'
        f"<caption style=\"text-align:left\"><b>TaskHandle</b></caption>{rows}</table></div>"
    )


def runner_html(runner: TaskRunner) -> str:
    """The notebook repr of a runner: counts per state and the table of its handles."""
    nodes = snapshot_handles(runner.handles, now=runner.clock.time())
    status = "running" if runner.running else "idle"
    return (
        f'<div class="wfy-runner"><div><b>TaskRunner</b> · {len(nodes)} tasks · {status}</div>'
        f"<div style=\"margin:4px 0\">{counts_html(nodes)}</div>"
        f"{nodes_table_html(nodes)}</div>"
    )
