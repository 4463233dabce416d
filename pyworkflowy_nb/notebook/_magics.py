"""The IPython magics: ``%%task``, ``%wfy_run``, ``%wfy_schedule``, ``%wfy_status`` and friends.

The magics are the interface over the model, :class:`~._session.Session`: they parse arguments,
call the session and print; every decision about the DAG lives in the session, so it can be
tested without a kernel. Arguments are parsed with IPython's ``magic_arguments`` (``%wfy_run?``
shows the usage). The session raises :class:`~._exceptions.SessionError` for user mistakes (a bad
name, number, backend, an unknown task, a cycle); one decorator, :func:`_session_errors` on
every magic, turns them into ``UsageError``, which IPython shows as one line instead of a
traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from IPython.core import magic as _magic
from IPython.core import magic_arguments as _ma
from IPython.core.error import UsageError
from IPython.core.magic import Magics, magics_class

from ..exceptions import CheckpointError, DependencyFailedError
from ..validation import (
    MAX_WORKERS,
    MIN_INTERVAL,
    close_matches,
    seconds_ok,
    seconds_range,
    show,
)
from ._cells import check_name
from ._exceptions import SessionError
from ._loop import ParentPin
from ._plan import undefined_after
from ._run_view import RunView, finish_view, show_run, watch_background
from ._session import Run, Session
from ._tables import config_lines, status_rows, table, timestamp
from ._tracebacks import user_traceback

if TYPE_CHECKING:
    from .. import RunResults

__all__ = ["WorkflowMagics"]


F = TypeVar("F", bound=Callable[..., Any])

# Typed shims over IPython's (untyped) magic_arguments decorators.


class _Decorator(Protocol):
    def __call__(self, fn: F, /) -> F: ...


def magic_arguments() -> _Decorator:
    deco: _Decorator = _ma.magic_arguments()  # type: ignore[no-untyped-call]
    return deco


def argument(*args: Any, **kwargs: Any) -> _Decorator:
    deco: _Decorator = _ma.argument(*args, **kwargs)  # type: ignore[no-untyped-call]
    return deco


def line_magic(fn: F) -> F:
    return cast(F, _magic.line_magic(fn))


def cell_magic(fn: F) -> F:
    return cast(F, _magic.cell_magic(fn))


def parse_argstring(magic: Callable[..., Any], line: str) -> argparse.Namespace:
    try:
        ns: argparse.Namespace = _ma.parse_argstring(magic, line)  # type: ignore[no-untyped-call]
    except UsageError as exc:
        raise UsageError(_explain_unrecognized(magic, str(exc))) from None
    return ns


_UNRECOGNIZED = "unrecognized arguments: "


def _explain_unrecognized(magic: Callable[..., Any], message: str) -> str:
    """argparse's "unrecognized arguments" with the nearest option named, when there is one."""
    if not message.startswith(_UNRECOGNIZED):
        return message
    name = getattr(magic, "__name__", "")
    usage = f"%%{name}" if name == "task" else f"%{name}"
    parser = getattr(magic, "parser", None)
    known = sorted(o for o in getattr(parser, "_option_string_actions", {}) if o.startswith("--"))
    words = message[len(_UNRECOGNIZED):].split()
    for word in words:
        if not word.startswith("-") or word in known:
            continue
        flag = word.split("=", 1)[0]
        near = [o for o in known if o.startswith(flag)] or close_matches(flag, known)
        hint = f"did you mean {near[0]}? " if near else ""
        return f"{usage} has no option {flag}: {hint}`{usage}?` lists the options"
    return f"{usage}: {message} (`{usage}?` lists what it takes)"


# -- argument types: argparse turns ArgumentTypeError into "argument --x: <message>" ------------


def _int_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:  # not a whole number, or too many digits to read
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected a whole number >= {minimum}, got {show(text)}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(
                f"expected a whole number <= {maximum}, got {show(text)}")
        return value

    return parse


_whole = _int_at_least(0)
_positive_int = _int_at_least(1, MAX_WORKERS)


