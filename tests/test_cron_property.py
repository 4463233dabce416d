"""Property tests: our cron against croniter (naive times) and against a brute-force DST oracle.

croniter is a test-only dependency. It is the reference for plain wall-clock behaviour; the
daylight-saving rules are ours (see pyworkflowy_nb._cron), so aware datetimes are checked
against an independent minute-by-minute oracle written from the rule's definition instead.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyworkflowy_nb.schedule import CronExpression, parse_cron

croniter_module = pytest.importorskip("croniter")
croniter = croniter_module.croniter
CroniterBadDateError = croniter_module.CroniterBadDateError

MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
WEEKDAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]


def values(low: int, high: int, favourites: tuple[int, ...] = ()) -> st.SearchStrategy[int]:
    plain = st.integers(low, high)
    return st.one_of(plain, st.sampled_from(favourites)) if favourites else plain


def spelled(
    value: st.SearchStrategy[int], names: list[str] | None, base: int
) -> st.SearchStrategy[str]:
    """A value written as a number, or (for months and weekdays) sometimes as its name."""
    if names is None:
        return value.map(str)

    def write(number: int, use_name: bool) -> str:
        index = number - base
        if use_name and 0 <= index < len(names):
            return names[index] if number % 2 else names[index].lower()
        return str(number)

    return st.builds(write, value, st.booleans())


@st.composite
def items(
    draw: st.DrawFn,
    low: int,
    high: int,
    favourites: tuple[int, ...] = (),
    names: list[str] | None = None,
    name_base: int = 0,
) -> str:
    kind = draw(st.sampled_from(["value", "value", "range", "star-step", "range-step"]))
    span = high - low + 1
    if kind == "value":
        return draw(spelled(values(low, high, favourites), names, name_base))
    if kind == "star-step":
        return f"*/{draw(st.integers(1, span))}"
    first = draw(values(low, high - 1, tuple(f for f in favourites if f < high)))
    # Single-value ranges ("5-5") are left out: croniter 7 expands them to the whole field
    # (a croniter bug; test_cron.py pins our reading, "5-5" == "5").
    last = draw(st.integers(first + 1, high))
    text = f"{draw(spelled(st.just(first), names, name_base))}-"
    text += draw(spelled(st.just(last), names, name_base))
    if kind == "range-step":
        text += f"/{draw(st.integers(1, span))}"
    return text


def field(
    low: int,
    high: int,
    favourites: tuple[int, ...] = (),
    names: list[str] | None = None,
    name_base: int = 0,
    star_weight: int = 1,
) -> st.SearchStrategy[str]:
    listed = st.lists(items(low, high, favourites, names, name_base), min_size=1, max_size=3).map(
        ",".join
    )
    return st.one_of(*([st.just("*")] * star_weight), listed)


# Month ends, Feb 29 and the last days of short months are favoured; both day fields are often
# restricted together so the OR rule gets real coverage.
expressions = st.tuples(
    field(0, 59, (0, 59)),
    field(0, 23, (0, 23)),
    field(1, 31, (28, 29, 30, 31)),
    field(1, 12, (2, 2, 4, 12), MONTHS, 1),
    field(0, 7, (0, 6, 7), WEEKDAYS, 0),
).map(" ".join)

start_times = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2032, 12, 31, 23, 59))


def croniter_fires(expr: str, start: datetime, count: int) -> list[datetime] | None:
    """croniter's next `count` firings, or None when it finds no firing at all."""
    iterator = croniter(expr, start)
    try:
        return [iterator.get_next(datetime) for _ in range(count)]
    except CroniterBadDateError:
        return None


def our_fires(expression: CronExpression, start: datetime, count: int) -> list[datetime]:
    out: list[datetime] = []
    current = start
    for _ in range(count):
        current = expression.next_after(current)
        out.append(current)
    return out


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=expressions, start=start_times)
def test_next_after_agrees_with_croniter(expr: str, start: datetime) -> None:
    try:
        expression = parse_cron(expr)
    except ValueError as error:
        # Only "can never fire" is refused for a syntactically valid expression; croniter must
        # agree that there is no next firing.
        assert "never fires" in str(error)
        assert croniter_fires(expr, start, 1) is None
        return
    expected = croniter_fires(expr, start, 3)
    assert expected is not None
    assert our_fires(expression, start, 3) == expected


# Both day fields restricted at once, with dates clustered at month ends: the OR rule.
both_days_restricted = st.tuples(
    field(0, 59, (0,), star_weight=0),
    field(0, 23, (0,), star_weight=0),
    field(1, 31, (29, 30, 31), star_weight=0),
    field(1, 12, (2,), MONTHS, 1),
    field(0, 7, (0, 7), WEEKDAYS, 0, star_weight=0),
).map(" ".join)

month_ends = st.builds(
    lambda year, month, hour: datetime(year, month, 1, hour) - timedelta(days=2),
    st.integers(2020, 2032),
    st.integers(1, 12),
    st.integers(0, 23),
)


@settings(max_examples=300, deadline=None)
@given(expr=both_days_restricted, start=month_ends)
def test_day_of_month_or_day_of_week_agrees_with_croniter(expr: str, start: datetime) -> None:
    expression = parse_cron(expr)
    assert expr.split()[2] != "*" and expr.split()[4] != "*"
    assert our_fires(expression, start, 4) == croniter_fires(expr, start, 4)


