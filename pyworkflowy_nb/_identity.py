"""Stable task identity: keys people can read, fingerprints machines can compare.

A *key* names a handle within a runner: the task name, plus a short form of its arguments, plus
``#2``, ``#3``... for identical repeats. It never depends on a random id or on where a submission
falls in the order of unrelated submissions, so a re-built runner finds the same keys after a
restart. A *fingerprint* hashes what the result depends on (task name, task version, arguments,
parents' fingerprints); a checkpointed result is reused only when both match, so changing an
input invalidates that task and everything downstream of it.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Iterable
from json.encoder import encode_basestring_ascii as _encode_str
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._handle import TaskHandle

__all__ = ["args_digest", "base_key", "encode_args", "fingerprint", "scalar_json",
           "task_fingerprint"]

_SCALARS = (int, float, str, bool, type(None))
_MAX_READABLE = 60


class _Sorted(tuple[Any, ...]):
    """Stands for a set or frozenset in the pickled form, its items in a fixed order."""

    __slots__ = ()


def _sets_sorted(obj: Any) -> Any:
    """``obj`` with every set replaced by a sorted stand-in. A set's iteration order follows
    string hashes, which are randomised per process, so pickling it raw would give the same
    arguments a different key after a restart."""
    kind = type(obj)
    if kind is set or kind is frozenset:
        items = [_sets_sorted(x) for x in obj]
        items.sort(key=lambda x: (type(x).__name__, repr(x)))
        return _Sorted((kind.__name__, *items))
    if kind is list or kind is tuple:
        return kind(_sets_sorted(x) for x in obj)
    if kind is dict:
        return {k: _sets_sorted(v) for k, v in obj.items()}
    return obj


_INF = float("inf")


def scalar_json(value: Any) -> str | None:
    """``value`` as ``json.dumps`` would write it, for the common scalar types; else None.

    Written by hand because ``json.dumps`` costs microseconds per call in set-up alone, which
    at 100,000 submissions is most of a key's price. Every branch gives exactly json's text
    (a property test compares the two), so keys and fingerprints do not change.
    """
    kind = type(value)
    if kind is int:
        return int.__repr__(value)
    if kind is str:
        return _encode_str(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is float:
        if value != value:
            return "NaN"
        if value == _INF:
            return "Infinity"
        if value == -_INF:
            return "-Infinity"
        return float.__repr__(value)
    return None


def _encode_scalars(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes | None:
    """The canonical JSON of scalar-only arguments without ``json.dumps``; None otherwise."""
    parts: list[str] = []
    for a in args:
        text = scalar_json(a)
        if text is None:
            return None
        parts.append(text)
    items: list[str] = []
    for k in sorted(kwargs):
        text = scalar_json(kwargs[k])
        if text is None:
            return None
        items.append(f"{_encode_str(k)}:{text}")
    return f"[[{','.join(parts)}],{{{','.join(items)}}}]".encode()


def encode_args(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """A deterministic byte form of the arguments: canonical JSON, else pickle, else repr."""
    if not args and not kwargs:
        return b"[[],{}]"
    fast = _encode_scalars(args, kwargs)
    if fast is not None:
        return fast
    return _encode_general(args, kwargs)


def _encode_general(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """encode_args for any arguments (json.dumps, else pickle, else repr)."""
    if not args and not kwargs:
        return b"[[],{}]"
    payload = [list(args), kwargs]
    try:
        return json.dumps(payload, sort_keys=True, separators=(",", ":"),
                          allow_nan=True).encode()
    except (TypeError, ValueError):
        pass
    try:
        stable = _sets_sorted((args, sorted(kwargs.items())))
        return b"P" + pickle.dumps(stable, protocol=4)
    except Exception:  # unpicklable arguments: identity is only as stable as their repr
        return b"R" + repr((args, sorted(kwargs.items()))).encode()


def args_digest(encoded: bytes) -> str:
    return hashlib.blake2b(encoded, digest_size=5).hexdigest()


def base_key(name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
             encoded: bytes | None) -> str:
    """The key before de-duplication: readable when the arguments are short scalars."""
    if not args and not kwargs:
        return name
    if all(type(a) in _SCALARS for a in args) and all(
        type(v) in _SCALARS for v in kwargs.values()
    ):
        parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in sorted(kwargs.items())]
        text = ", ".join(parts)
        if len(text) <= _MAX_READABLE:
            return f"{name}({text})"
    return f"{name}[{args_digest(encoded or encode_args(args, kwargs))}]"


def _digest(name: str, version: str | None, encoded: bytes, parents: Iterable[str]) -> str:
    parts = [b"wfy1", name.encode(), (version or "").encode(), encoded]
    # Parent order in depends_on is incidental; sorting keeps the identity independent of it.
    parts.extend(sorted(p.encode() for p in parents))
    return hashlib.blake2b(b"\0".join(parts), digest_size=16).hexdigest()


def _own_digest(handle: TaskHandle[Any], encoded: bytes | None = None) -> str:
    if encoded is None:
        args, kwargs = handle._refs or (handle.args, handle.kwargs)
        encoded = encode_args(args, kwargs)
    return _digest(handle.name, handle.task.version, encoded,
                   [p._fingerprint or "" for p in handle.parents])


def task_fingerprint(name: str, *, version: str | None = None, args: tuple[Any, ...] = (),
                     kwargs: dict[str, Any] | None = None, parents: Iterable[str] = ()) -> str:
    """The fingerprint a submission of task ``name`` gets, computed without a runner.

    ``version`` is the task's ``version=``, ``args``/``kwargs`` its arguments and ``parents``
    the fingerprints of the handles it depends on (in any order). Together with the task key
    it is what a checkpoint is matched against (see :func:`pyworkflowy_nb.resume.restorable`).
    """
    return _digest(name, version, encode_args(args, kwargs or {}), parents)


def fingerprint(handle: TaskHandle[Any], encoded: bytes | None = None) -> str:
    """Compute (and cache) the fingerprint of ``handle`` and of any ancestor lacking one.

    ``encoded``: ``encode_args`` of the handle's arguments, when the caller has it already.
    """
    for p in handle.parents:  # a loop: cheaper than all() over a generator for one parent
        if p._fingerprint is None:
            break
    else:
        handle._fingerprint = _own_digest(handle, encoded)
        return handle._fingerprint
    # Iterative post-order walk: a 100,000-deep chain must not hit the recursion limit.
    stack = [handle]
    while stack:
        top = stack[-1]
        if top._fingerprint is not None:
            stack.pop()
            continue
        missing = [p for p in top.parents if p._fingerprint is None]
        if missing:
            stack.extend(missing)
            continue
        top._fingerprint = _own_digest(top)
        stack.pop()
    assert handle._fingerprint is not None
    return handle._fingerprint