def _seconds_at_least(minimum: float, *, above: bool) -> Callable[[str], float]:
    # The engine's rule (finite, at most a year, at least ``minimum``) on the number typed.
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a number of seconds, got {show(text)}") from None
        if not seconds_ok(value, minimum, above):
            raise argparse.ArgumentTypeError(
                f"expected a positive, finite number of seconds {seconds_range(minimum, above)}"
                f" (a year), got {show(text)}")
        return value

    return parse


_seconds = _seconds_at_least(0.0, above=True)
_interval = _seconds_at_least(MIN_INTERVAL, above=False)


def _session_errors(magic: F) -> F:
    """The magic's session errors as ``UsageError``: IPython prints those as one line (only
    UsageError itself, not subclasses, hence a new exception rather than a subclass)."""

    @functools.wraps(magic)
    def translated(*args: Any, **kwargs: Any) -> Any:
        try:
            return magic(*args, **kwargs)
        except SessionError as exc:
            raise UsageError(str(exc)) from None

    return cast(F, translated)


@contextlib.contextmanager
def _checkpoint_trouble(session: Session) -> Iterator[None]:
    # A refused checkpoint (tampered, another key, another environment) stops the run with
    # the checkpointer's explanation and the ways out, without a traceback into the engine.
    try:
        yield
    except CheckpointError as exc:
        raise UsageError(
            f"{exc} (to go on without it: `%wfy_reset --checkpoint` deletes it, "
            "`%wfy_config --no-checkpoint` turns checkpoints off)"
        ) from None


def _unquote(text: str) -> str:
    # IPython splits magic lines without removing quotes.
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


_SCHEDULE_USAGE = (
    "use one of: `%wfy_schedule every SECONDS NAME [NAME ...]`, "
    "`%wfy_schedule cron \"M H DOM MON DOW\" NAME [NAME ...]`, `%wfy_schedule list`, "
    "`%wfy_schedule stop [NAME ...]`"
)


