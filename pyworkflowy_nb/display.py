"""What a picture of a run is drawn from: handle snapshots, the state palette, labels.

The runner's own HTML repr and every view of the notebook layer (the live widget, the static
picture a finished run leaves, the timeline, the Graphviz graph) are built from these, so a
state or a duration never looks different in two places:

- :func:`snapshot_handles` takes one consistent :class:`NodeSnapshot` per handle (read under
  the runner's lock): a view draws from snapshots, never from live handles that the run keeps
  changing on its own thread;
- :func:`state_of` is the state a view shows for a handle: its status, or ``"restored"`` for
  a completed handle whose value came from a checkpoint (:data:`STATES` lists them all);
- :data:`STATE_STYLES` maps each state to its :class:`StateStyle` (fill, text colour, glyph);
- :func:`format_duration`, :func:`display_key`, :func:`progress_text` are the labels;
  :func:`nodes_table_html` and :func:`counts_html` the HTML table and state counts.

Standard library only, like the rest of the engine.
"""

from __future__ import annotations

from ._html import STATE_STYLES as STATE_STYLES
from ._html import STATES as STATES
from ._html import NodeSnapshot as NodeSnapshot
from ._html import StateStyle as StateStyle
from ._html import counts_html as counts_html
from ._html import display_key as display_key
from ._html import format_duration as format_duration
from ._html import nodes_table_html as nodes_table_html
from ._html import progress_text as progress_text
from ._html import snapshot_handles as snapshot_handles
from ._html import state_of as state_of

__all__ = [
    "STATES",
    "STATE_STYLES",
    "NodeSnapshot",
    "StateStyle",
    "counts_html",
    "display_key",
    "format_duration",
    "nodes_table_html",
    "progress_text",
    "snapshot_handles",
    "state_of",
]
