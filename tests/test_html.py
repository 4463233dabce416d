"""The state palette and the HTML reprs of handles, runners and node tables (``_html``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from engine_helpers import node

from pyworkflowy_nb import TaskRunner, TaskStatus, task
from pyworkflowy_nb._html import (
    STATE_STYLES,
    STATES,
    TABLE_ROW_LIMIT,
    counts_html,
    display_key,
    format_duration,
    handle_html,
    nodes_table_html,
    runner_html,
    snapshot_handles,
    state_of,
)

# -- the palette ------------------------------------------------------------------------------


def _luminance(colour: str) -> float:
    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def test_palette_covers_every_status_plus_restored_with_distinct_fills() -> None:
    assert set(STATE_STYLES) == {s.value for s in TaskStatus} | {"restored", "cached"}
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