@settings(max_examples=200, deadline=None)
@given(expr=expressions, start=start_times)
def test_matches_agrees_with_croniter_match(expr: str, start: datetime) -> None:
    try:
        expression = parse_cron(expr)
    except ValueError:
        return
    minute = start.replace(second=0, microsecond=0)
    assert expression.matches(minute) == croniter.match(expr, minute)


# -- invalid expressions ----------------------------------------------------------------------

FIELD_RANGES = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
]


@st.composite
def broken_expressions(draw: st.DrawFn) -> tuple[str, str, str]:
    """A valid expression with one field made invalid; returns (expr, field name, bad token)."""
    position = draw(st.integers(0, 4))
    name, low, high = FIELD_RANGES[position]
    kind = draw(
        st.sampled_from(["too-high", "too-low", "reversed", "zero-step", "garbage", "empty-item"])
    )
    if kind == "too-high":
        token = str(draw(st.integers(high + 1, high + 100)))
    elif kind == "too-low":
        if low == 0:
            kind = "too-high"
            token = str(high + 1)
        else:
            token = "0"
    elif kind == "reversed":
        first = draw(st.integers(low + 1, high))
        token = f"{first}-{draw(st.integers(low, first - 1))}"
    elif kind == "zero-step":
        token = draw(st.sampled_from(["*/0", f"{low}-{high}/0"]))
    elif kind == "garbage":
        token = draw(
            st.text(alphabet="abcxyz?#LW.!%", min_size=1, max_size=4).filter(
                lambda text: text.upper() not in MONTHS + WEEKDAYS
            )
        )
    else:
        token = draw(st.sampled_from([f"{low},", f",{low}", f"{low},,{high}"]))
    fields = ["*"] * 5
    fields[position] = token
    return " ".join(fields), name, token


@settings(max_examples=300, deadline=None)
@given(case=broken_expressions())
def test_every_invalid_field_names_field_and_token(case: tuple[str, str, str]) -> None:
    expr, name, token = case
    with pytest.raises(ValueError) as caught:
        parse_cron(expr)
    message = str(caught.value)
    assert f"cron field {name!r}" in message
    assert f"token {token!r}" in message


@settings(max_examples=100, deadline=None)
@given(count=st.integers(0, 9).filter(lambda n: n != 5), token=st.sampled_from(["*", "0", "1-5"]))
def test_wrong_field_count(count: int, token: str) -> None:
    with pytest.raises(ValueError, match=r"expected 5|empty"):
        parse_cron(" ".join([token] * count))


# -- daylight saving against a brute-force oracle ---------------------------------------------

ZONES = [ZoneInfo("America/New_York"), ZoneInfo("Europe/Berlin"), ZoneInfo("Australia/Lord_Howe")]


def transitions(zone: ZoneInfo, year: int) -> list[datetime]:
    """UTC instants in `year` where the zone's offset changes (found by hourly scan + bisect)."""
    found = []
    hour = timedelta(hours=1)
    probe = datetime(year, 1, 1, tzinfo=UTC)
    end = datetime(year + 1, 1, 1, tzinfo=UTC)
    while probe < end:
        if probe.astimezone(zone).utcoffset() != (probe + hour).astimezone(zone).utcoffset():
            found.append(probe + hour)
        probe += hour
    return found


TRANSITIONS = {
    (zone.key, year): transitions(zone, year) for zone in ZONES for year in (2021, 2024, 2030)
}


def oracle_next(expression: CronExpression, start: datetime) -> datetime:
    """The earliest instant > start at which some matching wall time W first "arrives".

    W fires at the first instant u whose wall clock reads >= W (for an existing time that is its
    first occurrence; for a time in a gap, the end of the gap). Walking UTC minute by minute, u
    is a firing instant when a matching W lies in (highest wall time seen before u, wall(u)].
    """
    zone = start.tzinfo
    assert zone is not None
    minute = timedelta(minutes=1)
    origin = start.astimezone(UTC).replace(second=0, microsecond=0)
    # Begin a day early so "the highest wall time seen before" is already known at `start`.
    u = origin - timedelta(days=1)
    highest = u.astimezone(zone).replace(tzinfo=None)
    while True:
        u += minute
        wall = u.astimezone(zone).replace(tzinfo=None)
        if u > start.astimezone(UTC) and wall > highest:
            candidate = highest + minute
            while candidate <= wall:
                if expression.matches(candidate):
                    return u.astimezone(zone)
                candidate += minute
        highest = max(highest, wall)


dst_expressions = st.tuples(
    field(0, 59, (0, 15, 30, 45)),
    field(0, 23, (1, 2, 3)),
    st.just("*"),
    st.just("*"),
    st.just("*"),
).map(" ".join)


@st.composite
def near_transitions(draw: st.DrawFn) -> datetime:
    zone = draw(st.sampled_from(ZONES))
    year = draw(st.sampled_from([2021, 2024, 2030]))
    transition = draw(st.sampled_from(TRANSITIONS[(zone.key, year)]))
    offset = draw(st.integers(-26 * 60, 3 * 60))
    instant = transition + timedelta(minutes=offset, seconds=draw(st.integers(0, 59)))
    return instant.astimezone(zone)


@settings(max_examples=150, deadline=None)
@given(expr=dst_expressions, start=near_transitions())
def test_dst_rule_agrees_with_brute_force_oracle(expr: str, start: datetime) -> None:
    expression = parse_cron(expr)
    got = expression.next_after(start)
    assert got.tzinfo is start.tzinfo
    assert got.astimezone(UTC) > start.astimezone(UTC)
    assert got.astimezone(UTC) == oracle_next(expression, start).astimezone(UTC)
