"""An asyncio event loop on a MockClock's virtual time, for runners made with one.

Design decisions
----------------
* The loop is a stock ``SelectorEventLoop`` with two public seams replaced: ``time()`` reads
  the MockClock, so ``call_later`` (backoff waits, timeouts), ``asyncio.sleep`` and
  ``asyncio.timeout`` in task bodies all count virtual seconds; and the selector is wrapped, so
  the moment the loop would block is the moment it tells the clock it is idle, and until when.
  asyncio itself computes that deadline from its timer heap; nothing here reads its internals.
* The loop is a party of the clock (see ``_mockclock.py``). It is not idle while a callback
  sent from another thread waits to run (``call_soon_threadsafe`` counts them), nor while
  ``busy()`` says the dispatcher has attempts in flight on a thread, process or Dask lane: the
  clock may then not jump past their timeouts, because a real worker is still running them.
  Work an async task body hands to threads on its own (``run_in_executor``) is not counted;
  under autojump, await engine tasks on the thread lane instead.
* The loop registers with the clock when it is made, in the caller's thread, busy, so a
  scheduler thread that starts a run and goes back to waiting cannot jump before the run began.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import selectors
import threading
from collections.abc import Callable
from typing import Any

from ._mockclock import MockClock, Party

__all__ = ["VirtualTimeLoop", "loop_factory"]


class _IdleSelector(selectors.BaseSelector):
    """A selector that reports to the clock whenever its loop would wait."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._inner = selectors.DefaultSelector()
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def get_map(self) -> Any:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout <= 0:
            return self._inner.select(0)
        loop = self._loop
        if loop._pending_threadsafe:
            return self._inner.select(0)  # a callback from another thread is on its way
        deadline = None if timeout is None else loop.time() + timeout
        events: list[tuple[selectors.SelectorKey, int]] = loop._clock._idle_wait(
            loop._party, deadline, timeout, self._inner.select)
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose time is ``clock``'s; ``busy()`` is True while workers run attempts."""

    def __init__(self, clock: MockClock, busy: Callable[[], bool]) -> None:
        self._clock = clock
        self._pending_threadsafe = 0
        self._count_lock = threading.Lock()
        self._busy = busy
        self._party = Party(wake=self._wake, busy=self._is_busy)
        super().__init__(_IdleSelector(self))
        clock._add_party(self._party)

    def time(self) -> float:
        return self._clock.time()

    def _is_busy(self) -> bool:
        # A callback sent from another thread (a submission's wake-up) is work not yet seen,
        # even while the selector still sleeps: the clock must not jump over it.
        return self._pending_threadsafe > 0 or self._busy()

    def _wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # closed: nothing left to wake
            self.call_soon_threadsafe(_nothing)

    def call_soon_threadsafe(  # type: ignore[override]  # same call, looser annotation
            self, callback: Callable[..., Any], *args: Any,
            context: contextvars.Context | None = None) -> asyncio.Handle:
        with self._count_lock:
            self._pending_threadsafe += 1
        try:
            return super().call_soon_threadsafe(self._arrived, callback, args, context=context)
        except BaseException:
            self._arrived(_nothing, ())
            raise

    def _arrived(self, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        with self._count_lock:
            self._pending_threadsafe -= 1
        callback(*args)

    def close(self) -> None:
        self._clock._remove_party(self._party)
        super().close()


def _nothing() -> None:
    """A wake-up: running the loop once is the point."""


def loop_factory(clock: object,
                 busy: Callable[[], bool]) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A factory of virtual-time loops when ``clock`` is a MockClock, else None (stock loops).

    The loop is made at once, in the caller's thread (see the module docstring); the factory
    hands it out the first time and fresh ones afterwards.
    """
    if not isinstance(clock, MockClock):
        return None
    made: list[asyncio.AbstractEventLoop] = [VirtualTimeLoop(clock, busy)]

    def factory() -> asyncio.AbstractEventLoop:
        return made.pop() if made else VirtualTimeLoop(clock, busy)

    return factory
