"""Tracebacks of failed cells, cut down to the frames the user wrote.

A cell's exception travels through the engine (a pool's worker, the dispatcher, the session's
wrapper) before it reaches the cell's code; those frames say nothing about the bug. What is
kept: the ``<wfy-task NAME>`` frames and whatever the cell called, the exception lines, notes,
and chained causes (each trimmed the same way). The copy of a worker's traceback that a process
pool chains to what it sends back (``_RemoteTraceback``) is dropped too: a shipped cell's
exception carries its user part as a note already.
"""

from __future__ import annotations

import os
import sysconfig
import traceback
from collections.abc import Iterable
from pathlib import Path

__all__ = ["user_traceback"]

_PACKAGE = os.path.realpath(Path(__file__).parent.parent) + os.sep
_STDLIB = tuple(
    {os.path.realpath(sysconfig.get_paths()[k]) + os.sep for k in ("stdlib", "platstdlib")}
)


def _in_package(filename: str) -> bool:
    return not filename.startswith("<") and os.path.realpath(filename).startswith(_PACKAGE)


def _in_stdlib(filename: str) -> bool:
    if filename.startswith("<"):
        return False
    path = os.path.realpath(filename)
    # site-packages may sit inside the stdlib folder; third-party code is the user's business.
    return path.startswith(_STDLIB) and not any(
        part in ("site-packages", "dist-packages") for part in Path(path).parts
    )


def _user_frames(frames: Iterable[traceback.FrameSummary]) -> list[traceback.FrameSummary]:
    kept: list[traceback.FrameSummary] = []
    for frame in frames:
        if _in_package(frame.filename):
            continue
        # The standard library's frames count once user code is on the stack (json raising
        # inside a cell's call), not before it (concurrent.futures and asyncio calling in).
        if not kept and _in_stdlib(frame.filename):
            continue
        kept.append(frame)
    return kept


def _is_pool_copy(te: traceback.TracebackException) -> bool:
    kind = te.exc_type
    return kind is not None and (kind.__module__, kind.__qualname__) == (
        "concurrent.futures.process", "_RemoteTraceback")


def user_traceback(exc: BaseException) -> str:
    """``exc`` formatted like ``traceback.format_exception``, without the library's frames.

    An exception raised by the engine itself (a timeout, say) keeps no frame at all: it is
    shown as its exception line alone.
    """
    top = traceback.TracebackException.from_exception(exc)
    pending = [top]
    seen: set[int] = set()
    while pending:
        te = pending.pop()
        if id(te) in seen:
            continue
        seen.add(id(te))
        te.stack = traceback.StackSummary.from_list(_user_frames(te.stack))
        if te.__cause__ is not None and _is_pool_copy(te.__cause__):
            te.__cause__ = None
        pending.extend(t for t in (te.__cause__, te.__context__) if t is not None)
        pending.extend(te.exceptions or ())
    return "".join(top.format())