@magics_class
class WorkflowMagics(Magics):
    """Cell-tasks and runs of the notebook's workflow session."""

    def __init__(self, shell: Any, session: Session) -> None:
        super().__init__(shell)
        self.session = session

    # -- %%task ----------------------------------------------------------------------------------

    @magic_arguments()
    @argument("name", help="the task's name; its result is stored in the namespace under it")
    @argument(
        "--after", nargs="+", action="extend", default=[], metavar="TASK",
        help="tasks that must complete first; their results are available in the cell "
        "under their names",
    )
    @argument("--retries", type=_whole, default=0, help="extra attempts after a failure")
    @argument("--timeout", type=_seconds, default=None, help="seconds allowed per attempt")
    @argument("--cache", action="store_true",
              help="reuse a stored result of this cell (same code, same inputs), even from "
              "an earlier kernel; new results are stored in the engine's disk cache")
    @argument(
        "--backend", default=None, metavar="{thread,asyncio,process,dask}",
        help="where the cell runs: 'thread' (default), 'asyncio' (default when the cell uses "
        "await), 'process' (a worker process) or 'dask' (a Dask cluster: see %%wfy_config "
        "--dask); for the last two the cell and the values it uses are sent with cloudpickle",
    )
    @cell_magic
    @_session_errors
    def task(self, line: str, cell: str | None = None) -> None:
        """Define a task of the session DAG whose body is this cell; it is not run yet.

        The cell's last expression is the task's result. The cell sees the notebook's
        namespace plus the results of its --after tasks under their names; names it assigns
        stay inside the task. Running the cell again redefines the task. Run tasks with
        %wfy_run.
        """
        args = parse_argstring(self.task, line)
        if cell is None or not cell.strip():
            raise UsageError(
                f"%%task {args.name} has an empty body: put the task's code in the cell below "
                f"the %%task line (it is a cell magic, written with two %)"
            )
        session = self.session
        session.define(
            args.name, cell, after=args.after, retries=args.retries, timeout=args.timeout,
            backend=args.backend, cache=args.cache,
        )
        for note in undefined_after(session.tasks, args.name):
            print(f"wfy: warning: {note}", file=sys.stderr)
        if session.last_prime_error is not None:
            print(f"wfy: results were not restored: {session.last_prime_error}", file=sys.stderr)
        if session.last_primed:
            print(f"wfy: restored {', '.join(session.last_primed)} from the checkpoint "
                  "(not run; the cell's code is unchanged)")

    # -- %wfy_run --------------------------------------------------------------------------------

    @magic_arguments()
    @argument("names", nargs="*", metavar="NAME",
              help="tasks to run, with everything they need (default: every task)")
    @argument("-b", "--background", action="store_true",
              help="return at once; results land in the namespace as tasks finish")
    @argument("--max-workers", type=_positive_int, default=None, metavar="N",
              help="how many tasks may run at the same time")
    @argument("--no-widget", action="store_true",
              help="print a text summary instead of showing the live widget")
    @argument("--raise", dest="raise_", action="store_true",
              help="make the cell fail with the first task error (for notebook tests)")
    @argument("--force", action="store_true",
              help="run every needed task even if the checkpoint holds its result (the new "
              "results replace the stored ones)")
    @line_magic
    @_session_errors
    def wfy_run(self, line: str) -> None:
        """Run the session DAG, or the named tasks and their upstream, on a fresh runner.

        Shows a live view of the run, stores each completed result in the namespace under its
        task's name, and prints what failed. Tasks restored from the session checkpoint do not
        run again.
        """
        args = parse_argstring(self.wfy_run, line)
        for n in args.names:
            check_name(n)
        session = self.session
        session.check_idle()
        # A blocking run holds this cell; whatever its threads send must carry its header.
        pin = None if args.background else ParentPin.capture()
        with _checkpoint_trouble(session):
            run = session.build(
                args.names or None,
                max_workers=args.max_workers,
                listeners=[pin.listener] if pin is not None else [],
                restore=not args.force,
            )
        view = None if args.no_widget else _show_widget(run, background=args.background)
        session.start(run, background=args.background)
        if args.background:
            if view is not None:
                watch_background(view)
            print(
                f"wfy: running {len(run.handles)} task(s) in the background; results land in "
                "the namespace as they finish (%wfy_status shows progress)"
            )
            return
        try:
            results = session.wait(run)
        finally:
            if view is not None:
                # The static picture replaces the widget while this cell is still the parent
                # of what is sent (an interrupted run is drawn as it was left, too).
                view.finish()
        _report(run, results, verbose=view is None)
        _raise_first(results, args.raise_)

    # -- %wfy_wait -------------------------------------------------------------------------------

    @magic_arguments()
    @argument("--timeout", type=_seconds, default=None, metavar="SECONDS",
              help="give up waiting after this long (the run goes on)")
    @argument("--raise", dest="raise_", action="store_true",
              help="make the cell fail with the first task error (for notebook tests)")
    @line_magic
    @_session_errors
    def wfy_wait(self, line: str) -> None:
        """Wait for the latest run (one started with %wfy_run --background) to end.

        Its results are in the namespace afterwards, its output shows the final picture, and
        what failed is printed as after a blocking %wfy_run.
        """
        args = parse_argstring(self.wfy_wait, line)
        session = self.session
        try:
            results = session.wait_for_run(args.timeout)
        except TimeoutError as exc:
            raise UsageError(str(exc)) from None
        run = session.last_run
        assert run is not None  # wait_for_run refuses a session without a run
        shown = finish_view(run)
        _report(run, results, verbose=not shown)
        _raise_first(results, args.raise_)

    # -- %wfy_schedule ---------------------------------------------------------------------------

    @magic_arguments()
    @argument("action", metavar="ACTION", help="every | cron | list | stop")
    @argument("rest", nargs=argparse.REMAINDER, metavar="...",
              help="every SECONDS NAME...; cron \"EXPR\" NAME...; list; stop [NAME...]")
    @line_magic
    @_session_errors
    def wfy_schedule(self, line: str) -> None:
        """Run tasks (with their upstream) periodically in the background.

        Examples::

            %wfy_schedule every 60 refresh
            %wfy_schedule cron "*/5 * * * *" refresh report
            %wfy_schedule list
            %wfy_schedule stop refresh
            %wfy_schedule stop

        Each firing runs the tasks with the cells' current code (never restoring from the
        checkpoint) and stores fresh results in the namespace.
        """
        args = parse_argstring(self.wfy_schedule, line)
        self._schedule(args.action, [_unquote(x) for x in args.rest])

    def _schedule(self, action: str, rest: list[str]) -> None:
        book = self.session.schedules
        if action == "every":
            if len(rest) < 2:
                raise UsageError(f"every needs SECONDS and at least one NAME; {_SCHEDULE_USAGE}")
            try:
                seconds = _interval(rest[0])
            except argparse.ArgumentTypeError as exc:
                raise UsageError(f"every: {exc}") from None
            job = book.every(seconds, rest[1:])
            print(f"wfy: scheduled {' '.join(rest[1:])} {job.describe()}; next at "
                  f"{timestamp(job.next_fire_at, missing='never')}")
        elif action == "cron":
            if len(rest) == 1:
                raise UsageError(f"cron needs an expression and at least one NAME; "
                                 f"{_SCHEDULE_USAGE}")
            expr, names = _split_cron(rest)
            job = book.cron(expr, names)
            print(f"wfy: scheduled {' '.join(names)} {job.describe()}; next at "
                  f"{timestamp(job.next_fire_at, missing='never')}")
        elif action == "list":
            if rest:
                raise UsageError(f"list takes no arguments, got {' '.join(rest)!r}")
            rows = book.rows()
            if not rows:
                print("wfy: nothing is scheduled")
            else:
                print(table(rows))
        elif action == "stop":
            stopped = book.stop(rest or None)
            print(f"wfy: stopped {stopped} schedule(s)")
        else:
            raise UsageError(f"unknown %wfy_schedule action {action!r}; {_SCHEDULE_USAGE}")

    # -- %wfy_status, %wfy_reset, %wfy_cancel -----------------------------------------------------

    @magic_arguments()
    @line_magic
    @_session_errors
    def wfy_status(self, line: str) -> None:
        """Show the session's tasks, their latest outcome, the current run and schedules."""
        parse_argstring(self.wfy_status, line)
        session = self.session
        rows = status_rows(session)
        print(table(rows) if rows else "wfy: no tasks defined yet (write a `%%task NAME` cell)")
        run = session.last_run
        if run is not None and not run.done:
            finished = sum(1 for h in run.handles.values() if h.status.terminal)
            print(f"wfy: a run is going: {finished}/{len(run.handles)} task(s) finished")
        schedules = session.schedules.rows()
        if schedules:
            print(f"wfy: {len(schedules)} schedule(s) active (%wfy_schedule list)")
        for text in config_lines(session):
            print(f"wfy: {text}")

    @magic_arguments()
    @argument("names", nargs="*", metavar="NAME",
              help="tasks to forget (default: every task, and stop every schedule)")
    @argument("--checkpoint", action="store_true",
              help="also delete the session's checkpoint, so every task runs again")
    @line_magic
    @_session_errors
    def wfy_reset(self, line: str) -> None:
        """Forget task definitions (their values stay in the namespace).

        Without names: cancel a running run, stop every schedule and forget every task.
        With --checkpoint: delete the stored results as well.
        """
        args = parse_argstring(self.wfy_reset, line)
        session = self.session
        if args.checkpoint:
            session.check_idle()  # a running run is still writing to it
        if args.names:
            dropped = session.forget(args.names)
        else:
            session.schedules.stop(None)
            session.cancel()
            dropped = session.forget(None)
        print(f"wfy: forgot {len(dropped)} task(s)")
        if args.checkpoint:
            deleted = session.delete_checkpoint()
            print("wfy: deleted the checkpoint" if deleted else "wfy: there was no checkpoint")

    @magic_arguments()
    @argument("--checkpoint", metavar="PATH", default=None,
              help="checkpoint results to this file (cloudpickle, signed)")
    @argument("--no-checkpoint", action="store_true", help="turn checkpointing off")
    @argument("--default-checkpoint", action="store_true",
              help="checkpoint to .wfy/<notebook>.ckpt beside the notebook (the default)")
    @argument("--max-workers", type=_positive_int, default=None, metavar="N",
              help="default number of tasks running at once for %%wfy_run")
    @argument("--dask", metavar="ADDRESS", default=None,
              help="run --backend dask cells on the Dask scheduler at ADDRESS (default: the "
              "distributed.Client made in the notebook)")
    @line_magic
    @_session_errors
    def wfy_config(self, line: str) -> None:
        """Show or change the session's settings (checkpoint file, default max workers)."""
        args = parse_argstring(self.wfy_config, line)
        session = self.session
        choices = [args.checkpoint is not None, args.no_checkpoint, args.default_checkpoint]
        if sum(choices) > 1:
            raise UsageError(
                "pick one of --checkpoint PATH, --no-checkpoint and --default-checkpoint"
            )
        if args.checkpoint is not None:
            session.configure_checkpoint(_unquote(args.checkpoint))
        elif args.no_checkpoint:
            session.configure_checkpoint(False)
        elif args.default_checkpoint:
            session.configure_checkpoint(True)
        if args.max_workers is not None:
            session.max_workers = args.max_workers
        if args.dask is not None:
            session.dask.configure(_unquote(args.dask))
        for text in config_lines(session):
            print(f"wfy: {text}")

    @magic_arguments()
    @line_magic
    @_session_errors
    def wfy_cancel(self, line: str) -> None:
        """Cancel the run that is going (e.g. one started with %wfy_run --background)."""
        parse_argstring(self.wfy_cancel, line)
        if self.session.cancel():
            print("wfy: cancelling the current run")
        else:
            print("wfy: no run is going")


