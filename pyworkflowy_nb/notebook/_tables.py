"""Plain-text output of the magics: aligned tables, clock times, the session's status and settings.

The one place the notebook layer formats text: the session returns values, the magics print
what these functions make of them.

Durations are written with the engine's :func:`pyworkflowy_nb.display.format_duration`, the
same words the widget and the static pictures use.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from ..display import format_duration

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["config_lines", "status_rows", "table", "timestamp"]


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


def config_lines(session: Session) -> list[str]:
    """Human-readable lines about the session's settings, for %wfy_status and %wfy_config."""
    from ._loop import nest_asyncio_enabled

    lines = []
    path = session.checkpoint_path
    if path is None:
        lines.append("checkpoint: off")
    else:
        state = "" if path.exists() else " (nothing stored yet)"
        lines.append(f"checkpoint: {path}{state}")
    if session.max_workers is not None:
        lines.append(f"max workers: {session.max_workers}")
    dask = session.dask.describe()
    if dask is not None:
        lines.append(dask)
    if nest_asyncio_enabled():
        lines.append("loop mode: nest_asyncio (runs happen on the kernel's own loop)")
    return lines

def status_rows(session: Session) -> list[dict[str, str]]:
    """One row per defined task: options and the latest outcome, for %wfy_status."""
    rows = []
    for cell in session.tasks.values():
        res = session.results.get(cell.name)
        live = None
        run = session.last_run
        if run is not None and cell.name in run.handles and not run.done:
            live = run.handles[cell.name]
        status = "not run"
        attempts = took = ""
        if live is not None:
            status = live.status.value
            attempts = str(live.attempts) if live.attempts else ""
        elif res is not None:
            status = res.status.value + (" (restored)" if res.restored else "")
            attempts = str(res.attempts) if res.attempts else ""
            took = "" if res.duration is None else format_duration(res.duration)
        rows.append({
            "task": cell.name,
            "after": ", ".join(cell.after) or "-",
            "backend": cell.backend,
            "status": status,
            "attempts": attempts,
            "duration": took,
            "version": cell.version[:8],
        })
    return rows
