"""The journal's direct record formatting agrees with the JSON encoder it stands in for."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from pyworkflowy_nb._checkpoint import JSONCheckpointer, _record_json

scalars = st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=True)
stamps = st.none() | st.floats(allow_nan=False, allow_infinity=False) | st.integers()


def _record(value: Any, args: tuple[Any, ...], started: Any, finished: Any,
            error: str | None, deps: tuple[str, ...], attempts: int) -> dict[str, Any]:
    return {"key": "t(1)", "name": "t\u00e9", "fingerprint": "ab" * 16, "status": "completed",
            "value": value, "error": error, "attempts": attempts, "started_at": started,
            "finished_at": finished, "args": args, "kwargs": {}, "depends_on": deps}


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@settings(max_examples=200, deadline=None)
@given(value=scalars, args=st.lists(scalars, max_size=3).map(tuple), started=stamps,
       finished=stamps, error=st.none() | st.text(), deps=st.lists(st.text(), max_size=3),
       attempts=st.integers(min_value=0, max_value=10**6))
def test_direct_formatting_decodes_like_the_encoder(value: Any, args: tuple[Any, ...],
                                                    started: Any, finished: Any,
                                                    error: str | None, deps: list[str],
                                                    attempts: int) -> None:
    rec = _record(value, args, started, finished, error, tuple(deps), attempts)
    general = json.loads(json.dumps(rec))
    part = JSONCheckpointer("unused.json").encode_part(rec)
    assert _same(json.loads(part), general)
    fast = _record_json(rec)
    if fast is not None:  # the fast path, when taken, is byte-compatible JSON of the same record
        assert _same(json.loads(fast), general)


def test_fast_path_declines_what_it_cannot_format() -> None:
    base = _record(1, (2,), 1.5, 2.5, None, ("a",), 1)
    assert _record_json(base) is not None
    for change in ({"value": [1]}, {"args": ([1],)}, {"args": [2]}, {"kwargs": {"x": 1}},
                   {"attempts": True}, {"started_at": [0]}):
        assert _record_json({**base, **change}) is None, change
    assert _record_json({k: v for k, v in base.items() if k != "args"}) is None


def test_a_shared_finish_time_and_the_next_one_are_both_written_right() -> None:
    now, later = 1700000000.123456, 1700000001.5
    first = _record(1, (), 1.0, now, None, (), 1)
    second = _record(2, (), 1.0, now, None, (), 1)  # the same float object: a commit group
    third = _record(3, (), 1.0, later, None, (), 1)
    for rec in (first, second, third, first):
        assert json.loads(_record_json(rec) or b"") == json.loads(json.dumps(rec))
