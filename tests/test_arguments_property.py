"""Property tests: every public argument refuses a bad value at the call, naming it.

Each knob below carries an oracle written from the rule documented in
docs/pages/guide/errors.md ("Argument bounds"). Hypothesis draws values of every kind (numbers
inside and outside the range, NaN, infinities, huge integers, bools, strings, None, containers)
and checks that the knob accepts exactly what its rule accepts, and that everything else raises
ValueError or TypeError, at the call, with a message that names the knob. The magics show user
mistakes as IPython's one-line UsageError instead (the notebook layer's convention); they are
checked the same way through their real argument parsing, in-process.

The regression tests at the end pin the findings of issue 9 one by one; the ones that used to
hang now fail at the call, so none of them starts a run.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError

from pyworkflowy_nb import EventLog, TaskBase, TaskRunner, task
from pyworkflowy_nb._policy import RetryPolicy
from pyworkflowy_nb.notebook import SessionError
from pyworkflowy_nb.notebook._magics import WorkflowMagics, parse_argstring
from pyworkflowy_nb.schedule import CronExpression, Scheduler, SystemClock, parse_cron
from pyworkflowy_nb.testing import MockClock

YEAR = 365 * 24 * 3600
START = datetime(2024, 1, 1, 9, 0)

SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def noop() -> int:
    return 7


# -- what hypothesis draws -----------------------------------------------------------------------

_EDGES: list[Any] = [
    0, 0.0, -0.0, 1, -1, 0.001, math.nextafter(0.001, 0), 1e-12, YEAR, YEAR + 1,
    math.nextafter(YEAR, math.inf), 1e300, -1e300, 10**400, -(10**400), 2**1024,
    math.nan, math.inf, -math.inf, True, False, None, "1", "", b"1", [], {}, (1,), [1.0],
    object(), timedelta(seconds=1), timedelta(microseconds=1), timedelta.max,
]
ANY_VALUE = st.one_of(
    st.sampled_from(_EDGES),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-1.0, max_value=2.0 * YEAR),  # dense around the valid range
    st.integers(min_value=-(10**6), max_value=10**8),
    st.integers(min_value=10**300, max_value=10**500),
    st.text(max_size=5),
)
# What a user can type after a magic's option: numbers as written, words, nothing at all.
TYPED = st.one_of(
    ANY_VALUE.filter(lambda v: isinstance(v, int | float) and not isinstance(v, bool)).map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "1e-12", "0x10", "1_000", "+3", "abc",
                     "3.", ".5", "1e3", "--", ""]),
    st.text(alphabet="0123456789.-+eEinfa_", max_size=8),
)


def _plain_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def seconds_rule(*, minimum: float = 0.0, above: bool = False, none: bool = False,
                 timedeltas: bool = False) -> Callable[[object], bool]:
    """The documented rule for a knob measured in seconds."""

    def valid(value: object) -> bool:
        if value is None:
            return none
        if timedeltas and isinstance(value, timedelta):
            value = value.total_seconds()
        if not _plain_number(value):
            return False
        assert isinstance(value, int | float)
        if isinstance(value, float) and not math.isfinite(value):
            return False
        low_ok = value > minimum if above else value >= minimum
        return low_ok and value <= YEAR

    return valid


def count_rule(*, minimum: int | None = 0, maximum: int | None = None,
               none: bool = False) -> Callable[[object], bool]:
    def valid(value: object) -> bool:
        if value is None:
            return none
        if isinstance(value, bool) or not isinstance(value, int):
            return False
        return (minimum is None or value >= minimum) and (maximum is None or value <= maximum)

    return valid


# -- the knobs -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Knob:
    """One public argument: how to pass it, its rule, and what its message must name."""

    label: str  # the test id
    named: str  # what the error message must contain
    apply: Callable[[Any], object]  # passes the value; returns what was stored (or None)
    valid: Callable[[object], bool]
    stored: bool = True  # whether apply() returns the accepted value, to compare

    def __repr__(self) -> str:
        return self.label


def _class_task(**attrs: Any) -> Any:
    cls = type("Configured", (TaskBase,), {"run": lambda self: 7, **attrs})
    return cls()


def _runner_with_done_handle() -> Any:
    runner = TaskRunner()
    handle = runner.submit(noop)
    runner.run()
    return handle


_DONE = _runner_with_done_handle()
_RUNNER = TaskRunner()


def _every(value: Any) -> float:
    scheduler = Scheduler(_RUNNER, clock=MockClock(START))
    job = scheduler.every(value).do(noop)
    job.cancel()
    assert job.interval is not None
    return job.interval.total_seconds()  # an Interval: seconds that also read as a timedelta


SECONDS_KNOBS = [
    Knob("task.timeout", "timeout", lambda v: task(timeout=v)(noop).timeout,
         seconds_rule(above=True, none=True)),
    Knob("task.backoff_base", "backoff_base",
         lambda v: task(backoff_base=v)(noop).retry.backoff_base, seconds_rule()),
    Knob("task.backoff_max", "backoff_max",
         lambda v: task(backoff_max=v)(noop).retry.backoff_max, seconds_rule()),
    Knob("task.jitter", "jitter", lambda v: task(jitter=v)(noop).retry.jitter, seconds_rule()),
    Knob("TaskBase.timeout", "timeout", lambda v: _class_task(timeout=v).timeout,
         seconds_rule(above=True, none=True)),
    Knob("TaskBase.jitter", "jitter", lambda v: _class_task(jitter=v).retry.jitter,
         seconds_rule()),
    Knob("runner.checkpoint_interval", "checkpoint_interval",
         lambda v: TaskRunner(checkpoint_interval=v).checkpoint_interval, seconds_rule()),
    # poll_interval=None (the default) leaves tick_seconds, its 0.1.0 name, in charge.
    Knob("scheduler.poll_interval", "poll_interval",
         lambda v: Scheduler(_RUNNER, clock=MockClock(START), poll_interval=v),
         seconds_rule(minimum=0.001, none=True), stored=False),
    Knob("scheduler.tick_seconds", "tick_seconds",
         lambda v: Scheduler(_RUNNER, clock=MockClock(START), tick_seconds=v),
         seconds_rule(minimum=0.001), stored=False),
    Knob("scheduler.every", "every(seconds)", _every,
         seconds_rule(minimum=0.001, timedeltas=True)),
    Knob("scheduler.stop", "stop(timeout", lambda v: Scheduler(_RUNNER).stop(timeout=v),
         seconds_rule(none=True), stored=False),
    Knob("handle.result", "result(timeout", lambda v: _DONE.result(timeout=v),
         seconds_rule(none=True), stored=False),
]

COUNT_KNOBS = [
    Knob("task.retries", "retries", lambda v: task(retries=v)(noop).retries,
         count_rule(none=True)),
    Knob("task.max_attempts", "max_attempts",
         lambda v: task(max_attempts=v)(noop).max_attempts, count_rule(minimum=1, none=True),
         stored=False),
    Knob("task.priority", "priority", lambda v: task(priority=v)(noop).priority,
         count_rule(minimum=None)),
    Knob("TaskBase.retries", "retries", lambda v: _class_task(retries=v).retries,
         count_rule(none=True), stored=False),
    Knob("runner.max_workers", "max_workers", lambda v: TaskRunner(max_workers=v).max_workers,
         count_rule(minimum=1, maximum=10**6, none=True)),
]


def _choice_knob(label: str, named: str, make: Callable[[Any], object],
                 choices: tuple[str, ...], *, none: bool = False) -> Knob:
    return Knob(label, named, make,
                lambda v: (none and v is None) or (isinstance(v, str) and v in choices),
                stored=False)


CHOICE_KNOBS = [
    _choice_knob("task.backend", "backend", lambda v: task(backend=v)(noop),
                 ("asyncio", "thread", "process", "dask"), none=True),
    _choice_knob("task.backoff", "backoff", lambda v: task(backoff=v)(noop),
                 ("none", "linear", "exponential")),
    _choice_knob("task.on_dep_failure", "on_dep_failure", lambda v: task(on_dep_failure=v)(noop),
                 ("fail", "skip", "run-anyway")),
    # "dask" is a valid name that needs an executor: a separate, tested rule.
    _choice_knob("runner.backend", "backend", lambda v: TaskRunner(backend=v),
                 ("asyncio", "thread", "process")),
    _choice_knob("runner.on_task_error", "on_task_error", lambda v: TaskRunner(on_task_error=v),
                 ("raise", "log", "continue")),
]


def _is_exception_class(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseException)


def _submit_with_key(value: Any) -> object:
    return TaskRunner().submit(noop, task_key=value).key


def _submit_with_runner(value: Any) -> object:
    with TaskRunner():  # runner=None means this bound one
        return task(noop).submit(runner=value)


def _scheduler_for(value: Any) -> object:
    with TaskRunner():
        return Scheduler(value, clock=MockClock(START))


TYPE_KNOBS = [
    Knob("task.retry_on", "retry_on", lambda v: task(retry_on=v)(noop),
         lambda v: _is_exception_class(v) or (
             isinstance(v, tuple) and bool(v) and all(_is_exception_class(x) for x in v)),
         stored=False),
    Knob("task.version", "version", lambda v: task(version=v)(noop).version,
         lambda v: v is None or isinstance(v, str)),
    Knob("task.name", "name", lambda v: task(name=v)(noop).name,
         lambda v: v is None or (isinstance(v, str) and bool(v))),
    Knob("submit.task_key", "task_key", _submit_with_key,
         lambda v: v is None or (isinstance(v, str) and bool(v)), stored=False),
    Knob("submit.runner", "runner", _submit_with_runner,
         lambda v: v is None or isinstance(v, TaskRunner), stored=False),
    Knob("scheduler.runner", "runner", _scheduler_for,
         lambda v: v is None or isinstance(v, TaskRunner), stored=False),
    # A clock is a Clock, or (as in 0.1.0) a function returning epoch seconds; a class is neither.
    Knob("scheduler.clock", "clock", lambda v: Scheduler(_RUNNER, clock=v),
         lambda v: v is None or isinstance(v, MockClock | SystemClock)
         or (callable(v) and not isinstance(v, type)), stored=False),
    Knob("scheduler.every.name", "name",
         lambda v: Scheduler(_RUNNER, clock=MockClock(START)).every(5, name=v),
         lambda v: v is None or (isinstance(v, str) and bool(v)), stored=False),
    Knob("runner.executors", "executor", lambda v: TaskRunner(executors=v),
         lambda v: v is None or v == {}, stored=False),
    Knob("runner.checkpointer", "checkpointer", lambda v: TaskRunner(checkpointer=v),
         lambda v: v is None, stored=False),
    Knob("eventlog.runner", "runner", EventLog, lambda v: isinstance(v, TaskRunner),
         stored=False),
    Knob("systemclock.tz", "tz", SystemClock,
         lambda v: v is None or isinstance(v, timezone), stored=False),
]

TYPE_VALUES = st.one_of(
    ANY_VALUE,
    st.sampled_from([ValueError, OSError, KeyboardInterrupt, int, ValueError(), (ValueError,),
                     (ValueError, int), (), [ValueError], _RUNNER, MockClock(START),
                     SystemClock(), UTC, {"threadz": None}, {"thread": 5},
                     "threads", "x", ThreadPoolExecutor(1)]),
)


def check_knob(knob: Knob, value: Any) -> None:
    if knob.valid(value):
        result = knob.apply(value)
        if knob.stored and value is not None:  # None means "the default"
            expected = value.total_seconds() if isinstance(value, timedelta) else value
            if isinstance(expected, float):
                # every() keeps a timedelta, which holds whole microseconds.
                assert result == pytest.approx(expected, rel=0, abs=1e-6)
            else:
                assert result == expected
        return
    with pytest.raises((ValueError, TypeError)) as info:
        knob.apply(value)
    assert knob.named in str(info.value), (knob, value, info.value)


@pytest.mark.parametrize("knob", SECONDS_KNOBS + COUNT_KNOBS, ids=repr)
@SETTINGS
@given(value=ANY_VALUE)
def test_number_knobs_accept_exactly_their_rule(knob: Knob, value: Any) -> None:
    check_knob(knob, value)


@pytest.mark.parametrize("knob", CHOICE_KNOBS, ids=repr)
@SETTINGS
@given(value=st.one_of(ANY_VALUE, st.sampled_from(["asyncio", "thread", "process", "none",
                                                   "linear", "exponential", "fail", "skip",
                                                   "run-anyway", "raise", "log", "continue",
                                                   "Thread", "threads", "linear "])))
def test_choice_knobs_accept_exactly_their_choices(knob: Knob, value: Any) -> None:
    check_knob(knob, value)


@pytest.mark.parametrize("knob", TYPE_KNOBS, ids=repr)
@SETTINGS
@given(value=TYPE_VALUES)
def test_typed_knobs_accept_exactly_their_types(knob: Knob, value: Any) -> None:
    check_knob(knob, value)


@SETTINGS
@given(value=ANY_VALUE)
def test_messages_name_the_value(value: Any) -> None:
    # The seconds knobs all share one rule; its message shows the value (huge ints by size).
    if seconds_rule()(value):
        return
    with pytest.raises((ValueError, TypeError)) as info:
        task(backoff_base=value)(noop)
    message = str(info.value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**64:
        assert "digits" in message and str(value)[:20] not in message
    else:
        assert repr(value)[:40] in message


@SETTINGS
@given(base=st.floats(0, YEAR), cap=st.floats(0, YEAR), jitter=st.floats(0, YEAR),
       backoff=st.sampled_from(["none", "linear", "exponential"]),
       attempt=st.integers(1, 10**6))
def test_accepted_backoff_always_gives_a_delay_the_loop_can_sleep_on(
        base: float, cap: float, jitter: float, backoff: str, attempt: int) -> None:
    policy = task(retries=3, backoff=backoff, backoff_base=base, backoff_max=cap,
                  jitter=jitter)(noop).retry
    assert isinstance(policy, RetryPolicy)
    delay = policy.delay(attempt)
    assert math.isfinite(delay) and 0 <= delay <= cap + jitter


@SETTINGS
@given(expr=st.one_of(
    st.text(alphabet="0123456789*/-, @JANFEBMONSUNhourlydai", max_size=24),
    st.lists(st.sampled_from(["*", "*/5", "0", "59", "60", "1-5", "5-1", "MON", "jan", "0/5",
                              "1,2", ",", "99999999999999999999", "*/0", "7", "L", ""]),
             min_size=0, max_size=7).map(" ".join),
    st.sampled_from([None, 5, b"* * * * *", ["*"] * 5, "@hourly", "@weekly ", "@sometimes"]),
))
def test_cron_expressions_parse_or_name_the_problem(expr: Any) -> None:
    scheduler = Scheduler(_RUNNER, clock=MockClock(START))
    try:
        parsed = parse_cron(expr)
    except (ValueError, TypeError) as exc:
        assert "cron" in str(exc)
        with pytest.raises(type(exc)):
            scheduler.cron(expr)
    else:
        assert isinstance(parsed, CronExpression)
        assert parsed.next_after(START) > START
        job = scheduler.cron(expr).do(noop)
        assert job.next_fire is not None and job.next_fire > START


# -- the magics, through their real argument parsing ---------------------------------------------

def _typed_seconds(text: str, minimum: float, above: bool) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return seconds_rule(minimum=minimum, above=above)(value)


def _typed_count(text: str, minimum: int, maximum: int | None = None) -> bool:
    try:
        value = int(text)
    except ValueError:
        return False
    return value >= minimum and (maximum is None or value <= maximum)


def _parses(magics: WorkflowMagics, magic: str, line: str, option: str, ok: bool) -> None:
    method = getattr(magics, magic)
    if ok:
        parse_argstring(method, line)
        return
    with pytest.raises(UsageError, match=f"argument {option}"):
        parse_argstring(method, line)


@SETTINGS
@given(text=TYPED)
def test_task_magic_timeout_and_retries(magics: WorkflowMagics, text: str) -> None:
    _parses(magics, "task", f"a --timeout {text}", "--timeout",
            _typed_seconds(text, 0.0, above=True))
    _parses(magics, "task", f"a --retries {text}", "--retries", _typed_count(text, 0))


@SETTINGS
@given(text=TYPED)
def test_run_and_config_magics_max_workers(magics: WorkflowMagics, text: str) -> None:
    ok = _typed_count(text, 1, 10**6)
    _parses(magics, "wfy_run", f"--max-workers {text}", "--max-workers", ok)
    _parses(magics, "wfy_config", f"--max-workers {text}", "--max-workers", ok)


@SETTINGS
@given(text=TYPED.filter(lambda t: t and not t.startswith("-")))
def test_schedule_magic_every_seconds(magics: WorkflowMagics, text: str) -> None:
    # A good interval gets past the argument check and stops at the next one: no task 'nope'.
    magics.session.define("a", "1")
    expected = "unknown task 'nope'" if _typed_seconds(text, 0.001, above=False) else "every: "
    with pytest.raises(UsageError, match=expected):
        magics.wfy_schedule(f"every {text} nope")


# -- the findings of issue 9, one by one -----------------------------------------------------------

@pytest.mark.parametrize("option", ["backoff_base", "jitter", "backoff_max"])
def test_infinite_backoff_is_refused_before_any_run(option: str) -> None:
    # These used to make run() wait forever for a retry scheduled at +inf.
    with pytest.raises(ValueError, match=rf"{option} must be a finite number .*, got inf"):
        task(retries=2, backoff="linear", **{option: math.inf})(noop)


def test_infinite_checkpoint_interval_is_refused_at_the_runner(tmp_path: Path) -> None:
    # It used to kill the writer thread with OverflowError during the run.
    with pytest.raises(ValueError, match=r"checkpoint_interval .*got inf"):
        TaskRunner(checkpoint_path=tmp_path / "c.json", checkpoint_interval=math.inf)
    assert not (tmp_path / "c.json").exists()


@pytest.mark.parametrize("seconds", [1e-12, 0.0009, timedelta(microseconds=1), 1e300, 10**400,
                                     YEAR + 1, timedelta.max, timedelta(days=366)],
                         ids=str)
def test_every_refuses_intervals_too_small_or_too_large(seconds: Any) -> None:
    scheduler = Scheduler(_RUNNER, clock=MockClock(START))
    with pytest.raises(ValueError, match=r"every\(seconds\) must be"):
        scheduler.every(seconds)
    assert len(scheduler) == 0


@pytest.mark.parametrize("seconds", [0.001, 1, YEAR, timedelta(milliseconds=1),
                                     timedelta(days=365)], ids=str)
def test_every_accepts_its_bounds(seconds: Any) -> None:
    assert _every(seconds) == (seconds.total_seconds() if isinstance(seconds, timedelta)
                               else seconds)


def test_infinite_timeout_points_to_none() -> None:
    with pytest.raises(ValueError, match="use timeout=None for no timeout"):
        task(timeout=math.inf)(noop)
    assert task(timeout=None)(noop).timeout is None


def test_empty_retry_on_is_refused() -> None:
    with pytest.raises(ValueError, match=r"retry_on=\(\) retries nothing.*retries=0"):
        task(retries=3, retry_on=())(noop)


@pytest.mark.parametrize("as_path", [str, Path], ids=["str", "Path"])
def test_checkpoint_path_that_is_a_directory_fails_at_the_runner(
        tmp_path: Path, as_path: Callable[[Path], Any]) -> None:
    with pytest.raises(ValueError) as info:
        TaskRunner(checkpoint_path=as_path(tmp_path))
    message = str(info.value)
    assert repr(os.fspath(tmp_path)) in message and "is a directory" in message
    assert os.path.join(os.fspath(tmp_path), "checkpoint.json") in message  # the fix


@pytest.mark.parametrize("executors", [[ThreadPoolExecutor(1)], ThreadPoolExecutor(1), "thread",
                                       ("thread",)], ids=["list", "pool", "str", "tuple"])
def test_executors_that_are_not_a_mapping(executors: Any) -> None:
    with pytest.raises(TypeError, match=r"executors must be a mapping .*\{'thread': pool\}"):
        TaskRunner(executors=executors)


def test_scheduler_runner_is_checked_at_the_call() -> None:
    with pytest.raises(TypeError, match=r"Scheduler\(runner=\.\.\.\) must be a TaskRunner, "
                                        r"got 5 \(int\)"):
        Scheduler(runner=5)  # type: ignore[arg-type]
    with TaskRunner() as runner:  # runner=None still means the bound one
        assert Scheduler(runner=None).runner is runner


@pytest.mark.parametrize("make", [
    lambda v: task(timeout=v)(noop),
    lambda v: task(backoff_base=v)(noop),
    lambda v: task(backoff_max=v)(noop),
    lambda v: task(jitter=v)(noop),
    lambda v: TaskRunner(checkpoint_interval=v),
    lambda v: Scheduler(_RUNNER, poll_interval=v),
    lambda v: Scheduler(_RUNNER).every(v),
    lambda v: Scheduler(_RUNNER).stop(timeout=v),
    lambda v: _DONE.result(timeout=v),
    lambda v: MockClock(START).advance(v),
], ids=["timeout", "backoff_base", "backoff_max", "jitter", "checkpoint_interval",
        "poll_interval", "every", "stop", "result", "advance"])
@pytest.mark.parametrize("huge", [10**400, -(10**400), 1e300, math.inf, math.nan],
                         ids=["10**400", "-10**400", "1e300", "inf", "nan"])
def test_huge_values_for_float_knobs_are_value_errors(make: Callable[[Any], object],
                                                      huge: Any) -> None:
    # OverflowError is not a ValueError: pytest.raises(ValueError) tells them apart.
    with pytest.raises(ValueError):
        make(huge)


def test_other_collaborators_are_checked_at_the_call() -> None:
    with pytest.raises(TypeError, match=r"submit\(runner=\.\.\.\) must be a TaskRunner"):
        task(noop).submit(runner="runner")
    with pytest.raises(TypeError, match=r"EventLog\(runner\) must be a TaskRunner"):
        EventLog(5)
    with pytest.raises(TypeError, match=r"SystemClock\(tz=\.\.\.\) must be a tzinfo"):
        SystemClock(tz="Europe/Paris")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [5, b"log.jsonl", "", ["log.jsonl"]], ids=str)
def test_event_log_path_is_a_file_path(bad: Any, tmp_path: Path) -> None:
    # An int used to be opened as a file descriptor and written to.
    with pytest.raises(TypeError, match=r"EventLog\(path=\.\.\.\) must be a file path"):
        EventLog(_RUNNER, path=bad)
    with pytest.raises(ValueError, match="is a directory"):
        EventLog(_RUNNER, path=tmp_path)  # type: ignore[arg-type]


def test_magics_refuse_what_the_engine_refuses(magics: WorkflowMagics, tmp_path: Path) -> None:
    for text in ("inf", "1e400", "nan", "1e300", "0"):
        with pytest.raises(UsageError, match="argument --timeout: expected a positive, finite"):
            parse_argstring(magics.task, f"a --timeout {text}")
    with pytest.raises(UsageError, match="every: expected a positive, finite number of "
                                         r"seconds >= 0.001"):
        magics.wfy_schedule("every 1e-12 a")
    with pytest.raises(UsageError, match="argument --max-workers: expected a whole number <="):
        parse_argstring(magics.wfy_run, f"--max-workers {10**400}")
    with pytest.raises(UsageError, match="is a directory"):
        magics.wfy_config(f"--checkpoint {tmp_path}")
    with pytest.raises(SessionError, match="--timeout must be a finite number"):
        magics.session.define("a", "1", timeout=math.inf)
