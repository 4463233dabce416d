"""Code identity (``notebook._fingerprint``): what changes a fingerprint, and what does not."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import cell_namespace

from pyworkflowy_nb.notebook._fingerprint import code_fingerprint

ROOT = Path(__file__).resolve().parent.parent


FUNCS = """
LIMIT = 10

def helper(x):
    return x % LIMIT

def work(items, scale=2):
    keep = lambda v: helper(v) > 3
    return [v * scale for v in items if keep(v) and v not in {"skip", "ignore"}]
"""


def test_fingerprint_ignores_kernel_file_names_and_line_numbers() -> None:
    one = cell_namespace(FUNCS, "/tmp/ipykernel_111/22.py")
    two = cell_namespace(FUNCS, "/tmp/ipykernel_999/77.py", blank_lines=7)
    assert one["work"].__code__.co_filename != two["work"].__code__.co_filename
    assert one["work"].__code__.co_firstlineno != two["work"].__code__.co_firstlineno
    assert code_fingerprint(one["work"]) == code_fingerprint(two["work"])
    assert code_fingerprint(one["work"].__code__) == code_fingerprint(two["work"].__code__)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("v * scale", "v * scale + 1"),  # the body
        ("helper(v) > 3", "helper(v) > 4"),  # inside the nested lambda
        ("scale=2", "scale=3"),  # a default
        ("x % LIMIT", "x // LIMIT"),  # a helper it calls
        ("LIMIT = 10", "LIMIT = 11"),  # a constant it reads
        ('"skip", "ignore"', '"skip", "ignored"'),  # a frozenset constant
    ],
)
def test_fingerprint_changes_with_what_the_function_does(old: str, new: str) -> None:
    assert old in FUNCS
    base = cell_namespace(FUNCS)["work"]
    changed = cell_namespace(FUNCS.replace(old, new))["work"]
    assert code_fingerprint(base) != code_fingerprint(changed)


def test_fingerprint_of_classes_methods_partials_and_recursion() -> None:
    import functools

    src = """
    class Model:
        rate = 0.5
        def fit(self, x):
            return x * self.rate
    def even(n):
        return n == 0 or odd(n - 1)
    def odd(n):
        return n != 0 and even(n - 1)
    """
    a = cell_namespace(src, "/tmp/ipykernel_1/1.py")
    b = cell_namespace(src, "/tmp/ipykernel_2/2.py", blank_lines=3)
    c = cell_namespace(src.replace("rate = 0.5", "rate = 0.25"))
    assert code_fingerprint(a["Model"]) == code_fingerprint(b["Model"])
    assert code_fingerprint(a["Model"]) != code_fingerprint(c["Model"])
    assert code_fingerprint(a["Model"]().fit) == code_fingerprint(b["Model"]().fit)
    assert code_fingerprint(a["even"]) == code_fingerprint(b["even"])  # mutual recursion ends
    assert code_fingerprint(functools.partial(a["even"], 2)) != code_fingerprint(
        functools.partial(a["even"], 3))
    assert code_fingerprint(len) != code_fingerprint(print)


def test_fingerprint_is_the_same_in_another_process_with_another_hash_seed() -> None:
    script = textwrap.dedent(f"""
        import textwrap
        from pyworkflowy_nb.notebook._fingerprint import code_fingerprint
        ns = {{"__name__": "__main__"}}
        exec(compile({FUNCS!r}, "/tmp/ipykernel_%d/1.py" % __import__("os").getpid(), "exec"), ns)
        def with_defaults(x, opts={{"b": 1, "a": frozenset({{"p", "q", "r"}})}}):
            return x
        print(code_fingerprint(ns["work"]), code_fingerprint(with_defaults))
    """)
    outputs = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                             env=env, timeout=120, check=True)
        outputs.add(out.stdout)
    assert len(outputs) == 1


def test_fingerprint_handles_odd_inputs() -> None:
    loop: list[Any] = []
    loop.append(loop)

    def uses_loop(x: Any = loop) -> Any:
        return x

    class Callable_:
        def __call__(self) -> int:
            return 1

    fingerprints = {code_fingerprint(obj) for obj in (uses_loop, Callable_(), types, object)}
    assert len(fingerprints) == 4
