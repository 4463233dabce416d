"""Retries: the knobs table (retries, retry_on, backoff, backoff_max, jitter) and timeouts."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyworkflowy_nb import EventLog, TaskRunner, TaskStatus, current_task, task
from pyworkflowy_nb._policy import RetryPolicy
from pyworkflowy_nb.exceptions import RetryExhaustedError, TaskError, TaskTimeoutError
from pyworkflowy_nb.testing import MockClock


class Transient(Exception):
    pass


class Permanent(Exception):
    pass


# -- the pure policy ---------------------------------------------------------------------------

@pytest.mark.parametrize("attempt", [1, 2, 3, 7])
def test_no_backoff_means_no_delay(attempt: int) -> None:
    assert RetryPolicy(retries=9, backoff="none", backoff_base=5.0).delay(attempt) == 0.0


@pytest.mark.parametrize(("base", "attempt", "expected"),
                         [(1.0, 1, 1.0), (1.0, 2, 2.0), (1.0, 3, 3.0), (0.5, 4, 2.0),
                          (2.5, 2, 5.0)])
def test_linear_delay_is_base_times_attempt(base: float, attempt: int, expected: float) -> None:
    policy = RetryPolicy(retries=9, backoff="linear", backoff_base=base, backoff_max=1e9)
    assert policy.delay(attempt) == pytest.approx(expected)


@pytest.mark.parametrize(("base", "attempt", "expected"),
                         [(1.0, 1, 1.0), (1.0, 2, 2.0), (1.0, 3, 4.0), (1.0, 4, 8.0),
                          (0.25, 5, 4.0), (3.0, 3, 12.0)])
def test_exponential_delay_is_base_times_two_to_attempt_minus_one(
        base: float, attempt: int, expected: float) -> None:
    policy = RetryPolicy(retries=9, backoff="exponential", backoff_base=base, backoff_max=1e9)
    assert policy.delay(attempt) == pytest.approx(expected)


@pytest.mark.parametrize("backoff", ["linear", "exponential"])
def test_delay_is_capped_at_backoff_max(backoff: str) -> None:
    policy = RetryPolicy(retries=50, backoff=backoff, backoff_base=1.0, backoff_max=30.0)
    delays = [policy.delay(a) for a in range(1, 50)]
    assert max(delays) == 30.0
    assert delays == sorted(delays)  # never decreasing, then flat at the cap
    assert policy.delay(10_000) == 30.0  # huge attempt numbers do not overflow


def test_jitter_adds_a_bounded_random_delay_reproducible_with_a_seed() -> None:
    policy = RetryPolicy(retries=5, backoff="linear", backoff_base=1.0, backoff_max=100.0,
                         jitter=0.5)
    first = [policy.delay(a, random.Random(7)) for a in range(1, 6)]
    again = [policy.delay(a, random.Random(7)) for a in range(1, 6)]
    assert first == again
    rng = random.Random(11)
    extras = []
    for _ in range(500):
        attempt = rng.randint(1, 5)
        d = policy.delay(attempt, rng)
        assert attempt <= d <= attempt + 0.5
        extras.append(d - attempt)
    assert len({round(e, 6) for e in extras}) > 100  # really random, not a constant offset


def test_jitter_on_top_of_no_backoff() -> None:
    policy = RetryPolicy(retries=1, backoff="none", jitter=0.2)
    rng = random.Random(3)
    values = [policy.delay(1, rng) for _ in range(100)]
    assert all(0.0 <= v <= 0.2 for v in values)
    assert min(values) != max(values)


def test_should_retry_rules() -> None:
    policy = RetryPolicy(retries=2, retry_on=(Transient,))
    assert policy.max_attempts == 3
    assert policy.should_retry(Transient(), 1)
    assert policy.should_retry(Transient(), 2)
    assert not policy.should_retry(Transient(), 3)  # attempts used up
    assert not policy.should_retry(Permanent(), 1)  # not in retry_on
    broad = RetryPolicy(retries=2, retry_on=(Exception,))
    assert not broad.should_retry(TaskTimeoutError("t"), 1)  # timeouts are terminal


# -- the runner applies it -----------------------------------------------------------------------

def _flaky(fail_times: int, exc: type[Exception] = Transient, **options: object) -> tuple[
        object, list[int]]:
    attempts: list[int] = []

    def body() -> str:
        ctx = current_task()
        assert ctx is not None
        attempts.append(ctx.attempt)
        if len(attempts) <= fail_times:
            raise exc(f"attempt {ctx.attempt}")
        return "ok"

    options.setdefault("backoff", "none")  # retry at once unless a test asks otherwise
    return task(name=f"flaky-{fail_times}-{exc.__name__}", **options)(body), attempts  # type: ignore[call-overload]


@pytest.mark.parametrize("backend", ["asyncio", "thread"])
def test_retries_until_success(backend: str) -> None:
    t, attempts = _flaky(2, retries=3, backend=backend)
    with TaskRunner() as runner:
        log = EventLog(runner)
        h = runner.submit(t)
        results = runner.run()
    assert results.ok
    assert h.result() == "ok"
    assert attempts == [1, 2, 3]
    assert h.attempts == 3
    assert log.kinds(h.key) == ["submitted", "started", "retrying", "started", "retrying",
                                "started", "completed"]
    assert [e.attempt for e in log.events if e.key == h.key and e.kind == "retrying"] == [1, 2]


def test_retries_exhausted_wraps_the_last_error() -> None:
    t, attempts = _flaky(10, retries=2)
    with TaskRunner(on_task_error="continue") as runner:
        h = runner.submit(t)
        runner.run()
    assert attempts == [1, 2, 3]  # retries=2: three attempts in all
    assert h.status is TaskStatus.FAILED
    err = h.exception
    assert isinstance(err, RetryExhaustedError)
    assert isinstance(err, TaskError)
    assert err.attempts == 3
    assert err.elapsed >= 0.0
    assert isinstance(err.__cause__, Transient)
    assert str(err.__cause__) == "attempt 3"
    with pytest.raises(RetryExhaustedError):
        h.result()


def test_max_attempts_counts_the_first_try() -> None:
    t, attempts = _flaky(10, max_attempts=4)
    with TaskRunner(on_task_error="continue") as runner:
        h = runner.submit(t)
        runner.run()
    assert attempts == [1, 2, 3, 4]
    assert h.attempts == 4


def test_without_retries_the_original_error_is_kept() -> None:
    t, attempts = _flaky(10)
    with TaskRunner(on_task_error="continue") as runner:
        h = runner.submit(t)
        runner.run()
    assert attempts == [1]
    assert isinstance(h.exception, Transient)


def test_retry_on_only_retries_matching_errors() -> None:
    t, attempts = _flaky(10, Permanent, retries=5, retry_on=Transient)
    with TaskRunner(on_task_error="continue") as runner:
        h = runner.submit(t)
        runner.run()
    assert attempts == [1]  # not a match: fails at once, unwrapped
    assert isinstance(h.exception, Permanent)

    t2, attempts2 = _flaky(1, Transient, retries=5, retry_on=(KeyError, Transient))
    with TaskRunner() as runner:
        h2 = runner.submit(t2)
        runner.run()
    assert attempts2 == [1, 2]
    assert h2.result() == "ok"


def test_retry_on_subclass_matches() -> None:
    class Sub(Transient):
        pass

    t, attempts = _flaky(1, Sub, retries=1, retry_on=Transient)
    with TaskRunner() as runner:
        h = runner.submit(t)
        runner.run()
    assert attempts == [1, 2]
    assert h.result() == "ok"


def test_default_retry_on_is_exception() -> None:
    t, attempts = _flaky(2, KeyError, retries=2)  # type: ignore[arg-type]
    with TaskRunner() as runner:
        h = runner.submit(t)
        runner.run()
    assert attempts == [1, 2, 3]
    assert h.result() == "ok"


@pytest.mark.parametrize("backoff", ["linear", "exponential"])
def test_runner_waits_exactly_the_backoff_between_attempts(backoff: str) -> None:
    # On a MockClock the waits are exact, and take no real time.
    clock = MockClock(start=0.0, autojump_threshold=0)
    stamps: list[float] = []

    def body() -> str:
        stamps.append(clock.time())
        if len(stamps) < 4:
            raise Transient("again")
        return "ok"

    t = task(name=f"backoff-{backoff}", retries=3, backoff=backoff, backoff_base=10.0,
             backoff_max=100.0)(body)
    with TaskRunner(clock=clock) as runner:
        h = runner.submit(t)
        runner.run()
    assert h.result() == "ok"
    expected = {"linear": [10.0, 20.0, 30.0], "exponential": [10.0, 20.0, 40.0]}[backoff]
    assert [b - a for a, b in itertools.pairwise(stamps)] == expected


def test_runner_uses_the_policy_delays(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[int] = []
    original = RetryPolicy.delay

    def spy(self: RetryPolicy, attempt: int, rng: random.Random | None = None) -> float:
        asked.append(attempt)
        return original(self, attempt, rng)

    monkeypatch.setattr(RetryPolicy, "delay", spy)
    t, attempts = _flaky(10, retries=3, backoff="exponential", backoff_base=0.001,
                         backoff_max=0.002)
    with TaskRunner(on_task_error="continue") as runner:
        runner.submit(t)
        runner.run()
    assert attempts == [1, 2, 3, 4]
    assert asked == [1, 2, 3]  # one delay per failed attempt that is followed by another


def test_retries_in_order_among_several_tasks() -> None:
    calls: list[tuple[str, int]] = []

    def make(label: str, fails: int) -> object:
        def body() -> str:
            ctx = current_task()
            assert ctx is not None
            calls.append((label, ctx.attempt))
            if ctx.attempt <= fails:
                raise Transient(label)
            return label
        return task(name=label, retries=3, backoff="none")(body)

    with TaskRunner(max_workers=1) as runner:
        ha = runner.submit(make("a", 2))  # type: ignore[arg-type]
        hb = runner.submit(make("b", 0), depends_on=[ha])  # type: ignore[arg-type]
        runner.run()
    assert calls == [("a", 1), ("a", 2), ("a", 3), ("b", 1)]
    assert hb.result() == "b"


def test_flaky_task_under_raise_policy_does_not_abort_while_retrying() -> None:
    t, attempts = _flaky(2, retries=2)
    with TaskRunner(on_task_error="raise") as runner:
        h = runner.submit(t)
        assert runner.run().ok
    assert attempts == [1, 2, 3]
    assert h.result() == "ok"


# -- timeouts ----------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["asyncio", "thread"])
def test_sync_timeout_is_terminal_and_not_retried(backend: str) -> None:
    import threading

    release = threading.Event()
    calls: list[int] = []

    def body() -> None:
        calls.append(1)
        release.wait(30)

    t = task(name=f"slow-sync-{backend}", timeout=0.05, retries=3, backend=backend)(body)
    with TaskRunner(on_task_error="continue") as runner:
        h = runner.submit(t)
        runner.run()
        release.set()
    assert calls == [1]
    assert h.status is TaskStatus.FAILED
    assert h.attempts == 1
    err = h.exception
    assert isinstance(err, TaskTimeoutError)
    assert err.timeout == 0.05
    assert err.attempts == 1
    assert "timeout" in str(err)


def test_async_timeout_is_terminal_and_not_retried_even_if_listed() -> None:
    import asyncio

    calls: list[int] = []

    @task(timeout=0.05, retries=3, retry_on=(TaskTimeoutError, Exception))
    async def slow() -> None:
        calls.append(1)
        await asyncio.sleep(30)

    with TaskRunner(on_task_error="continue") as runner:
        h = runner.submit(slow)
        runner.run()
    assert calls == [1]
    assert isinstance(h.exception, TaskTimeoutError)
    assert h.attempts == 1


def test_timeout_is_per_attempt() -> None:
    # Every attempt fits its own budget; the sum would not. A per-run budget would fail here.
    import asyncio

    attempts: list[int] = []

    @task(timeout=5.0, retries=2, backoff="none")
    async def body() -> str:
        attempts.append(1)
        await asyncio.sleep(0)
        if len(attempts) < 3:
            raise Transient("x")
        return "done"

    with TaskRunner() as runner:
        h = runner.submit(body)
        runner.run()
    assert h.result() == "done"
    assert len(attempts) == 3


def test_timeout_error_raised_by_body_is_an_ordinary_failure() -> None:
    # A TimeoutError the body raises itself is not a timeout of the task: it can be retried.
    attempts: list[int] = []

    @task(timeout=10.0, retries=1, backoff="none")
    async def body() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise TimeoutError("socket")
        return "ok"

    with TaskRunner() as runner:
        h = runner.submit(body)
        runner.run()
    assert h.result() == "ok"
    assert len(attempts) == 2


@given(base=st.floats(0.0, 100.0), cap=st.floats(0.0, 1000.0), attempt=st.integers(1, 80),
       backoff=st.sampled_from(["none", "linear", "exponential"]))
def test_delay_formula_property(base: float, cap: float, attempt: int, backoff: str) -> None:
    policy = RetryPolicy(retries=100, backoff=backoff, backoff_base=base, backoff_max=cap)
    expected = {"none": 0.0, "linear": base * attempt,
                "exponential": base * 2.0 ** (attempt - 1)}[backoff]
    assert policy.delay(attempt) == pytest.approx(min(expected, cap))
    assert 0.0 <= policy.delay(attempt) <= cap