# -- helpers -------------------------------------------------------------------------------------


def _raise_first(results: RunResults, wanted: bool) -> None:
    if wanted and not results.ok:
        first = _root_failures(results)[0]
        raise first.error if first.error is not None else RuntimeError(first.status.value)


def _show_widget(run: Run, *, background: bool) -> RunView | None:
    """Display the live view of ``run``; None (text output instead) if it cannot be built."""
    try:
        from ._widget import RunnerWidget
    except ImportError:
        return None
    try:
        widget = RunnerWidget(run.runner)
    except ImportError:
        return None
    except Exception as exc:  # a view must never stop a run from happening
        print(f"wfy: the live view failed ({type(exc).__name__}: {exc}); "
              "showing a text summary instead", file=sys.stderr)
        return None
    return show_run(run, widget, background=background)


def _root_failures(results: RunResults) -> list[Any]:
    failed = list(results.failed)
    roots = [r for r in failed if not isinstance(r.error, DependencyFailedError)]
    return roots or failed


def _report(run: Run, results: RunResults, *, verbose: bool) -> None:
    """Print what happened: a table without the widget, and every real failure in any case."""
    counts: dict[str, int] = {}
    for key in run.handles:
        res = results[key]
        label = "restored" if res.restored else res.status.value
        counts[label] = counts.get(label, 0) + 1
    if verbose:
        rows = []
        for key in run.handles:
            res = results[key]
            rows.append({"task": key, "status": "restored" if res.restored else res.status.value,
                         "attempts": str(res.attempts)})
        print(table(rows))
    order = ("completed", "restored", "failed", "skipped", "cancelled")
    summary = ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k))
    if verbose or not results.ok:
        print(f"wfy: {summary}")
    if results.ok:
        return
    for res in results.failed:
        if isinstance(res.error, DependencyFailedError):
            print(f"wfy: {res.error}", file=sys.stderr)  # the message names the task
    for res in _root_failures(results):
        if res.error is None or isinstance(res.error, DependencyFailedError):
            continue
        print(f"wfy: task {res.key!r} failed after {res.attempts} attempt(s):", file=sys.stderr)
        # Only the cell's frames and the user code below them: the engine's are noise here.
        print(user_traceback(res.error).rstrip(), file=sys.stderr)


def _split_cron(rest: Sequence[str]) -> tuple[str, list[str]]:
    # Either one quoted expression then names, or five bare fields then names.
    if len(rest[0].split()) > 1:
        return rest[0], list(rest[1:])
    if len(rest) >= 6:
        return " ".join(rest[:5]), list(rest[5:])
    raise UsageError(
        f"cron needs a five-field expression, quoted: %wfy_schedule cron \"*/5 * * * *\" NAME "
        f"(got {shlex.join(rest)!r})"
    )
