"""The kernel tests, again, on CPython 3.12 and 3.13 (issue 4: "same on 3.11, 3.12 and 3.13").

The main suite runs on the project's own interpreter. Here each other version gets its own
virtualenv under ``.venvs/`` (built once, reused while pyproject.toml is unchanged) and runs the
kernel-loop, magics and no-Jupyter-deps tests with it. ``kernel_utils`` starts kernels with
``sys.executable``, so inside that run the kernels are the other version too. A machine without
the interpreter skips, saying where it looked.
"""

from __future__ import annotations

import pytest
from other_pythons import (
    INSTALL_TIMEOUT,
    TEST_TIMEOUT,
    ensure_venv,
    find_interpreter,
    kernel_python,
    parse_counts,
    run_pytest,
)

TEST_FILES = [
    "tests/test_loop_kernel.py",
    "tests/test_magics_kernel.py",
    "tests/test_no_jupyter_deps.py",
]


@pytest.mark.slow
@pytest.mark.kernel
@pytest.mark.timeout(INSTALL_TIMEOUT + TEST_TIMEOUT + 120)
@pytest.mark.parametrize("version", ["3.12", "3.13"])
def test_kernel_suite_passes_on_another_python(version: str) -> None:
    interp, why = find_interpreter(version)
    if interp is None:
        pytest.skip(why)
    venv = ensure_venv(interp)
    # kernel_utils launches kernels with sys.executable: make sure that really is this version.
    assert kernel_python(venv) == version
    run = run_pytest(venv, ["-q", "-p", "no:cacheprovider", *TEST_FILES])

    setup = "reused" if venv.reused else f"built in {venv.install_seconds:.0f} s"
    print(f"Python {interp.full_version.split()[0]} ({interp.path}): venv {setup}, "
          f"tests {run.seconds:.0f} s: {run.summary}")

    tail = "\n".join(run.output.rstrip().splitlines()[-60:])
    where = (f"Python {version} at {interp.path}, venv {venv.python.parent.parent} ({setup});"
             f" full output in {venv.log.parent / 'last-test-run.log'}")
    assert run.returncode == 0, f"pytest exited {run.returncode} on {where}\n{tail}"
    assert run.counts.get("passed", 0) > 0, f"no test passed on {where}\n{tail}"
    bad = {k: run.counts.get(k, 0) for k in ("failed", "errors")}
    assert not any(bad.values()), f"{bad} on {where}\n{tail}"


def test_summary_line_parsing() -> None:
    # Guards the assertions above: a failure or error in the summary must be counted.
    assert parse_counts("1 failed, 21 passed, 1 error in 9.76s") == {
        "failed": 1, "passed": 21, "errors": 1}
    assert parse_counts("22 passed, 2 warnings in 3.00s") == {"passed": 22, "warnings": 2}
    assert parse_counts("no tests ran in 0.01s") == {}


def test_a_missing_interpreter_is_reported_not_guessed() -> None:
    interp, why = find_interpreter("3.99")
    assert interp is None
    assert "3.99" in why and "PATH" in why
    with pytest.raises(ValueError, match="'three'"):
        find_interpreter("three")
