"""Deferred full collections while a runner holds a large graph (pyworkflowy_nb._gc)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from pyworkflowy_nb import TaskRunner, task
from pyworkflowy_nb._gc import LARGE, GcHold


@pytest.fixture(autouse=True)
def restored_thresholds() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    yield before
    gc.set_threshold(*before)


def test_a_hold_defers_full_collections_and_gives_the_thresholds_back(
        restored_thresholds: tuple[int, int, int]) -> None:
    hold = GcHold()
    hold.take()
    young0, young1, oldest = gc.get_threshold()
    assert (young0, young1) == restored_thresholds[:2]  # young collections go on as before
    assert oldest > restored_thresholds[2]
    hold.take()  # taking twice is one claim
    hold.give()
    assert gc.get_threshold() == restored_thresholds
    hold.give()  # and giving twice is harmless
    assert gc.get_threshold() == restored_thresholds


def test_holds_nest_and_the_last_one_restores(restored_thresholds: tuple[int, int, int]) -> None:
    first, second = GcHold(), GcHold()
    first.take()
    deferred = gc.get_threshold()
    second.take()
    first.give()
    assert gc.get_threshold() == deferred
    second.give()
    assert gc.get_threshold() == restored_thresholds


def test_thresholds_the_user_set_meanwhile_are_kept() -> None:
    hold = GcHold()
    hold.take()
    gc.set_threshold(123, 4, 5)
    hold.give()
    assert gc.get_threshold() == (123, 4, 5)


def test_a_large_graph_takes_the_hold_until_its_run_ends(
        restored_thresholds: tuple[int, int, int]) -> None:
    noop = task(name="gc_noop")(lambda: None)
    runner = TaskRunner()
    for _ in range(LARGE - 1):
        runner.submit(noop)
    assert gc.get_threshold() == restored_thresholds  # a small graph leaves the GC alone
    runner.submit(noop)
    assert runner._dispatch.gc_hold.held
    assert gc.get_threshold()[2] > restored_thresholds[2]
    assert runner.run().ok
    assert gc.get_threshold() == restored_thresholds
    assert not runner._dispatch.gc_hold.held
    runner.shutdown()


def test_submitted_but_never_run_graph_gives_the_hold_back_on_shutdown(
        restored_thresholds: tuple[int, int, int]) -> None:
    noop = task(name="gc_noop2")(lambda: None)
    with TaskRunner() as runner:
        for _ in range(LARGE):
            runner.submit(noop)
        assert gc.get_threshold() != restored_thresholds
    assert gc.get_threshold() == restored_thresholds
