"""Plain-text output of the magics: aligned tables, durations, clock times."""

from __future__ import annotations

from datetime import datetime

__all__ = ["duration", "table", "timestamp"]


def table(rows: list[dict[str, str]]) -> str:
    """``rows`` (all with the same keys, at least one row) as columns under their keys."""
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols).rstrip()]
    for r in rows:
        lines.append("  ".join(r[c].ljust(widths[c]) for c in cols).rstrip())
    return "\n".join(lines)


def duration(seconds: float | None) -> str:
    """A short human duration ("12.3ms", "4.56s", "2.5min"); empty for None."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.1f}ms"
    if seconds < 120:
        return f"{seconds:.2f}s"
    return f"{seconds / 60:.1f}min"


def timestamp(when: datetime | None, missing: str) -> str:
    """``when`` to the second, or ``missing`` when there is no time."""
    return missing if when is None else when.strftime("%Y-%m-%d %H:%M:%S")
