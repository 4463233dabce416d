"""Task identity: readable, deterministic keys; fingerprints over parents (no checkpoint needed).

What keys and fingerprints do across a restart (invalidation, resume) is in test_checkpoint.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyworkflowy_nb import TaskRunner, task


@task
def square(x: int) -> int:
    return x * x


@task
def total(*parts: int) -> int:
    return len(parts)


def test_keys_are_readable_and_deterministic() -> None:
    runner = TaskRunner()
    a = runner.submit(square, 3)
    b = runner.submit(square, x=4)
    c = runner.submit(total, 1, "two", None, 2.5, True)
    n = runner.submit(total)
    big = runner.submit(total, "x" * 200)
    nested = runner.submit(total, [1, 2], {"k": 1})
    assert a.key == f"{square.name}(3)"
    assert b.key == f"{square.name}(x=4)"
    assert c.key == f"{total.name}(1, 'two', None, 2.5, True)"
    assert n.key == total.name
    assert big.key.startswith(f"{total.name}[") and len(big.key) < len(total.name) + 20
    assert nested.key.startswith(f"{total.name}[")
    assert a.id == a.key


def test_kwargs_order_does_not_change_the_key() -> None:
    @task
    def kw(**kwargs: int) -> int:
        return len(kwargs)

    r1, r2 = TaskRunner(), TaskRunner()
    assert r1.submit(kw, a=1, b=2).key == r2.submit(kw, b=2, a=1).key
    assert r1.submit(kw, a=[1], b={"z": 2}).key == r2.submit(kw, b={"z": 2}, a=[1]).key


def test_same_tasks_in_another_order_get_the_same_keys() -> None:
    def submit_all(runner: TaskRunner, order: list[int]) -> dict[int, str]:
        return {i: runner.submit(square, i % 3).key for i in order}

    first = TaskRunner()
    second = TaskRunner()
    keys1 = submit_all(first, list(range(6)))
    keys2 = submit_all(second, [5, 1, 4, 2, 0, 3])
    assert sorted(keys1.values()) == sorted(keys2.values())
    assert {h.key for h in first.handles} == {h.key for h in second.handles}
    # Identical repeats are numbered #2, #3 in the order they arrive.
    assert sorted(h.key for h in first.handles if h.key.startswith(f"{square.name}(0)")) == [
        f"{square.name}(0)", f"{square.name}(0)#2"]


def test_repeats_are_numbered() -> None:
    runner = TaskRunner()
    keys = [runner.submit(square, 1).key for _ in range(3)]
    assert keys == [f"{square.name}(1)", f"{square.name}(1)#2", f"{square.name}(1)#3"]


def test_explicit_task_key_wins_and_duplicates_are_refused() -> None:
    runner = TaskRunner()
    h = runner.submit(square, 1, task_key="first-square")
    assert h.key == "first-square"
    assert runner.get("first-square") is h
    with pytest.raises(ValueError, match="'first-square' is already used"):
        runner.submit(square, 2, task_key="first-square")
    # An explicit key that looks like a derived one pushes the derived one along.
    runner.submit(square, 5, task_key=f"{square.name}(5)")
    assert runner.submit(square, 5).key == f"{square.name}(5)#2"
    with pytest.raises(TypeError, match="task_key"):
        runner.submit(square, 3, task_key="")


def test_fingerprint_ignores_parent_order_but_not_parents() -> None:
    r = TaskRunner()
    a, b = r.submit(square, 1), r.submit(square, 2)
    t1 = r.submit(total, depends_on=[a, b])
    t2 = r.submit(total, depends_on=[b, a])
    t3 = r.submit(total, depends_on=[a])
    assert t1.fingerprint == t2.fingerprint
    assert t1.fingerprint != t3.fingerprint
    assert a.fingerprint != b.fingerprint


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["square", "total"]),
                          st.one_of(st.integers(-3, 3), st.text(max_size=3),
                                    st.lists(st.integers(), max_size=2))),
                min_size=1, max_size=12),
       st.randoms(use_true_random=False))
def test_any_submission_order_gives_the_same_keys(calls: list[tuple[str, Any]],
                                                  rng: Any) -> None:
    tasks = {"square": square, "total": total}

    def keys(order: list[tuple[str, Any]]) -> dict[str, int]:
        runner = TaskRunner()
        seen: dict[str, int] = {}
        for name, arg in order:
            key = runner.submit(tasks[name], arg).key
            m = re.fullmatch(r"(.*[)\]])#(\d+)", key)  # "#" may also appear in an argument
            base = m.group(1) if m else key
            seen[base] = seen.get(base, 0) + 1
            assert key == base if seen[base] == 1 else key == f"{base}#{seen[base]}"
        return seen

    shuffled = list(calls)
    rng.shuffle(shuffled)
    assert keys(calls) == keys(shuffled)


# -- the hand-written encoder for scalar arguments ----------------------------------------------

_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.text(),
                    st.floats(allow_nan=True, allow_infinity=True))


@settings(max_examples=300, deadline=None)
@given(args=st.lists(_scalar, max_size=5), kwargs=st.dictionaries(st.text(), _scalar, max_size=4))
def test_the_scalar_fast_path_encodes_exactly_like_json(args: list[Any],
                                                        kwargs: dict[str, Any]) -> None:
    from pyworkflowy_nb._identity import _encode_general, encode_args

    assert encode_args(tuple(args), kwargs) == _encode_general(tuple(args), kwargs)


def test_non_scalar_arguments_take_the_general_encoder() -> None:
    from pyworkflowy_nb._identity import _encode_general, _encode_scalars, encode_args

    for args, kwargs in [((1, [2]), {}), ((), {"x": {"a": 1}}), ((1.5, (1,)), {}),
                         ((1, object), {})]:
        assert _encode_scalars(args, kwargs) is None
        assert encode_args(args, kwargs) == _encode_general(args, kwargs)


def test_keys_and_fingerprints_are_the_same_in_another_process() -> None:
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import json, tempfile, os\n"
        "from pyworkflowy_nb import TaskRunner, task\n"
        "t = task(name='enc')(lambda *a, **k: None)\n"
        "r = TaskRunner(checkpoint_path=os.path.join(tempfile.mkdtemp(), 's.json'))\n"
        "hs = [r.submit(t, 1, 'é', None, 2.5, float('nan')), r.submit(t, x=True, a='b' * 90),\n"
        "      r.submit(t, [1, {'s': [3, 1]}, 2]), r.submit(t, 1, 'é', None, 2.5, float('nan'))]\n"
        "print(json.dumps([[h.key, h.fingerprint] for h in hs]))\n")
    root = Path(__file__).resolve().parent.parent
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONPATH": str(root), "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             env=env, timeout=120, check=True)
        outputs.append(json.loads(out.stdout))
    assert outputs[0] == outputs[1]
    keys = [k for k, _ in outputs[0]]
    assert keys[0] == "enc(1, 'é', None, 2.5, nan)" and keys[3] == keys[0] + "#2"
