"""The session DAG as a graph: run order, cycles, and what lies up- and downstream of a cell.

Pure functions over a ``{name: CellTask}`` snapshot, in definition order; the session takes
the snapshot under its lock and decides nothing here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..validation import close_matches, did_you_mean
from ._cells import CellTask
from ._exceptions import SessionCycleError as SessionCycleError
from ._exceptions import SessionError

__all__ = [
    "SessionCycleError",
    "downstream",
    "find_cycle",
    "plan",
    "undefined_after",
    "unknown_task",
    "upstream_defined",
]

_NO_TASKS = "no tasks are defined yet: write a cell that starts with `%%task NAME`"


def unknown_task(tasks: Mapping[str, CellTask], name: str, needed_by: str | None = None
                 ) -> str:
    """The message for a task ``name`` that is not among ``tasks``, with a likely fix."""
    known = list(tasks)
    hint = did_you_mean(name, known)
    listed = ", ".join(known) if known else "none yet"
    if needed_by is not None:
        # A near miss is a typo in the --after line; no near name means a cell not run yet.
        fix = (f"fix the name on the `%%task {needed_by}` line" if hint
               else f"run the `%%task {name}` cell first")
        return (
            f"task {needed_by!r} runs --after {name!r}, which is not defined{hint}: {fix} "
            f"(defined tasks: {listed})"
        )
    return f"unknown task {name!r}{hint}; defined tasks: {listed}"


def undefined_after(tasks: Mapping[str, CellTask], name: str) -> list[str]:
    """Warnings for each ``--after`` name of task ``name`` that is not defined (yet)."""
    cell = tasks[name]
    notes = []
    for parent in cell.after:
        if parent in tasks:
            continue
        close = close_matches(parent, [n for n in tasks if n != name], n=3)
        if close:
            names = " or ".join(repr(c) for c in close)
            notes.append(
                f"task {name!r} runs --after {parent!r}, which is not defined: did you mean "
                f"{names}? Fix the `%%task {name}` line, or %wfy_run will refuse it"
            )
        else:
            notes.append(
                f"task {name!r} runs --after {parent!r}, which is not defined yet: run the "
                f"`%%task {parent}` cell before %wfy_run"
            )
    return notes


def plan(tasks: Mapping[str, CellTask], names: Sequence[str] | None = None) -> list[CellTask]:
    """The named tasks (all when empty) plus everything upstream, in topological order.

    Ties are broken by definition order, so a plan is deterministic.
    """
    if not tasks:
        raise SessionError(_NO_TASKS)
    targets = list(names) if names else list(tasks)
    for n in targets:
        if n not in tasks:
            raise SessionError(unknown_task(tasks, n))
    needed: set[str] = set()
    stack = list(targets)
    while stack:
        n = stack.pop()
        if n in needed:
            continue
        needed.add(n)
        for parent in tasks[n].after:
            if parent not in tasks:
                raise SessionError(unknown_task(tasks, parent, needed_by=n))
            stack.append(parent)
    order = [n for n in tasks if n in needed]
    position = {n: i for i, n in enumerate(order)}
    waiting = {n: len(tasks[n].after) for n in order}
    children: dict[str, list[str]] = {n: [] for n in order}
    for n in order:
        for parent in tasks[n].after:
            children[parent].append(n)
    ready = sorted((n for n in order if waiting[n] == 0), key=position.__getitem__)
    planned: list[CellTask] = []
    while ready:
        n = ready.pop(0)
        planned.append(tasks[n])
        for child in children[n]:
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
                ready.sort(key=position.__getitem__)
    if len(planned) != len(order):  # only possible if definitions changed under us
        stuck = next(n for n in order if waiting[n])
        cycle = find_cycle(tasks, stuck) or [stuck]
        raise SessionCycleError(
            f"the tasks form a dependency cycle: {' -> '.join(cycle)}", cycle=tuple(cycle)
        )
    return planned


def find_cycle(tasks: Mapping[str, CellTask], start: str) -> list[str] | None:
    """A path ``start -> ... -> start`` along defined ``after`` edges, or None."""
    # Iterative DFS: a long chain of cells must not hit the recursion limit.
    path: list[str] = [start]
    iters = [iter(tasks[start].after)]
    done: set[str] = set()
    while iters:
        nxt = next(iters[-1], None)
        if nxt is None:
            iters.pop()
            done.add(path.pop())
            continue
        if nxt == start:
            return [*path, start]
        if nxt in done or nxt in path or nxt not in tasks:
            continue
        path.append(nxt)
        iters.append(iter(tasks[nxt].after))
    return None


def downstream(tasks: Mapping[str, CellTask], name: str) -> list[str]:
    """``name`` and every defined task that (transitively) runs after it."""
    children: dict[str, list[str]] = {}
    for cell in tasks.values():
        for parent in cell.after:
            children.setdefault(parent, []).append(cell.name)
    seen = {name}
    stack = [name]
    while stack:
        for child in children.get(stack.pop(), ()):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return [n for n in tasks if n in seen]


def upstream_defined(tasks: Mapping[str, CellTask], name: str) -> bool:
    """Whether ``name`` and everything it runs after are all defined."""
    stack = [name]
    seen: set[str] = set()
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        if n not in tasks:
            return False
        seen.add(n)
        stack.extend(tasks[n].after)
    return True
