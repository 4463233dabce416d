"""Handles passed as arguments: found at submit, stood in for by their keys, swapped at launch.

``add.submit(a, b)`` with two handles means what it means in Dask and Prefect: ``add`` waits
for ``a`` and ``b`` and receives their results. The rules decided here:

* **Where handles are found**: directly as an argument (positional or keyword), or inside a
  ``list``, ``tuple``, ``set``, ``frozenset`` or ``dict`` (values), nested to any depth. Other
  containers (subclasses such as named tuples, dataclasses, arrays) are passed as they are:
  rebuilding arbitrary types is guesswork, and walking them would cost every submission.
* **Cost when there are none**: one ``type()`` test per argument; only containers and handles
  are walked. That keeps the 100,000-task fan-out at its speed.
* **A handle argument is a dependency** like one in ``depends_on``, with the task's
  ``on_dep_failure`` policy when it fails or is skipped. Under ``"run-anyway"`` the task
  receives the argument's *exception object* in its place (``DependencyFailedError`` for a
  skipped one, ``TaskCancelledError`` for a cancelled one): ``None`` could be a real result,
  an exception cannot be mistaken for one, and it says what went wrong.
* **Identity**: keys, fingerprints and checkpoint records see each handle argument as the
  string ``"<task KEY>"``. Keys are deterministic, so a resumed run in a new process builds
  the same stand-ins and its handles match their records; the fingerprint also covers the
  argument's own fingerprint (through the parents), so a changed upstream input still shows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._handle import TaskHandle, TaskStatus

__all__ = ["call_args", "find_handles", "key_form"]

_SKIP = (int, float, str, bool, type(None), bytes)
_WALK = (list, tuple, set, frozenset, dict)
_COMPLETED = TaskStatus.COMPLETED


def _collect(obj: Any, found: list[TaskHandle[Any]]) -> None:
    kind = type(obj)
    if kind is TaskHandle:
        found.append(obj)
    elif kind is dict:
        for value in obj.values():
            if type(value) not in _SKIP:
                _collect(value, found)
    elif kind in _WALK:
        for value in obj:
            if type(value) not in _SKIP:
                _collect(value, found)


def find_handles(args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[TaskHandle[Any]]:
    """Every handle among the arguments (walking plain containers); empty when none."""
    found: list[TaskHandle[Any]] = []
    for value in args:
        kind = type(value)
        if kind is TaskHandle or kind in _WALK:
            _collect(value, found)
    if kwargs:
        for value in kwargs.values():
            kind = type(value)
            if kind is TaskHandle or kind in _WALK:
                _collect(value, found)
    return found


def _swap(obj: Any, swap: Callable[[TaskHandle[Any]], Any]) -> Any:
    kind = type(obj)
    if kind is TaskHandle:
        return swap(obj)
    if kind is dict:
        return {k: _swap(v, swap) for k, v in obj.items()}
    if kind in _WALK:
        return kind(_swap(v, swap) for v in obj)
    return obj


def _replace(args: tuple[Any, ...], kwargs: dict[str, Any],
             swap: Callable[[TaskHandle[Any]], Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    # Scalars pass as they are, handles are swapped directly: only containers recurse.
    new_args = tuple([a if type(a) in _SKIP else swap(a) if type(a) is TaskHandle
                      else _swap(a, swap) for a in args]) if args else args
    new_kwargs = {k: _swap(v, swap) for k, v in kwargs.items()} if kwargs else kwargs
    return new_args, new_kwargs


def _ref(h: TaskHandle[Any]) -> str:
    return f"<task {h.key}>"


def key_form(args: tuple[Any, ...],
             kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments as keys, fingerprints and checkpoints see them: handles by task key."""
    return _replace(args, kwargs, _ref)


def _outcome(h: TaskHandle[Any]) -> Any:
    # The parent is terminal here: the task starts only after all its parents ended.
    return h._value if h.status is _COMPLETED else h._exception


def call_args(h: TaskHandle[Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The arguments ``h`` is called with: each handle argument replaced by its result (or,
    under ``run-anyway``, by its exception)."""
    if h._refs is None:
        return h.args, h.kwargs
    return _replace(h.args, h.kwargs, _outcome)
