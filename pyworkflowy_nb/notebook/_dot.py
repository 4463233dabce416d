"""The run's DAG as Graphviz DOT source, and DOT rendered to SVG.

Design decisions:

- :func:`build_dot` is pure: snapshot in, text out. No handle is touched and nothing is run, so
  it is cheap to test and safe to call from any thread.
- Node ids are derived from task keys by hashing (``wfy-`` + 16 hex digits). Keys can contain
  any character, hashes cannot break DOT or SVG ids, and the same key gets the same id in every
  redraw and every process; the browser test finds nodes by these ids.
- Beyond :data:`SUMMARY_THRESHOLD` nodes a picture of every node is unreadable (and slow to lay
  out), so the DAG is drawn one level up: one group node per task name, showing how many of its
  tasks are in each state as a row of coloured cells, and one edge per pair of connected groups,
  labelled with how many task edges it stands for. Grouping by name keeps the picture a sparse
  "pipeline" graph; grouping by name *and* state would connect every state of a stage to every
  state of the next and make Graphviz crawl. Past the threshold in names, or in group edges,
  the smallest groups fold into one "other tasks" node and only the heaviest edges are drawn.
- Rendering runs Graphviz's ``dot`` directly with a timeout (the ``graphviz`` package would only
  wrap the same subprocess call, without the timeout). A missing binary is an expected situation
  in a fresh environment, so it gets its own error type, :class:`GraphvizNotFoundError`, which
  the widget turns into a message, not a traceback.
"""

from __future__ import annotations

import hashlib
import html
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Sequence

from ..display import (
    STATE_STYLES,
    STATES,
    NodeSnapshot,
    StateStyle,
    display_key,
    format_duration,
    progress_text,
)

__all__ = [
    "SUMMARY_THRESHOLD",
    "GraphvizNotFoundError",
    "RenderError",
    "build_dot",
    "find_dot",
    "group_id",
    "node_id",
    "render_svg",
]

#: Above this many nodes the DAG is drawn as groups (task name x state) instead of nodes.
SUMMARY_THRESHOLD = 300

_LABEL_CHARS = 40
_TOOLTIP_CHARS = 500
_FALLBACK_STYLE = StateStyle(fill="#ffffff", font="#000000", glyph="?")
_OTHER = "(other tasks)"
# Layout time grows steeply with edges (and edge labels, which dot turns into extra nodes): a
# 50-group graph takes ~0.1 s with 150 plain edges but ~25 s with 400 labelled ones.
_MAX_SUMMARY_EDGES = 200
_MAX_LABELLED_EDGES = 100


class RenderError(RuntimeError):
    """Graphviz could not turn DOT source into SVG."""


class GraphvizNotFoundError(RenderError):
    """The Graphviz ``dot`` program is not installed (or not on PATH)."""

    def __init__(self) -> None:
        super().__init__(
            "the Graphviz 'dot' program was not found on PATH, so the DAG cannot be drawn; "
            "install Graphviz (apt-get install graphviz, brew install graphviz or "
            "conda install -c conda-forge graphviz) and run again"
        )


def node_id(key: str) -> str:
    """The DOT/SVG id of the node for task *key*: stable, and safe whatever the key contains."""
    return "wfy-" + hashlib.blake2s(key.encode("utf-8"), digest_size=8).hexdigest()


def group_id(name: str) -> str:
    """The DOT/SVG id of the group node for task *name* (summary mode)."""
    return "wfy-g-" + hashlib.blake2s(name.encode("utf-8"), digest_size=8).hexdigest()


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _quote(text: str) -> str:
    """*text* as a DOT double-quoted string whose lines are centred in a label."""
    text = _CONTROL.sub("�", text.replace("\r\n", "\n").replace("\r", "\n"))
    # Doubling backslashes first keeps DOT's label escapes (\N, \G, \l...) from firing on
    # characters that came from user data.
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _attrs(**attrs: str | None) -> str:
    return ", ".join(f"{k}={_quote(v)}" for k, v in attrs.items() if v is not None)


