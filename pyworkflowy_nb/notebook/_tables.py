"""Plain-text output of the magics: aligned tables and clock times.

Durations are written with the engine's :func:`pyworkflowy_nb.display.format_duration`, the
same words the widget and the static pictures use.
"""

from __future__ import annotations

from datetime import datetime

__all__ = ["table", "timestamp"]


def table(rows: list[dict[str, str]]) -> str:
    """``rows`` (all with the same keys, at least one row) as columns under their keys."""
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols).rstrip()]
    for r in rows:
        lines.append("  ".join(r[c].ljust(widths[c]) for c in cols).rstrip())
    return "\n".join(lines)


def timestamp(when: datetime | None, missing: str) -> str:
    """``when`` to the second, or ``missing`` when there is no time."""
    return missing if when is None else when.strftime("%Y-%m-%d %H:%M:%S")
