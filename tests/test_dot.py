"""The state palette, the HTML reprs, DOT building (pure) and rendering through Graphviz."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pyworkflowy_nb import TaskRunner, TaskStatus, task
from pyworkflowy_nb._html import (
    STATE_STYLES,
    STATES,
    TABLE_ROW_LIMIT,
    NodeSnapshot,
    counts_html,
    display_key,
    format_duration,
    handle_html,
    nodes_table_html,
    runner_html,
    snapshot_handles,
    state_of,
)
from pyworkflowy_nb.notebook import _dot
from pyworkflowy_nb.notebook._dot import (
    SUMMARY_THRESHOLD,
    GraphvizNotFoundError,
    RenderError,
    build_dot,
    group_id,
    node_id,
    render_svg,
)

SVG = "{http://www.w3.org/2000/svg}"
needs_dot = pytest.mark.skipif(_dot.find_dot() is None, reason="Graphviz 'dot' is not installed")


def node(key: str, state: str = "completed", parents: tuple[str, ...] = (), *,
         name: str | None = None, attempts: int = 1, duration: float | None = 0.25,
         error: str | None = None) -> NodeSnapshot:
    return NodeSnapshot(key, name or key.split("(")[0], state, attempts, duration, error, parents)


def svg_nodes(svg: str) -> dict[str, ET.Element]:
    """The ``<g class="node ...">`` elements of a Graphviz SVG, by id."""
    root = ET.fromstring(svg)
    return {
        g.get("id", ""): g
        for g in root.iter(f"{SVG}g")
        if "node" in (g.get("class") or "").split()
    }


def fills(g: ET.Element) -> list[str]:
    """Fill colours of the shapes drawn for one node, in document order."""
    return [
        e.get("fill", "")
        for e in g.iter()
        if e.tag in (f"{SVG}path", f"{SVG}polygon", f"{SVG}ellipse")
    ]


def texts(g: ET.Element) -> list[str]:
    return ["".join(t.itertext()) for t in g.iter(f"{SVG}text")]


# -- the palette ------------------------------------------------------------------------------


def _luminance(colour: str) -> float:
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def test_palette_covers_every_status_plus_restored_with_distinct_fills() -> None:
    assert set(STATE_STYLES) == {s.value for s in TaskStatus} | {"restored"}
    assert set(STATES) == set(STATE_STYLES)
    fills_ = [s.fill for s in STATE_STYLES.values()]
    glyphs = [s.glyph for s in STATE_STYLES.values()]
    assert len(set(fills_)) == len(fills_)
    assert len(set(glyphs)) == len(glyphs), "colour must not be the only cue"
    assert STATE_STYLES["restored"].fill != STATE_STYLES["completed"].fill
    for s in fills_:
        assert re.fullmatch(r"#[0-9a-f]{6}", s), s  # lower case, as Graphviz writes it in SVG


@pytest.mark.parametrize("state", STATES)
def test_palette_text_is_readable_on_its_fill(state: str) -> None:
    style = STATE_STYLES[state]
    hi, lo = sorted((_luminance(style.fill), _luminance(style.font)), reverse=True)
    assert (hi + 0.05) / (lo + 0.05) >= 4.5  # WCAG AA for normal text


# -- HTML reprs on real handles ---------------------------------------------------------------


@task
def one() -> int:
    return 1


@task
def explode(x: int) -> int:
    raise ValueError(f"bad <input> {x}")


@task(on_dep_failure="skip")
def after(x: int) -> int:
    return x


def _small_run() -> TaskRunner:
    runner = TaskRunner(on_task_error="continue")
    a = runner.submit(one)
    b = runner.submit(explode, 3, depends_on=[a])
    runner.submit(after, 4, depends_on=[b])
    runner.run()
    return runner


def test_snapshot_and_state_of_real_handles() -> None:
    runner = _small_run()
    a, b, c = runner.handles
    assert [state_of(h) for h in runner.handles] == ["completed", "failed", "skipped"]
    nodes = snapshot_handles(runner.handles)
    assert [n.key for n in nodes] == [a.key, b.key, c.key]
    assert nodes[1].parents == (a.key,) and nodes[2].parents == (b.key,)
    assert nodes[1].error == "ValueError: bad <input> 3"
    assert nodes[0].error is None and nodes[0].attempts == 1
    assert nodes[0].duration is not None and nodes[0].duration >= 0


def test_state_of_shows_restored_apart_from_completed(tmp_path: Path) -> None:
    path = tmp_path / "ck"
    first = TaskRunner(checkpoint_path=str(path))
    first.submit(one)
    first.run()
    first.shutdown()
    again = TaskRunner.resume(str(path))
    h = again.submit(one)
    assert h.restored and h.status is TaskStatus.COMPLETED
    assert state_of(h) == "restored"
    assert state_of(first.handles[0]) == "completed"


def test_handle_html_escapes_and_colours() -> None:
    runner = _small_run()
    page = handle_html(runner.handles[1])
    assert STATE_STYLES["failed"].fill in page
    assert "bad &lt;input&gt; 3" in page and "<input>" not in page
    assert display_key(runner.handles[0].key) in page  # its parent
    assert "2 attempts" not in page


def test_runner_html_counts_and_rows() -> None:
    runner = _small_run()
    page = runner_html(runner)
    assert "3 tasks" in page and "idle" in page
    for state in ("completed", "failed", "skipped"):
        assert f"1 {state}" in page
        assert STATE_STYLES[state].fill in page
    assert page.count("<tr data-key=") == 3
    assert runner._repr_html_() == page  # the engine's repr is this function


def test_table_puts_failures_first_and_caps_rows() -> None:
    nodes = [node(f"ok{i}") for i in range(TABLE_ROW_LIMIT + 5)] + [
        node("broken", "failed", error="KeyError: 'x'")
    ]
    page = nodes_table_html(nodes)
    keys = re.findall(r'<tr data-key="([^"]+)"', page)
    assert keys[0] == "broken"
    assert len(keys) == TABLE_ROW_LIMIT
    assert "… and 6 more" in page
    with pytest.raises(ValueError, match="limit"):
        nodes_table_html(nodes, limit=-1)


def test_counts_html_lists_only_present_states_in_palette_order() -> None:
    page = counts_html([node("a", "failed"), node("b", "completed"), node("c", "completed")])
    assert page.index("2 completed") < page.index("1 failed")
    assert "pending" not in page
    assert "no tasks" in counts_html([])


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "–"), (0.0, "0 ms"), (0.3404, "340 ms"), (2.34, "2.3 s"), (245, "4m 05s"),
     (3720, "1h 02m")],
)
def test_format_duration(seconds: float | None, text: str) -> None:
    assert format_duration(seconds) == text


# -- DOT, per node ------------------------------------------------------------------------------


def test_node_ids_are_stable_distinct_and_safe() -> None:
    keys = ["a", "a(1)", 'we"ird\\key\n', "ünï", "a(1)#2"]
    ids = [node_id(k) for k in keys]
    assert ids == [node_id(k) for k in keys]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"wfy-[0-9a-f]{16}", i) for i in ids)
    # the same in another process (no per-process hash seed involved)
    out = subprocess.run(
        [sys.executable, "-c",
         "from pyworkflowy_nb.notebook._dot import node_id; print(node_id('a(1)'))"],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert out.stdout.strip() == node_id("a(1)")


def test_build_dot_one_node_per_task_with_state_colour_and_edges() -> None:
    nodes = [
        node("load"),
        node("clean", "failed", ("load",), attempts=3, duration=1.5, error="ValueError: no"),
        node("fit", "skipped", ("clean",), duration=None),
        node("orphan", "pending", ("not-in-snapshot",), duration=None),
    ]
    src = build_dot(nodes)
    assert src == build_dot(nodes)  # deterministic
    for n in nodes:
        start = f'  "{node_id(n.key)}" ['
        line = next(ln for ln in src.splitlines() if ln.startswith(start))
        assert f'fillcolor="{STATE_STYLES[n.state].fill}"' in line
        assert f'class="wfy-node wfy-{n.state}"' in line
    assert f'"{node_id("load")}" -> "{node_id("clean")}";' in src
    assert f'"{node_id("clean")}" -> "{node_id("fit")}";' in src
    assert src.count("->") == 2  # the unknown parent is ignored
    assert "3 attempts" in src and "1.5 s" in src
    assert 'penwidth="2.5"' in src  # failures get a heavier border, a non-colour cue


def test_build_dot_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="summarise_above"):
        build_dot([], summarise_above=2)
    with pytest.raises(ValueError, match="rankdir"):
        build_dot([], rankdir="sideways")


@needs_dot
def test_rendered_svg_has_each_node_in_its_state_colour() -> None:
    nodes = [node(f"t{i}", s, (f"t{i - 1}",) if i else ()) for i, s in enumerate(STATES)]
    svg = render_svg(build_dot(nodes))
    assert svg.startswith("<svg")
    found = svg_nodes(svg)
    for n in nodes:
        g = found[node_id(n.key)]
        assert fills(g)[0] == STATE_STYLES[n.state].fill
        assert f"wfy-{n.state}" in (g.get("class") or "")
        assert texts(g)[0] == n.key


_awkward = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), min_codepoint=1), min_size=1, max_size=30
)


@needs_dot
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(keys=st.lists(_awkward, min_size=1, max_size=4, unique=True))
@example(keys=['a\\N"b', "<&>", "x\\", "\\G \\l", "__main__.f(1)"])
def test_any_key_survives_dot_and_svg(keys: list[str]) -> None:
    nodes = [node(k, "completed", (keys[0],) if i else (), name="n") for i, k in enumerate(keys)]
    svg = render_svg(build_dot(nodes))
    found = svg_nodes(svg)  # parses as XML whatever the keys held
    assert set(found) == {node_id(k) for k in keys}
    for k in keys:
        shown = display_key(k)
        if len(shown) <= 40 and "\n" not in shown and "\r" not in shown and shown.strip() \
                and shown.isprintable():
            # Graphviz may or may not trim blanks at the ends of a label line (it kept the one
            # of "0 "), so compare without them.
            assert texts(found[node_id(k)])[0].strip() == shown.strip()


# -- DOT, summarised ---------------------------------------------------------------------------


def _pipeline(per_stage: int, states: tuple[str, ...] = ("completed", "failed", "pending")
              ) -> list[NodeSnapshot]:
    stages = ["load", "clean", "fit"]
    nodes = []
    for s, stage in enumerate(stages):
        for i in range(per_stage):
            parents = (f"{stages[s - 1]}({i})",) if s else ()
            nodes.append(node(f"{stage}({i})", states[i % len(states)], parents, name=stage))
    return nodes


def test_small_graphs_are_not_summarised() -> None:
    nodes = _pipeline(SUMMARY_THRESHOLD // 3)
    assert len(nodes) <= SUMMARY_THRESHOLD
    src = build_dot(nodes)
    assert "wfy-g-" not in src and src.count("wfy-node") == len(nodes)


def test_large_graphs_collapse_to_one_group_per_task_name() -> None:
    nodes = _pipeline(200)  # 600 nodes
    src = build_dot(nodes)
    groups = re.findall(r'^  "(wfy-g-[0-9a-f]+)" \[', src, flags=re.M)
    assert groups == [group_id("load"), group_id("clean"), group_id("fit")]
    assert "600 tasks in 3 groups" in src
    # each stage has 67 completed, 67 failed and 66 pending, each in its own coloured cell
    for state, count in (("completed", 67), ("failed", 67), ("pending", 66)):
        style = STATE_STYLES[state]
        assert src.count(f'BGCOLOR="{style.fill}"><FONT COLOR="{style.font}">'
                         f"{style.glyph} {count}</FONT>") == 3
    # 200 task edges between consecutive stages become one labelled group edge
    assert f'"{group_id("load")}" -> "{group_id("clean")}" [label="200"' in src
    assert f'"{group_id("clean")}" -> "{group_id("fit")}" [label="200"' in src
    assert src.count("->") == 2


def test_summary_folds_surplus_names_and_caps_edges() -> None:
    n = 400
    nodes = [node(f"t{i}", "completed", (f"t{i - 1}",) if i else (), name=f"name{i}")
             for i in range(n)]
    src = build_dot(nodes, summarise_above=50)
    groups = re.findall(r'^  "(wfy-g-[0-9a-f]+)" \[', src, flags=re.M)
    assert len(groups) == 50
    assert group_id("(other tasks)") in groups
    assert "×351" in src  # 400 names: 49 kept, 351 folded
    many = [node(f"x{i}", "completed", tuple(f"x{j}" for j in range(i)), name=f"s{i}")
            for i in range(40)]  # 780 distinct group edges
    capped = build_dot(many, summarise_above=39)
    assert "lighter group edges hidden" in capped
    assert capped.count("->") <= 200


@needs_dot
def test_summary_renders_with_a_cell_per_state() -> None:
    svg = render_svg(build_dot(_pipeline(150, states=STATES)))
    found = svg_nodes(svg)
    assert set(found) == {group_id(s) for s in ("load", "clean", "fit")}
    for g in found.values():
        seen = set(fills(g))
        assert {STATE_STYLES[s].fill for s in STATES} <= seen


# -- rendering ---------------------------------------------------------------------------------


def test_missing_dot_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_dot, "find_dot", lambda: None)
    with pytest.raises(GraphvizNotFoundError, match="install Graphviz") as info:
        render_svg(build_dot([node("a")]))
    assert isinstance(info.value, RenderError)


def test_dot_vanishing_after_lookup_is_the_same_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(_dot, "find_dot", lambda: str(tmp_path / "no-such-dot"))
    with pytest.raises(GraphvizNotFoundError):
        render_svg(build_dot([node("a")]))


@needs_dot
def test_broken_source_is_a_render_error() -> None:
    with pytest.raises(RenderError, match="Graphviz failed") as info:
        render_svg("digraph { a -> }")
    assert not isinstance(info.value, GraphvizNotFoundError)
