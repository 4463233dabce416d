"""The static picture of a finished run, in-process: what the saved bundle holds."""

from __future__ import annotations

import pytest
from test_dot import node, svg_nodes

from pyworkflowy_nb._html import STATE_STYLES
from pyworkflowy_nb.notebook import _dot
from pyworkflowy_nb.notebook._dot import node_id
from pyworkflowy_nb.notebook._static import (
    OPEN_TABLE_ROWS,
    outcome,
    running_html,
    static_bundle,
    summary_text,
)

needs_dot = pytest.mark.skipif(_dot.find_dot() is None, reason="Graphviz 'dot' is not installed")


@needs_dot
def test_the_bundle_has_html_svg_and_a_plain_summary() -> None:
    nodes = [node("load"), node("fit", "failed", ("load",), error="ValueError: bad"),
             node("report", "skipped", ("fit",), duration=None)]
    bundle = static_bundle(nodes, elapsed=2.5)
    assert set(bundle) == {"text/html", "text/plain", "image/svg+xml"}
    page = bundle["text/html"]
    assert page.startswith('<div class="wfy-run-static" data-status="failed"')
    assert "run failed" in page and "2.5 s" in page
    shapes = svg_nodes(bundle["image/svg+xml"])
    assert set(shapes) == {node_id(k) for k in ("load", "fit", "report")}
    assert "ValueError: bad" in page
    assert "<details class=\"wfy-details\" open>" in page  # a small run: open
    assert bundle["text/plain"] == (
        "wfy run failed: 3 tasks (1 completed, 1 failed, 1 skipped), took 2.5 s")


def test_a_large_run_folds_its_table_with_failures_first() -> None:
    nodes = [node(f"t{i}") for i in range(OPEN_TABLE_ROWS)]
    nodes.append(node("broken", "failed", error="RuntimeError: x"))
    page = static_bundle(nodes, elapsed=None, summarise_above=1000)["text/html"]
    assert '<details class="wfy-details">' in page
    table = page[page.index('<table class="wfy-table"'):]
    assert table.index('data-key="broken"') < table.index('data-key="t0"')


def test_outcome_and_summary_name_what_happened() -> None:
    assert outcome([node("a"), node("b", "cancelled")]) == "cancelled"
    assert outcome([node("a", "cancelled"), node("b", "failed")]) == "failed"
    assert outcome([node("a"), node("b", "restored")]) == "completed"
    assert summary_text([node("a", "restored")], None) == (
        "wfy run completed: 1 tasks (1 restored)")


def test_without_dot_the_picture_is_a_notice_and_no_svg(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_dot, "find_dot", lambda: None)
    bundle = static_bundle([node("a")], elapsed=0.1)
    assert "image/svg+xml" not in bundle
    assert "wfy-notice" in bundle["text/html"] and "Graphviz" in bundle["text/html"]


def test_running_line_lists_the_longest_first_with_progress() -> None:
    from dataclasses import replace

    nodes = [replace(node("short", "running", duration=1.0), progress=0.5,
                     progress_message="half"),
             node("long", "running", duration=9.0), node("done")]
    line = running_html(nodes)
    assert line.index("long") < line.index("short")
    assert "50% · half" in line and "done" not in line
    assert running_html([node("done")]) == ""
    assert STATE_STYLES["running"].glyph in line