def _style_attrs(state: str) -> dict[str, str | None]:
    style = STATE_STYLES.get(state, _FALLBACK_STYLE)
    return {
        "fillcolor": style.fill,
        "fontcolor": style.font,
        "penwidth": "2.5" if style.emphasis else None,
        "class": f"wfy-node wfy-{state}",
    }


def _node_label(node: NodeSnapshot) -> str:
    style = STATE_STYLES.get(node.state, _FALLBACK_STYLE)
    details = [f"{style.glyph} {node.state}"]
    if node.attempts > 1:
        details.append(f"{node.attempts} attempts")
    going = progress_text(node, _LABEL_CHARS)
    if going:
        details.append(going)
    elif node.duration is not None and node.state not in ("running", "retrying"):
        # Only a finished task's time: a running one's would change the DOT source (and force
        # a new layout) every tick; the widget shows running times in its own clock line.
        details.append(format_duration(node.duration))
    return f"{_truncate(display_key(node.key), _LABEL_CHARS)}\n{' · '.join(details)}"


def _header(title: str, rankdir: str) -> list[str]:
    return [
        f"digraph {_quote(title)} {{",
        f"  graph [rankdir={rankdir}, bgcolor=\"transparent\", nodesep=0.25, ranksep=0.4];",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica,Arial,sans-serif", '
        'fontsize=10, color="#4d4d4d", margin="0.12,0.04", height=0.3];',
        '  edge [color="#7f7f7f", arrowsize=0.6];',
    ]


