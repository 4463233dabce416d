"""``%wfy_schedule``: scheduler jobs that each fire a whole sub-run of the session."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .. import Task
from ._cells import check_name
from ._exceptions import SessionError
from ._tables import timestamp

if TYPE_CHECKING:
    from .. import TaskRunner
    from ..schedule import Job, Scheduler
    from ._session import Session

__all__ = ["ScheduleBook"]


class _Scheduled:
    """A schedule entry: which tasks a job fires, and how its firings went."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.job: Job | None = None
        self.runs = 0
        self.last = "not fired yet"
        self.busy = threading.Lock()


class ScheduleBook:
    """``%wfy_schedule``: jobs of a :class:`~pyworkflowy_nb.schedule.Scheduler` that each fire a
    whole sub-run of the session (the named tasks plus their upstream) on a fresh runner.

    The scheduler's own runner (thread backend) only executes small "firing" tasks; each firing
    builds the sub-run from the *current* cell definitions and runs it to the end in its worker
    thread. A firing that comes due while the previous one of the same job is still going is
    skipped rather than stacked up.
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        self._lock = threading.Lock()
        self._scheduler: Scheduler | None = None
        self._runner: TaskRunner | None = None
        self._entries: list[_Scheduled] = []

    def _ensure_started(self) -> Scheduler:
        from .. import TaskRunner
        from ..schedule import Scheduler

        if self._scheduler is None:
            self._runner = TaskRunner(backend="thread", on_task_error="continue")
            self._scheduler = Scheduler(runner=self._runner)
        if not self._scheduler.running:
            self._scheduler.start()
        return self._scheduler

    def _firing(self, entry: _Scheduled) -> Task[[], str]:
        session = self._session

        def fire() -> str:
            if not entry.busy.acquire(blocking=False):
                return "skipped: the previous firing was still running"
            try:
                try:
                    results = session.run_detached(entry.names)
                except Exception as exc:
                    entry.last = f"error: {type(exc).__name__}: {exc}"
                    raise
                entry.runs += 1
                failed = [r.key for r in results.failed]
                entry.last = "ok" if not failed else f"failed: {', '.join(failed)}"
                return entry.last
            finally:
                entry.busy.release()

        label = "+".join(entry.names)
        fire.__qualname__ = fire.__name__ = f"wfy_schedule_{label}"
        return Task(fire, name=f"wfy-schedule:{label}", backend="thread")

    def _add(self, names: Sequence[str], make_job: Callable[[Scheduler, Task[[], str]], Job]
             ) -> Job:
        if not names:
            raise SessionError("name at least one task to schedule")
        for n in names:
            check_name(n)
        self._session.plan(names)  # unknown names and missing upstream fail now, not later
        entry = _Scheduled(tuple(dict.fromkeys(names)))
        with self._lock:
            scheduler = self._ensure_started()
            entry.job = make_job(scheduler, self._firing(entry))
            self._entries.append(entry)
        return entry.job

    def every(self, seconds: float, names: Sequence[str]) -> Job:
        """Fire ``names`` (and their upstream) every ``seconds``, first ``seconds`` from now."""
        label = " ".join(names)
        return self._add(names, lambda s, t: s.every(seconds, name=label).do(t))

    def cron(self, expression: str, names: Sequence[str]) -> Job:
        """Fire ``names`` (and their upstream) on a five-field cron expression."""
        from ..schedule import parse_cron

        try:
            parse_cron(expression)
        except ValueError as exc:
            raise SessionError(f"bad cron expression {expression!r}: {exc}") from None
        label = " ".join(names)
        return self._add(names, lambda s, t: s.cron(expression, name=label).do(t))

    def stop(self, names: Sequence[str] | None = None) -> int:
        """Cancel the schedules that fire any of ``names`` (all when None); return how many."""
        with self._lock:
            if names is None:
                chosen = list(self._entries)
            else:
                scheduled = {n for e in self._entries for n in e.names}
                for n in names:
                    if n not in scheduled:
                        listed = ", ".join(sorted(scheduled)) or "nothing is scheduled"
                        raise SessionError(f"no schedule fires {n!r} (scheduled: {listed})")
                chosen = [e for e in self._entries if set(e.names) & set(names)]
            for entry in chosen:
                if entry.job is not None:
                    entry.job.cancel()
                self._entries.remove(entry)
            if not self._entries and self._scheduler is not None:
                self._scheduler.stop()
            return len(chosen)

    @property
    def entries(self) -> list[_Scheduled]:
        with self._lock:
            return list(self._entries)

    def rows(self) -> list[dict[str, str]]:
        rows = []
        for e in self.entries:
            job = e.job
            assert job is not None
            rows.append({
                "tasks": " ".join(e.names),
                "trigger": job.describe(),
                "next": timestamp(job.next_fire_at, missing="-"),
                "runs": str(e.runs),
                "last": e.last,
            })
        return rows

    def close(self) -> None:
        self.stop(None)
        with self._lock:
            runner, self._runner = self._runner, None
            self._scheduler = None
        if runner is not None:
            runner.cancel_all()
            runner.shutdown(wait=False)

