"""Events: the one channel through which observers (the widget, an event log) see a run.

Emitting costs nothing when nobody listens: the runner checks ``bus.active`` before building an
event. Listeners run synchronously where the transition happens and must be quick; a listener
that raises is logged and otherwise ignored, so an observer can never break a run.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from ._arguments import check_file_path, check_runner

if TYPE_CHECKING:
    from ._context import Progress
    from ._handle import TaskHandle

__all__ = ["EventBus", "EventLog", "TaskEvent"]

logger = logging.getLogger("pyworkflowy_nb")

Listener = Callable[["TaskEvent"], None]


@dataclass(slots=True)
class TaskEvent:
    """One state transition of a handle, or the start/end of a run (``handle`` is None).

    Treat it as read-only. (It is not a frozen dataclass because freezing makes every event
    several times dearer to build, and a run of small tasks emits three per task.)
    """

    kind: str
    handle: TaskHandle[Any] | None
    time: float
    attempt: int = 0
    error: BaseException | None = None
    progress: Progress | None = None  # a "progress" event's report

    @property
    def key(self) -> str | None:
        return None if self.handle is None else self.handle.key

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind, "key": self.key, "time": self.time, "attempt": self.attempt,
            "error": None if self.error is None else repr(self.error),
        }
        if self.progress is not None:
            out["progress"] = {"fraction": self.progress.fraction,
                               "message": self.progress.message}
        return out


class EventBus:
    """A copy-on-write list of listeners: emitting never takes a lock."""

    __slots__ = ("_listeners", "_lock", "_now", "active")

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now  # the runner's clock: events carry its timestamps
        self._listeners: tuple[Listener, ...] = ()
        self._lock = threading.Lock()
        self.active = False  # a plain attribute: the dispatcher reads it per transition

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        if not callable(listener):
            raise TypeError(f"subscribe() needs a callable, got {listener!r}")
        with self._lock:
            self._listeners = (*self._listeners, listener)
            self.active = True

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(x for x in self._listeners if x is not listener)
                self.active = bool(self._listeners)

        return unsubscribe

    def emit(self, kind: str, handle: TaskHandle[Any] | None, attempt: int = 0,
             error: BaseException | None = None, when: float | None = None,
             progress: Progress | None = None) -> None:
        """Tell every listener; ``when`` is the transition's timestamp if the caller has it."""
        event = TaskEvent(kind, handle, self._now() if when is None else when, attempt, error,
                          progress)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                logger.exception("event listener %r failed on %s", listener, kind)


class EventLog:
    """Keeps every event of a runner in memory and, optionally, appends them as JSON lines.

    ``EventLog(runner)`` starts listening at once; ``close()`` stops it.
    """

    def __init__(self, runner: Any, path: str | None = None) -> None:
        check_runner("EventLog(runner)", runner, fix="pass the TaskRunner whose events to keep")
        check_file_path("EventLog(path=...)", path)
        self.events: list[TaskEvent] = []
        self._file: TextIO | None = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115
        self._lock = threading.Lock()
        self._unsubscribe = runner.subscribe(self._record)

    def _record(self, event: TaskEvent) -> None:
        with self._lock:
            self.events.append(event)
            if self._file is not None:
                self._file.write(json.dumps(event.as_dict()) + "\n")

    def kinds(self, key: str | None = None) -> list[str]:
        """Event kinds in order, for one task key or for everything."""
        return [e.kind for e in self.events if key is None or e.key == key]

    def close(self) -> None:
        self._unsubscribe()
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