def _full_dot(nodes: Sequence[NodeSnapshot], rankdir: str) -> str:
    lines = _header("wfy", rankdir)
    known = {n.key for n in nodes}
    for n in nodes:
        nid = node_id(n.key)
        tooltip = n.key if not n.error else f"{n.key}\n{n.error}"
        lines.append(
            f"  {_quote(nid)} ["
            + _attrs(
                id=nid,
                label=_node_label(n),
                tooltip=_truncate(tooltip, _TOOLTIP_CHARS),
                **_style_attrs(n.state),
            )
            + "];"
        )
    for n in nodes:
        child = _quote(node_id(n.key))
        for p in n.parents:
            if p in known:  # a parent outside the snapshot (another runner) has no node here
                lines.append(f"  {_quote(node_id(p))} -> {child};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _html_text(text: str) -> str:
    """*text* escaped for a Graphviz HTML-like label (which is XML, so no control chars)."""
    return html.escape(_CONTROL.sub("\ufffd", text), quote=True)


def _group_label(name: str, count: int, states: Counter[str]) -> str:
    """An HTML-like label: the task name and count, over one coloured cell per state."""
    cells = []
    for state in (*STATES, *sorted(s for s in states if s not in STATE_STYLES)):
        n = states.get(state, 0)
        if not n:
            continue
        style = STATE_STYLES.get(state, _FALLBACK_STYLE)
        cells.append(
            f'<TD BGCOLOR="{style.fill}">'
            f'<FONT COLOR="{style.font}">{style.glyph} {n}</FONT></TD>'
        )
    return (
        '<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3" COLOR="#4d4d4d">'
        f'<TR><TD COLSPAN="{len(cells)}" BGCOLOR="#ffffff">'
        f"<B>{_html_text(_truncate(name, _LABEL_CHARS))}</B> ×{count}</TD></TR>"
        f"<TR>{''.join(cells)}</TR></TABLE>>"
    )


def _summary_dot(nodes: Sequence[NodeSnapshot], rankdir: str, threshold: int) -> str:
    sizes = Counter(n.name for n in nodes)
    if len(sizes) > threshold:
        # Too many distinct task names even for groups: keep the biggest, fold the rest.
        kept = {name for name, _ in sizes.most_common(threshold - 1)}
    else:
        kept = set(sizes)

    where: dict[str, str] = {}
    states: dict[str, Counter[str]] = {}
    for n in nodes:
        group = display_key(n.name) if n.name in kept else _OTHER
        where[n.key] = group
        states.setdefault(group, Counter())[n.state] += 1

    edges: Counter[tuple[str, str]] = Counter()
    for n in nodes:
        child = where[n.key]
        for p in n.parents:
            parent = where.get(p)
            if parent is not None and parent != child:
                edges[(parent, child)] += 1
    hidden = max(0, len(edges) - _MAX_SUMMARY_EDGES)
    shown = edges.most_common(_MAX_SUMMARY_EDGES) if hidden else list(edges.items())

    title = f"{len(nodes)} tasks in {len(states)} groups (one per task name)"
    if hidden:
        title += f"; {hidden} lighter group edges hidden"
    lines = _header("wfy-summary", rankdir)
    lines.append(f"  label={_quote(title)};")
    lines.append('  labelloc="t"; fontsize=11; fontname="Helvetica,Arial,sans-serif";')
    for group, counter in states.items():
        gid = group_id(group)
        summary = ", ".join(f"{counter[s]} {s}" for s in STATES if counter.get(s))
        lines.append(
            f"  {_quote(gid)} [shape=plain, style=\"\", "
            + _attrs(id=gid, tooltip=f"{group}: {summary}", **{"class": "wfy-group"})
            + f", label={_group_label(group, sum(counter.values()), counter)}];"
        )
    for (parent, child), count in shown:
        labelled = count > 1 and len(shown) <= _MAX_LABELLED_EDGES
        label = f" [label={_quote(str(count))}, fontsize=8]" if labelled else ""
        lines.append(f"  {_quote(group_id(parent))} -> {_quote(group_id(child))}{label};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def build_dot(
    nodes: Sequence[NodeSnapshot],
    *,
    summarise_above: int = SUMMARY_THRESHOLD,
    rankdir: str = "LR",
) -> str:
    """DOT source for the DAG of *nodes*, one node per task or, past the threshold, per group.

    Edges come from each node's ``parents``; a parent key with no node in *nodes* is ignored.
    """
    if not isinstance(summarise_above, int) or summarise_above < len(STATE_STYLES):
        raise ValueError(
            f"summarise_above must be an int >= {len(STATE_STYLES)}, got {summarise_above!r}"
        )
    if rankdir not in ("LR", "TB", "RL", "BT"):
        raise ValueError(f"rankdir must be one of 'LR', 'TB', 'RL', 'BT', got {rankdir!r}")
    if len(nodes) > summarise_above:
        return _summary_dot(nodes, rankdir, summarise_above)
    return _full_dot(nodes, rankdir)


def find_dot() -> str | None:
    """Path of the Graphviz ``dot`` program, or ``None`` (tests monkeypatch this)."""
    return shutil.which("dot")


_SVG_START = re.compile(r"<svg\b")


def render_svg(source: str, *, timeout: float = 60.0) -> str:
    """Lay out *source* with ``dot`` and return the ``<svg>`` element (no XML prologue).

    Raises :class:`GraphvizNotFoundError` when ``dot`` is missing and :class:`RenderError` when
    it fails or runs longer than *timeout* seconds.
    """
    dot = find_dot()
    if dot is None:
        raise GraphvizNotFoundError()
    try:
        proc = subprocess.run(
            [dot, "-Tsvg"],
            input=source.encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RenderError(f"Graphviz took longer than {timeout} s to lay out the DAG") from exc
    except FileNotFoundError as exc:  # removed between the lookup and the call
        raise GraphvizNotFoundError() from exc
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise RenderError(f"Graphviz failed (exit {proc.returncode}): {err[:500]}")
    svg = proc.stdout.decode("utf-8", "replace")
    m = _SVG_START.search(svg)
    if m is None:
        raise RenderError("Graphviz returned no <svg> element")
    return svg[m.start():]
