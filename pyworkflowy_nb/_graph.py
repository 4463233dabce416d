"""The dependency graph: validating ``depends_on``, wiring edges, finding cycles.

Each handle counts its unfinished parents (``_waiting``) and lists its children, so finishing a
task touches only its own edges. A node submitted with existing parents can never close a cycle;
only :func:`add_dependency` on an existing node can, and it checks with one walk over ancestors.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._handle import TaskHandle, TaskStatus
from .exceptions import CycleError

if TYPE_CHECKING:
    from ._run import TaskRunner

__all__ = ["add_dependency", "check_parents", "wire"]


def check_parents(runner: TaskRunner, depends_on: Iterable[Any] | None,
                  task_name: str) -> tuple[TaskHandle[Any], ...]:
    """Turn ``depends_on`` into a tuple of this runner's handles, or raise a clear error."""
    if depends_on is None:
        return ()
    if isinstance(depends_on, TaskHandle):
        depends_on = (depends_on,)
    try:
        parents = tuple(depends_on)
    except TypeError:
        raise TypeError(
            f"depends_on for {task_name!r} must be a list of TaskHandle, got {depends_on!r}"
        ) from None
    seen: set[int] = set()
    unique: list[TaskHandle[Any]] = []
    for dep in parents:
        if not isinstance(dep, TaskHandle):
            raise TypeError(
                f"depends_on for {task_name!r} must hold TaskHandle objects (what submit() "
                f"returns), got {dep!r} ({type(dep).__name__})")
        if dep.runner is not runner:
            raise ValueError(
                f"depends_on for {task_name!r} holds {dep.key!r}, a handle of a different "
                "runner: submit both tasks to the same TaskRunner")
        if id(dep) not in seen:  # a repeated parent is one edge, not two
            seen.add(id(dep))
            unique.append(dep)
    return tuple(unique)


def wire(handle: TaskHandle[Any]) -> TaskHandle[Any] | None:
    """Register ``handle`` with its parents; return the first parent that already ended badly."""
    failed: TaskHandle[Any] | None = None
    waiting = 0
    for parent in handle.parents:
        status = parent.status
        if status is TaskStatus.COMPLETED:
            continue
        if status.terminal:
            if failed is None:
                failed = parent
            continue
        waiting += 1
        if parent._children is None:
            parent._children = [handle]
        else:
            parent._children.append(handle)
    handle._waiting = waiting
    return failed


def add_dependency(handle: TaskHandle[Any], parent: TaskHandle[Any]) -> None:
    """Make a PENDING ``handle`` also wait for ``parent``; CycleError if that closes a loop."""
    # The new edge parent -> handle closes a cycle iff handle is already an ancestor of parent.
    path: dict[int, TaskHandle[Any] | None] = {id(parent): None}
    stack = [parent]
    while stack:
        node = stack.pop()
        if node is handle:
            cycle = [handle.key]
            back = path[id(node)]
            while back is not None:
                cycle.append(back.key)
                back = path[id(back)]
            cycle.append(handle.key)
            raise CycleError(
                f"making {handle.key!r} depend on {parent.key!r} would close the cycle "
                + " -> ".join(cycle) + "; remove one of these dependencies",
                cycle=tuple(cycle))
        for up in node.parents:
            if id(up) not in path:
                path[id(up)] = node
                stack.append(up)
    handle.parents = (*handle.parents, parent)
    if not parent.status.terminal:
        handle._waiting += 1
        if handle.status is TaskStatus.READY:
            handle.status = TaskStatus.PENDING  # waits again; its queue entry is then skipped
        if parent._children is None:
            parent._children = [handle]
        else:
            parent._children.append(handle)
