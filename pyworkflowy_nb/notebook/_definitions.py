"""The definitions registry: ``%%task`` cells checked and compiled, kept by name, planned.

Design decisions:
- A definition is checked completely before it replaces anything: a bad name, option or
  backend, a cycle, or a syntax error leaves the previous definition of the task in place.
- Edges may name tasks that are not defined yet (after a kernel restart cells are re-run in any
  order); only a cycle among defined tasks is refused, when the cell that would close it runs.
- The registry keeps definition order (ties in a plan follow it) and hands out snapshots taken
  under its lock, so a run plans over one consistent set of definitions while cells go on
  being redefined.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

from ..validation import check_optional_seconds
from ._cells import (
    CellTask,
    cell_version,
    check_name,
    compile_cell,
    referenced_names,
    register_source,
    resolve_backend,
    to_python,
)
from ._exceptions import SessionCycleError, SessionError
from ._plan import find_cycle, plan, unknown_task

__all__ = ["Definitions", "new_cell"]


def new_cell(shell: Any, name: str, source: str, after: Iterable[str], retries: int,
             timeout: float | None, backend: str | None, cache: bool = False) -> CellTask:
    """The checked, compiled definition of task ``name`` whose body is ``source``."""
    check_name(name)
    edges: list[str] = []
    for a in after:
        if isinstance(a, str) and "," in a:
            raise SessionError(
                f"--after takes task names separated by spaces, not commas: write "
                f"--after {' '.join(p for p in a.split(',') if p)} (got {a!r})"
            )
        check_name(a, "--after task name")
        if a not in edges:
            edges.append(a)
    if name in edges:
        raise SessionCycleError(
            f"task {name!r} cannot run --after itself; remove {name!r} from --after",
            cycle=(name, name),
        )
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise SessionError(f"--retries must be a whole number >= 0, got {retries!r}")
    try:
        timeout = check_optional_seconds("--timeout", timeout, above=True,
                                         fix="leave --timeout out for no timeout")
    except (TypeError, ValueError) as exc:
        raise SessionError(str(exc)) from None
    code = to_python(shell, source)
    filename = f"<wfy-task {name}>"
    body, last, is_async = compile_cell(code, filename)
    register_source(filename, code)
    resolved = resolve_backend(name, backend, is_async)
    return CellTask(
        name=name, source=source, code=code, after=tuple(edges), retries=retries,
        timeout=timeout, backend=resolved, version=cell_version(source),
        is_async=is_async, filename=filename, body=body, last=last,
        refs=tuple(sorted(referenced_names(body, last) - set(edges))),
        cache=cache,
    )


class Definitions:
    """The session's cell definitions by name, in definition order."""

    def __init__(self) -> None:
        self._tasks: dict[str, CellTask] = {}
        self._lock = threading.RLock()

    def snapshot(self) -> dict[str, CellTask]:
        """A copy of the current definitions, in definition order."""
        with self._lock:
            return dict(self._tasks)

    def add(self, cell: CellTask) -> None:
        """Define or redefine ``cell.name``; refused (the old definition kept) on a cycle."""
        name = cell.name
        with self._lock:
            trial = dict(self._tasks)
            trial[name] = cell
            cycle = find_cycle(trial, name)
            if cycle:
                path = " -> ".join(cycle)
                raise SessionCycleError(
                    f"task {name!r} would close a dependency cycle ({path}, where 'a -> b' means "
                    f"a runs --after b); the previous definition of {name!r} is kept",
                    cycle=tuple(cycle),
                )
            self._tasks[name] = cell

    def forget(self, names: Sequence[str] | None = None) -> list[str]:
        """Drop the named definitions (all when ``names`` is None); return what was dropped."""
        with self._lock:
            if names is None:
                dropped = list(self._tasks)
                self._tasks.clear()
                return dropped
            for n in names:
                if n not in self._tasks:
                    raise SessionError(unknown_task(self._tasks, n))
            for n in names:
                del self._tasks[n]
            return list(names)

    def plan(self, names: Sequence[str] | None = None) -> list[CellTask]:
        """The named tasks (all when empty) plus everything upstream, in the order they run
        (ties in definition order)."""
        return plan(self.snapshot(), names)
