"""Task records and whole states: the two shapes a checkpoint speaks, and their validation.

A *record* is what the engine's file checkpointers store per task, keyed by the task's stable
key: its fingerprint, how it ended and, once completed, its value. A *state* is the 0.1.0
``Checkpointer`` contract, ``{"version": 1, "handles": [entry, ...]}`` with one entry per handle
(``id`` is our key; ``fingerprint`` is an extra field, a superset of 0.1.0's entries).

Everything read back from a file or from a user's checkpointer passes :func:`validate_record`
before the runner uses it: a record that lies about its types (``attempts: "abc"``), misses a
field or carries an unknown one is a :class:`CheckpointError` at resume, naming the checkpoint,
rather than a bare ValueError at some later submit, or a silent re-run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from .exceptions import CheckpointError

__all__ = ["RECORD_FIELDS", "STATE_VERSION", "Record", "records_from_state", "state_entry",
           "state_from_records", "validate_record"]

Record = dict[str, Any]
STATE_VERSION = 1

# Fields every stored record has; older checkpoints (manifest version 1) have exactly these.
RECORD_FIELDS = frozenset({"key", "name", "fingerprint", "status", "value", "error", "attempts",
                           "started_at", "finished_at"})
# What the 0.1.0 state needs besides, written by this version.
_CALL_FIELDS = frozenset({"args", "kwargs", "depends_on"})
_ALL_FIELDS = RECORD_FIELDS | _CALL_FIELDS
# Terminal statuses, plus "unpersisted": it ended but its value could not be stored.
STORED_STATUSES = frozenset({"completed", "failed", "skipped", "cancelled", "unpersisted"})
# Statuses a whole state may also hold for handles that had not ended when it was saved.
_LIVE_STATUSES = frozenset({"pending", "ready", "running", "retrying"})


class Invalid(ValueError):
    """Why a record or an entry is malformed; callers turn it into a CheckpointError."""


def _is_number(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]


def _check_common(rec: Mapping[str, Any], key_field: str) -> None:
    key = rec[key_field]
    if not isinstance(key, str) or not key:
        raise Invalid(f"{key_field} must be a non-empty string, got {key!r:.60}")
    for name in ("name", "fingerprint"):
        if not isinstance(rec[name], str):
            raise Invalid(f"{name} of {key!r:.60} must be a string, got {rec[name]!r:.60}")
    attempts = rec["attempts"]
    if type(attempts) is not int or attempts < 0:
        raise Invalid(f"attempts of {key!r:.60} must be a whole number >= 0, "
                      f"got {attempts!r:.60}")
    for name in ("started_at", "finished_at"):
        stamp = rec[name]
        if stamp is not None and not _is_number(stamp):
            raise Invalid(f"{name} of {key!r:.60} must be a timestamp or null, "
                          f"got {stamp!r:.60}")
    error = rec["error"]
    if error is not None and not isinstance(error, str):
        raise Invalid(f"error of {key!r:.60} must be a string or null, got {error!r:.60}")
    if "args" in rec and not isinstance(rec["args"], list | tuple):
        raise Invalid(f"args of {key!r:.60} must be a list")
    if "kwargs" in rec and not (isinstance(rec["kwargs"], dict)
                                and all(isinstance(k, str) for k in rec["kwargs"])):
        raise Invalid(f"kwargs of {key!r:.60} must be an object with string keys")
    if "depends_on" in rec and not (isinstance(rec["depends_on"], list | tuple)
                                    and all(isinstance(d, str) for d in rec["depends_on"])):
        raise Invalid(f"depends_on of {key!r:.60} must be a list of task ids")


def validate_record(rec: object) -> Record:
    """``rec`` if it is a well-formed stored record; otherwise :class:`Invalid` saying why."""
    if not isinstance(rec, dict):
        raise Invalid(f"a record must be an object, got {type(rec).__name__}")
    fields = rec.keys()
    missing = RECORD_FIELDS - fields
    if missing:
        raise Invalid(f"record {rec.get('key')!r:.60} lacks {', '.join(sorted(missing))}")
    extra = fields - _ALL_FIELDS
    if extra:
        raise Invalid(f"record {rec.get('key')!r:.60} has unknown fields "
                      f"{', '.join(sorted(map(str, extra)))[:80]}")
    if rec["status"] not in STORED_STATUSES:
        raise Invalid(f"status of {rec['key']!r:.60} must be one of "
                      f"{', '.join(sorted(STORED_STATUSES))}, got {rec['status']!r:.60}")
    _check_common(rec, "key")
    return rec


def validate_records(items: object) -> dict[str, Record]:
    """A decoded segment or journal frame: a non-empty list of records, keys unique."""
    if not isinstance(items, list) or not items:
        raise Invalid("expected a non-empty list of task records, got "
                      + ("an empty list" if isinstance(items, list) else type(items).__name__))
    out: dict[str, Record] = {}
    for item in items:
        rec = validate_record(item)
        if rec["key"] in out:
            raise Invalid(f"record {rec['key']!r:.60} appears twice")
        out[rec["key"]] = rec
    return out


def state_entry(rec: Mapping[str, Any]) -> dict[str, Any]:
    """The 0.1.0 state entry of a stored record (``id`` is the key; fingerprint kept)."""
    return {
        "id": rec["key"], "name": rec["name"], "args": list(rec.get("args", ())),
        "kwargs": dict(rec.get("kwargs", {})), "depends_on": list(rec.get("depends_on", ())),
        "status": rec["status"], "value": rec["value"], "error": rec["error"],
        "attempts": rec["attempts"], "started_at": rec["started_at"],
        "finished_at": rec["finished_at"], "fingerprint": rec["fingerprint"],
    }


def state_from_records(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    return {"version": STATE_VERSION, "handles": [state_entry(r) for r in records]}


def records_from_state(state: object, where: str) -> dict[str, Record]:
    """The stored records of a whole state (``load()`` of any Checkpointer), validated.

    ``None`` (nothing saved yet) gives no records. Entries of handles that had not ended are
    skipped; an entry without a fingerprint is kept but can never match, so its task runs
    again (its inputs cannot be compared).
    """
    if state is None:
        return {}
    try:
        if not isinstance(state, Mapping):
            raise Invalid(f"load() must return a dict or None, got {type(state).__name__}")
        if state.get("version") != STATE_VERSION:
            raise Invalid(f"state version must be {STATE_VERSION}, got "
                          f"{state.get('version')!r:.40}")
        entries = state.get("handles")
        if not isinstance(entries, list | tuple):
            raise Invalid("state['handles'] must be a list of entries")
        out: dict[str, Record] = {}
        for entry in entries:
            if not isinstance(entry, Mapping):
                raise Invalid(f"each handle entry must be a dict, got {type(entry).__name__}")
            rec = _record_of_entry(entry)
            if rec is not None:
                out[rec["key"]] = rec
        return out
    except Invalid as exc:
        raise CheckpointError(
            f"checkpoint {where} holds a malformed state: {exc}; fix its save()/load() or "
            "start afresh without resume", path=where) from None


def _record_of_entry(entry: Mapping[str, Any]) -> Record | None:
    status = entry.get("status")
    status = getattr(status, "value", status)  # a TaskStatus member, if the user kept one
    if status in _LIVE_STATUSES:
        return None
    if status not in STORED_STATUSES:
        raise Invalid(f"status of {entry.get('id')!r:.60} is {status!r:.40}")
    rec: Record = {
        "key": entry.get("id"), "name": entry.get("name", ""),
        "fingerprint": entry.get("fingerprint", ""), "status": status,
        "value": entry.get("value"), "error": entry.get("error"),
        "attempts": entry.get("attempts", 0), "started_at": entry.get("started_at"),
        "finished_at": entry.get("finished_at"),
        "args": entry.get("args", []), "kwargs": entry.get("kwargs", {}),
        "depends_on": entry.get("depends_on", []),
    }
    _check_common(rec, "key")
    return rec
