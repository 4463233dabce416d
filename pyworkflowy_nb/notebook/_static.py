"""The static picture of a run: header, DAG and details table as plain HTML with an inline SVG.

Design decisions:

- A live widget exists only while its kernel does: a saved notebook, nbconvert, GitHub or a
  reloaded page show "model not found" where it was. So when a ``%wfy_run`` ends, its output is
  replaced by a mime bundle that needs nothing but an HTML renderer: ``text/html`` (header,
  Graphviz SVG inline, table), ``image/svg+xml`` (the graph alone, for renderers that drop
  inline SVG from HTML) and a ``text/plain`` summary that says what happened, never a stale
  object repr.
- The pieces (header, graph, table) are built by the same functions the live widget uses, so
  the saved picture and the last live frame look the same; the browser test finds the nodes
  of either by the same ids.
- Past :data:`OPEN_TABLE_ROWS` rows the details start folded (an HTML ``<details>``), with
  failures and running tasks first: a 500-task run would otherwise be a page of table.
- Everything here is a pure function of a snapshot; nothing touches the runner's thread.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence

from ..display import (
    STATE_STYLES,
    STATES,
    NodeSnapshot,
    counts_html,
    display_key,
    format_duration,
    nodes_table_html,
    progress_text,
)
from . import _dot

__all__ = [
    "OPEN_TABLE_ROWS",
    "details_html",
    "graph_html",
    "header_html",
    "notice_html",
    "outcome",
    "render_graph",
    "run_span",
    "running_html",
    "static_bundle",
    "summary_text",
    "wrap_svg",
]

#: Above this many tasks the details table starts folded.
OPEN_TABLE_ROWS = 40

# The graph never makes the output wider than the page: a wide DAG is scaled down to the width
# (its text stays selectable, and the browser zooms), a tall one scrolls inside its own box.
_GRAPH_STYLE = "overflow:auto;max-height:520px;max-width:100%"
_SVG_FIT = "<svg style=\"max-width:100%;height:auto\" "


def notice_html(text: str) -> str:
    """A small framed note (no Graphviz, a failed layout) in place of the picture."""
    style = STATE_STYLES["retrying"]
    return (
        f'<div class="wfy-notice" style="border-left:4px solid {style.fill};padding:4px 8px;'
        f'margin:4px 0">{html.escape(text)}</div>'
    )


def run_span(nodes: Sequence[NodeSnapshot], now: float, *, running: bool,
             started: float | None = None, finished: float | None = None) -> float | None:
    """Seconds from the run's (or first task's) start to its end, or to *now* while running."""
    starts = [n.started_at for n in nodes if n.started_at is not None]
    start = started if started is not None else min(starts, default=None)
    if start is None:
        return None
    if running:
        end = now
    elif finished is not None:
        end = finished
    else:
        end = max((n.finished_at for n in nodes if n.finished_at is not None), default=now)
    return max(0.0, end - start)


def header_html(nodes: Sequence[NodeSnapshot], status: str, elapsed: float | None) -> str:
    """Task count, status, elapsed time and one badge per state."""
    shown = format_duration(elapsed) if elapsed is not None else "–"
    return (
        f'<div class="wfy-header" data-status="{html.escape(status)}" style="font-size:13px">'
        f"<b>{len(nodes)} tasks</b> · {html.escape(status)} · "
        f'elapsed <span class="wfy-elapsed">{shown}</span>'
        f'<div style="margin-top:3px">{counts_html(nodes)}</div></div>'
    )


def graph_html(nodes: Sequence[NodeSnapshot], *, summarise_above: int = _dot.SUMMARY_THRESHOLD
               ) -> tuple[str, str | None]:
    """``(html, svg)`` for the DAG of *nodes*; on trouble the html is a notice and svg None."""
    if not nodes:
        return "", None
    return render_graph(_dot.build_dot(nodes, summarise_above=summarise_above))


def render_graph(source: str) -> tuple[str, str | None]:
    """``(html, svg)`` for DOT *source*; on trouble the html is a notice and svg None."""
    try:
        svg = _dot.render_svg(source)
    except _dot.GraphvizNotFoundError as exc:
        return notice_html(f"No DAG picture: {exc}. The table below lists every task."), None
    except _dot.RenderError as exc:
        return notice_html(f"The DAG picture could not be drawn ({exc}); the table below "
                           "lists every task."), None
    return wrap_svg(svg), svg


def wrap_svg(svg: str) -> str:
    """The graph box around a rendered SVG: fits the width, scrolls when tall."""
    fitted = svg.replace("<svg ", _SVG_FIT, 1)
    return f'<div class="wfy-graph" style="{_GRAPH_STYLE}">{fitted}</div>'


def details_html(nodes: Sequence[NodeSnapshot], *, open_rows: int = OPEN_TABLE_ROWS) -> str:
    """The details table in a ``<details>`` that starts open only for small runs."""
    opened = " open" if len(nodes) <= open_rows else ""
    return (
        f'<details class="wfy-details"{opened}><summary style="cursor:pointer">Details '
        f"({len(nodes)} tasks)</summary>{nodes_table_html(nodes)}</details>"
    )


_RUNNING_SHOWN = 8


def running_html(nodes: Sequence[NodeSnapshot]) -> str:
    """One line naming the tasks in flight with their times and progress ("" when none)."""
    going = [n for n in nodes if n.state in ("running", "retrying")]
    if not going:
        return ""
    going.sort(key=lambda n: -(n.duration or 0.0))  # the longest-running first
    parts = []
    for n in going[:_RUNNING_SHOWN]:
        glyph = STATE_STYLES[n.state].glyph
        extra = progress_text(n)
        parts.append(
            f'<span class="wfy-running-task" data-key="{html.escape(n.key)}">{glyph} '
            f"<code>{html.escape(display_key(n.key))}</code> {format_duration(n.duration)}"
            f"{' · ' + html.escape(extra) if extra else ''}</span>"
        )
    more = len(going) - _RUNNING_SHOWN
    if more > 0:
        parts.append(f"<i>+{more} more</i>")
    return f'<div class="wfy-clock" style="font-size:12px">{" · ".join(parts)}</div>'


def outcome(nodes: Sequence[NodeSnapshot]) -> str:
    """How a finished run ended: "failed", "cancelled" or "completed"."""
    states = {n.state for n in nodes}
    if "failed" in states:
        return "failed"
    if "cancelled" in states:
        return "cancelled"
    return "completed"


def summary_text(nodes: Sequence[NodeSnapshot], elapsed: float | None) -> str:
    """One line for ``text/plain``: what the run did, in words."""
    counts = Counter(n.state for n in nodes)
    parts = [f"{counts[s]} {s}" for s in STATES if counts.get(s)]
    took = f", took {format_duration(elapsed)}" if elapsed is not None else ""
    return (f"wfy run {outcome(nodes)}: {len(nodes)} tasks"
            f"{' (' + ', '.join(parts) + ')' if parts else ''}{took}")


def static_bundle(nodes: Sequence[NodeSnapshot], *, elapsed: float | None,
                  extra_html: str = "",
                  summarise_above: int = _dot.SUMMARY_THRESHOLD) -> dict[str, str]:
    """The mime bundle that stands for a finished run in a saved notebook."""
    status = outcome(nodes)
    graph, svg = graph_html(nodes, summarise_above=summarise_above)
    body = (
        f'<div class="wfy-run-static" data-status="{status}" style="width:100%">'
        f"{header_html(nodes, 'run ' + status, elapsed)}{graph}"
        f"{details_html(nodes)}{extra_html}</div>"
    )
    bundle = {"text/html": body, "text/plain": summary_text(nodes, elapsed)}
    if svg is not None:
        bundle["image/svg+xml"] = svg
    return bundle
