"""Shared plain helpers for the tests: the one hang guard, ``wait_until``, task bodies.

Fixtures live in ``conftest.py`` (pytest injects them); everything a test imports by name
lives here, because importing from ``conftest`` is not something pytest supports.

Process-backend workers import task functions by module and qualname, so every function the
process backend runs lives here at module top level (the tests directory is on ``sys.path``
under pytest's default import mode, and forked or spawned workers inherit it).
"""

from __future__ import annotations

import os
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pyworkflowy_nb import TaskBase, current_task, task
from pyworkflowy_nb._html import NodeSnapshot

#: Seconds any wait in a test may take before it counts as a hang: only ever reached when
#: something is broken, never a speed assertion. Waits on another process (a kernel cell, a dask
#: worker, JupyterLab) use a stated multiple of it.
HANG_GUARD = 30.0


class Boom(Exception):
    """The failure a test raises on purpose (never one the engine raises itself)."""


@task
def explode(label: str) -> None:
    raise Boom(label)


class Gauge:
    """Counts how many bodies run at once and remembers the highest count seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.now = 0
        self.peak = 0

    @contextmanager
    def inside(self) -> Iterator[None]:
        with self._lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
        try:
            yield
        finally:
            with self._lock:
                self.now -= 1


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = HANG_GUARD) -> None:
    """Poll ``predicate`` until true; the timeout is a hang guard, not a measurement."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


# -- process-backend bodies (must be importable by name) ---------------------------------------

def square(x: int) -> int:
    return x * x


def add(a: int, b: int) -> int:
    return a + b


def pid() -> int:
    return os.getpid()


def context_is_none() -> bool:
    return current_task() is None


def fail_with_value_error(message: str) -> None:
    raise ValueError(message)


def sleep_then(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


@task(backend="process")
def process_square(x: int) -> int:
    return x * x


#: A test changes this before a process pool starts: a forked worker inherits the change with
#: the parent's memory, a spawned or forkserver worker imports this module afresh.
INHERITED = "fresh"


@task(backend="process")
def process_origin() -> tuple[int, str]:
    """Where a process body runs: its parent's pid and what it sees of ``INHERITED``."""
    return os.getppid(), INHERITED


@task(backend="process")
def process_context_is_none() -> bool:
    return current_task() is None


def touch(path: str) -> str:
    with open(path, "w"):
        pass
    return path


def wait_for_file(started: str, release: str) -> str:
    """Announce the start, then block until ``release`` exists (hang guard included)."""
    touch(started)
    deadline = time.monotonic() + HANG_GUARD
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.01)
    return "released"


def wait_for_peers(folder: str, index: int, peers: int) -> int:
    """Process body: enter, wait (hang-guarded) until ``peers`` bodies were inside together,
    and return the largest number of bodies seen inside at once."""
    marker = os.path.join(folder, f"in-{index}")
    touch(marker)
    try:
        deadline = time.monotonic() + HANG_GUARD
        peak = 0
        while time.monotonic() < deadline:
            inside = sum(1 for n in os.listdir(folder) if n.startswith("in-"))
            peak = max(peak, inside)
            if peak >= peers or os.path.exists(os.path.join(folder, "full")):
                touch(os.path.join(folder, "full"))
                break
            time.sleep(0.005)
        # Linger a moment so an extra body, were the bound broken, would overlap with us.
        for _ in range(5):
            peak = max(peak, sum(1 for n in os.listdir(folder) if n.startswith("in-")))
            time.sleep(0.005)
        return peak
    finally:
        os.remove(marker)


class ProcessDoubler(TaskBase):
    """A class-form task the process backend can rebuild by importing this module."""

    name = "process-doubler"
    backend = "process"

    def run(self, x: int) -> tuple[int, int]:
        return 2 * x, os.getpid()


def fail_first(folder: str, failures: int) -> int:
    """Process body: fail the first ``failures`` calls (counted in files), then return the
    attempt number."""
    attempt = sum(1 for n in os.listdir(folder) if n.startswith("attempt-")) + 1
    touch(os.path.join(folder, f"attempt-{attempt}"))
    if attempt <= failures:
        raise ValueError(f"attempt {attempt}")
    return attempt


def die(code: int) -> None:
    """Process body that kills its worker, as an OOM kill or a crashing C extension would."""
    os._exit(code)


def node(key: str, state: str = "completed", parents: tuple[str, ...] = (), *,
         name: str | None = None, attempts: int = 1, duration: float | None = 0.25,
         error: str | None = None) -> NodeSnapshot:
    """A node snapshot for the HTML and DOT tests; the name defaults to the key's call name."""
    return NodeSnapshot(key, name or key.split("(")[0], state, attempts, duration, error, parents)


def cell_namespace(source: str, filename: str = "/tmp/ipykernel_4242/1234567.py",
                   blank_lines: int = 0) -> dict[str, Any]:
    """Run ``source`` as a notebook cell would: module ``__main__``, an ipykernel file name."""
    ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(compile("\n" * blank_lines + textwrap.dedent(source), filename, "exec"), ns)
    return ns
