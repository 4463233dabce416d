"""Cron parsing, matching, next_after and the daylight-saving rules (no engine needed)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from pyworkflowy_nb import _cron
from pyworkflowy_nb.schedule import CronExpression, parse_cron

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


def fires(expr: str, start: datetime, count: int) -> list[datetime]:
    expression = parse_cron(expr)
    out: list[datetime] = []
    current = start
    for _ in range(count):
        current = expression.next_after(current)
        out.append(current)
    return out


# -- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field_text", "position", "expected"),
    [
        ("*", 0, tuple(range(60))),
        ("5", 0, (5,)),
        ("9-17", 1, tuple(range(9, 18))),
        ("0,15,30", 0, (0, 15, 30)),
        ("*/15", 0, (0, 15, 30, 45)),
        ("9-17/2", 1, (9, 11, 13, 15, 17)),
        ("*/10", 2, (1, 11, 21, 31)),
        ("30,5-7,*/20", 0, (0, 5, 6, 7, 20, 30, 40)),
        ("*/5", 3, (1, 6, 11)),
        ("*/2", 4, (0, 2, 4, 6)),
        ("5-7", 4, (0, 5, 6)),
        ("7", 4, (0,)),
        ("1-7/3", 4, (0, 1, 4)),
    ],
)
def test_field_syntax_expands_to_values(
    field_text: str, position: int, expected: tuple[int, ...]
) -> None:
    fields = ["*"] * 5
    fields[position] = field_text
    expression = parse_cron(" ".join(fields))
    values = [
        expression.minutes,
        expression.hours,
        expression.days,
        expression.months,
        expression.weekdays,
    ][position]
    assert values == expected


@pytest.mark.parametrize("expr", ["5-5 3-3 1-1 6-6 2-2", "0-0/5 * * * *"])
def test_single_value_ranges_mean_that_value(expr: str) -> None:
    # croniter 7 reads "a-a" as the whole field; we read it as just `a`.
    single = parse_cron(expr.replace("5-5", "5").replace("0-0/5", "0").replace("3-3", "3"))
    ranged = parse_cron(expr)
    assert (ranged.minutes, ranged.hours) == (single.minutes, single.hours)
    assert len(ranged.minutes) == 1


def test_month_and_weekday_names_any_case() -> None:
    by_name = parse_cron("0 9 * jan-Mar,DEC mon-FRI")
    assert by_name.months == (1, 2, 3, 12)
    assert by_name.weekdays == (1, 2, 3, 4, 5)
    assert parse_cron("0 0 * * SUN").weekdays == parse_cron("0 0 * * 7").weekdays == (0,)


@pytest.mark.parametrize(
    ("alias", "equivalent"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@ANNUALLY", "0 0 1 1 *"),
    ],
)
def test_aliases_fire_like_their_expansion(alias: str, equivalent: str) -> None:
    start = datetime(2023, 12, 30, 17, 42, 5)
    assert fires(alias, start, 4) == fires(equivalent, start, 4)
    assert str(parse_cron(alias)) == alias


def test_restricted_flags() -> None:
    assert not parse_cron("0 0 * * *").dom_restricted
    assert not parse_cron("0 0 * * *").dow_restricted
    assert parse_cron("0 0 */2 * 1").dom_restricted
    assert parse_cron("0 0 1-31 * 1").dom_restricted
    assert parse_cron("0 0 1 * 0-6").dow_restricted
    # A whole-range day field does not restrict next to a day field written with '*'.
    assert not parse_cron("0 0 */2 * 0-6").dow_restricted
    assert not parse_cron("0 0 1-31 * */2").dom_restricted
    assert not parse_cron("0 0 */1 * SUN-SAT").dow_restricted


@pytest.mark.parametrize(
    ("expr", "january_2020_days"),
    [
        ("0 0 */2 * 0-6", [3, 5, 7, 9, 11, 13]),  # odd days; 0-6 adds nothing
        ("0 0 1 * 0-6", [2, 3, 4, 5, 6, 7]),  # OR with every weekday: every day
        ("0 0 1-31 * */3", [4, 5, 8, 11, 12, 15]),  # Sun, Wed, Sat only
        ("0 0 */2 * 1", [3, 5, 6, 7, 9, 11]),  # odd days OR Mondays (6th)
        ("0 0 1-31 * 1", [2, 3, 4, 5, 6, 7]),  # every day OR Mondays
    ],
)
def test_day_field_combinations(expr: str, january_2020_days: list[int]) -> None:
    # 2020-01-01 was a Wednesday.
    assert [d.day for d in fires(expr, datetime(2020, 1, 1), 6)] == january_2020_days


def test_parse_returns_a_cron_expression_with_its_source() -> None:
    expression = parse_cron("  0 12 * * 1  ")
    assert isinstance(expression, CronExpression)
    assert expression.source == "0 12 * * 1"
    assert expression == parse_cron("0 12 * * 1")


# -- invalid input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "field", "token", "reason"),
    [
        ("60 * * * *", "minute", "60", "out of range 0-59"),
        ("* 25 * * *", "hour", "25", "out of range 0-23"),
        ("* * 0 * *", "day-of-month", "0", "out of range 1-31"),
        ("* * 32 * *", "day-of-month", "32", "out of range 1-31"),
        ("* * * 13 *", "month", "13", "out of range 1-12"),
        ("* * * * 8", "day-of-week", "8", "out of range 0-7"),
        ("* 1-30 * * *", "hour", "1-30", "out of range 0-23"),
        ("5-3 * * * *", "minute", "5-3", "reversed range"),
        ("* * * * FRI-MON", "day-of-week", "FRI-MON", "reversed range"),
        ("*/0 * * * *", "minute", "*/0", "step"),
        ("* 1-5/0 * * *", "hour", "1-5/0", "step"),
        ("*/x * * * *", "minute", "*/x", "step"),
        ("*/-2 * * * *", "minute", "*/-2", "step"),
        ("abc * * * *", "minute", "abc", "not a number"),
        ("* * * FOO *", "month", "FOO", "not a number or a name"),
        ("* * * * funday", "day-of-week", "funday", "not a number or a name"),
        ("1,,2 * * * *", "minute", "1,,2", "empty list item"),
        ("* 3, * * *", "hour", "3,", "empty list item"),
        ("* * * ,1 *", "month", ",1", "empty list item"),
        ("-5 * * * *", "minute", "-5", "malformed range"),
        ("5- * * * *", "minute", "5-", "malformed range"),
        ("1-2-3 * * * *", "minute", "1-2-3", "not a number"),
        ("5/15 * * * *", "minute", "5/15", "a step needs a range"),
        ("L * * * *", "minute", "L", "not a number"),
        ("* * ? * *", "day-of-month", "?", "not a number"),
        ("1.5 * * * *", "minute", "1.5", "not a number"),
        ("٣ * * * *", "minute", "٣", "not a number"),
    ],
)
def test_invalid_tokens_name_field_and_token(
    expr: str, field: str, token: str, reason: str
) -> None:
    with pytest.raises(ValueError) as caught:
        parse_cron(expr)
    message = str(caught.value)
    assert f"cron field {field!r}" in message
    assert f"token {token!r}" in message
    assert reason in message


def test_out_of_range_message_is_exactly_worded() -> None:
    with pytest.raises(
        ValueError, match=r"^cron field 'hour' token '25': value out of range 0-23$"
    ):
        parse_cron("0 25 * * *")


@pytest.mark.parametrize("expr", ["", "   ", "* * * *", "* * * * * *", "0 0 1 1 * 2024"])
def test_wrong_field_count_is_refused(expr: str) -> None:
    with pytest.raises(ValueError, match=r"expected 5|empty") as caught:
        parse_cron(expr)
    if expr.strip():
        assert repr(expr.strip()) in str(caught.value)
        assert f"has {len(expr.split())} field(s)" in str(caught.value)


def test_unknown_alias_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown cron alias '@fortnightly'.*@hourly"):
        parse_cron("@fortnightly")


@pytest.mark.parametrize("expr", ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 30,31 FEB *"])
def test_expressions_that_can_never_fire_are_refused(expr: str) -> None:
    with pytest.raises(ValueError, match="never fires"):
        parse_cron(expr)


def test_never_firing_day_is_fine_when_weekday_also_restricted() -> None:
    # OR rule: the weekday alone makes it fire.
    assert fires("0 0 30 2 1", datetime(2024, 2, 1), 1) == [datetime(2024, 2, 5)]


def test_non_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="must be a str"):
        parse_cron(5)  # type: ignore[arg-type]


# -- next_after on naive datetimes ------------------------------------------------------------


def test_next_after_is_strictly_after_and_zeroes_seconds() -> None:
    every_minute = parse_cron("* * * * *")
    assert every_minute.next_after(datetime(2024, 5, 1, 10, 0)) == datetime(2024, 5, 1, 10, 1)
    assert every_minute.next_after(datetime(2024, 5, 1, 10, 0, 59, 999999)) == datetime(
        2024, 5, 1, 10, 1
    )
    assert parse_cron("0 * * * *").next_after(datetime(2024, 5, 1, 10, 0, 0, 1)) == datetime(
        2024, 5, 1, 11, 0
    )


def test_rollover_of_hour_day_month_and_year() -> None:
    assert fires("59 23 31 12 *", datetime(2024, 12, 31, 23, 59), 1) == [
        datetime(2025, 12, 31, 23, 59)
    ]
    assert fires("0 0 1 1 *", datetime(2024, 12, 31, 23, 59, 30), 1) == [datetime(2025, 1, 1)]
    assert fires("*/20 * * * *", datetime(2024, 2, 29, 23, 45), 2) == [
        datetime(2024, 3, 1, 0, 0),
        datetime(2024, 3, 1, 0, 20),
    ]


def test_day_31_skips_short_months() -> None:
    assert fires("0 12 31 * *", datetime(2024, 1, 31, 12, 0), 4) == [
        datetime(2024, 3, 31, 12),
        datetime(2024, 5, 31, 12),
        datetime(2024, 7, 31, 12),
        datetime(2024, 8, 31, 12),
    ]


def test_feb_29_only_in_leap_years_including_the_2100_gap() -> None:
    assert fires("0 0 29 2 *", datetime(2021, 1, 1), 3) == [
        datetime(2024, 2, 29),
        datetime(2028, 2, 29),
        datetime(2032, 2, 29),
    ]
    # 2100 is not a leap year: eight years between firings.
    assert fires("0 0 29 2 *", datetime(2096, 3, 1), 1) == [datetime(2104, 2, 29)]


def test_day_of_month_or_day_of_week_when_both_restricted() -> None:
    # January 2024: the 13th is a Saturday; Fridays are 5, 12, 19, 26.
    got = fires("0 0 13 * 5", datetime(2024, 1, 1), 6)
    assert [d.day for d in got] == [5, 12, 13, 19, 26, 2]
    assert got[-1].month == 2


def test_only_the_restricted_day_field_decides() -> None:
    assert [d.day for d in fires("0 0 13 * *", datetime(2024, 1, 1), 2)] == [13, 13]
    assert [d.day for d in fires("0 0 * * 5", datetime(2024, 1, 1), 3)] == [5, 12, 19]
    # A step in day-of-month counts as restricted (croniter's reading), so OR applies.
    assert [d.day for d in fires("0 0 */10 * 1", datetime(2024, 1, 1), 5)] == [8, 11, 15, 21, 22]


def test_weekday_seven_and_zero_are_both_sunday() -> None:
    sundays = fires("0 8 * * 7", datetime(2024, 6, 1), 3)
    assert sundays == fires("0 8 * * 0", datetime(2024, 6, 1), 3)
    assert all(d.weekday() == 6 for d in sundays)


def test_matches() -> None:
    expression = parse_cron("15 9-17/4 * 3 MON")
    assert expression.matches(datetime(2024, 3, 4, 13, 15, 42))
    assert not expression.matches(datetime(2024, 3, 4, 11, 15))  # hour not in 9,13,17
    assert not expression.matches(datetime(2024, 3, 5, 13, 15))  # Tuesday
    assert not expression.matches(datetime(2025, 4, 7, 13, 15))  # April


def test_next_after_always_matches_and_nothing_matches_in_between() -> None:
    # A small exhaustive cross-check against minute stepping for a mixed expression.
    expression = parse_cron("*/7 1,13 1-3,28-31 * TUE,SAT")
    current = datetime(2024, 2, 20, 5, 3)
    for _ in range(30):
        following = expression.next_after(current)
        assert expression.matches(following)
        probe = current.replace(second=0, microsecond=0) + timedelta(minutes=1)
        while probe < following:
            assert not expression.matches(probe), probe
            probe += timedelta(minutes=1)
        current = following


def test_next_after_does_not_step_minute_by_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    # Field-by-field search visits a handful of candidate days per month. Count the calls to
    # the per-day weekday helper for a yearly expression: minute stepping would need ~500,000.
    calls = 0
    original = _cron._cron_weekday

    def counting(year: int, month: int, day: int) -> int:
        nonlocal calls
        calls += 1
        return original(year, month, day)

    monkeypatch.setattr(_cron, "_cron_weekday", counting)
    assert parse_cron("0 0 29 2 *").next_after(datetime(2097, 1, 1)) == datetime(2104, 2, 29)
    assert calls < 100


def test_next_after_rejects_non_datetimes() -> None:
    with pytest.raises(TypeError, match="needs a datetime"):
        parse_cron("* * * * *").next_after("2024-01-01")  # type: ignore[arg-type]


# -- time zones and daylight saving ------------------------------------------------------------


def test_aware_result_keeps_the_zone_and_fixed_offsets_are_plain() -> None:
    india = timezone(timedelta(hours=5, minutes=30))
    got = parse_cron("0 9 * * *").next_after(datetime(2024, 1, 1, 10, 0, tzinfo=india))
    assert got == datetime(2024, 1, 2, 9, 0, tzinfo=india)
    assert got.tzinfo is india
    utc_start = datetime(2024, 1, 1, 10, 0, tzinfo=UTC)
    got_berlin = parse_cron("0 9 * * *").next_after(utc_start.astimezone(BERLIN))
    assert got_berlin.tzinfo is BERLIN
    assert got_berlin == datetime(2024, 1, 2, 9, 0, tzinfo=BERLIN)


def test_utc_input_is_matched_in_utc_not_local_wall_time() -> None:
    start = datetime(2024, 7, 1, 8, 30, tzinfo=BERLIN)  # 06:30 UTC
    assert parse_cron("0 9 * * *").next_after(start.astimezone(UTC)) == datetime(
        2024, 7, 1, 9, 0, tzinfo=UTC
    )


def test_spring_forward_gap_fires_once_at_the_end_of_the_gap_new_york() -> None:
    # 2024-03-10 02:00 EST -> 03:00 EDT: 02:30 does not exist that day.
    got = fires("30 2 * * *", datetime(2024, 3, 9, 0, 0, tzinfo=NEW_YORK), 3)
    assert got[0] == datetime(2024, 3, 9, 2, 30, tzinfo=NEW_YORK)
    assert got[1].astimezone(UTC) == datetime(2024, 3, 10, 7, 0, tzinfo=UTC)  # 03:00 EDT
    assert (got[1].hour, got[1].minute, got[1].utcoffset()) == (3, 0, timedelta(hours=-4))
    assert got[2] == datetime(2024, 3, 11, 2, 30, tzinfo=NEW_YORK)


def test_every_time_inside_the_gap_collapses_into_one_firing() -> None:
    got = fires("*/15 2 * * *", datetime(2024, 3, 9, 23, 0, tzinfo=NEW_YORK), 2)
    assert got[0].astimezone(UTC) == datetime(2024, 3, 10, 7, 0, tzinfo=UTC)
    assert got[1] == datetime(2024, 3, 11, 2, 0, tzinfo=NEW_YORK)


def test_gap_firing_and_a_real_match_at_the_gap_end_fire_once() -> None:
    got = fires("0 * * * *", datetime(2024, 3, 10, 0, 30, tzinfo=NEW_YORK), 4)
    assert [(d.hour, d.utcoffset()) for d in got] == [
        (1, timedelta(hours=-5)),
        (3, timedelta(hours=-4)),
        (4, timedelta(hours=-4)),
        (5, timedelta(hours=-4)),
    ]


def test_spring_forward_gap_berlin() -> None:
    # 2024-03-31 02:00 CET -> 03:00 CEST.
    got = fires("30 2 * * *", datetime(2024, 3, 30, 12, 0, tzinfo=BERLIN), 2)
    assert got[0] == datetime(2024, 3, 31, 1, 0, tzinfo=UTC)  # 03:00 CEST
    assert got[0].hour == 3 and got[0].tzinfo is BERLIN
    assert got[1] == datetime(2024, 4, 1, 2, 30, tzinfo=BERLIN)


def test_nonexistent_input_time_is_normalised() -> None:
    # 02:30 on the gap day does not exist; fold=0 reads it as 03:30 EDT.
    start = datetime(2024, 3, 10, 2, 30, tzinfo=NEW_YORK)
    got = parse_cron("*/20 * * * *").next_after(start)
    assert got.astimezone(UTC) > start.astimezone(UTC)
    assert (got.hour, got.minute) == (3, 40)


def test_fall_back_overlap_fires_once_at_first_occurrence_new_york() -> None:
    # 2024-11-03 02:00 EDT -> 01:00 EST: 01:30 happens twice.
    got = fires("30 1 * * *", datetime(2024, 11, 2, 12, 0, tzinfo=NEW_YORK), 2)
    # (PEP 495: a time inside an overlap never compares equal across zones, so convert first.)
    assert got[0].astimezone(UTC) == datetime(2024, 11, 3, 5, 30, tzinfo=UTC)  # 01:30 EDT
    assert got[0].fold == 0
    assert got[1].astimezone(UTC) == datetime(2024, 11, 4, 6, 30, tzinfo=UTC)  # next day, EST


def test_fall_back_overlap_every_twenty_minutes_skips_the_repeat() -> None:
    got = fires("*/20 * * * *", datetime(2024, 11, 3, 0, 50, tzinfo=NEW_YORK), 4)
    assert [d.astimezone(UTC).strftime("%H:%M") for d in got] == [
        "05:00",
        "05:20",
        "05:40",
        "07:00",
    ]
    gaps = {b.astimezone(UTC) - a.astimezone(UTC) for a, b in itertools.pairwise(got)}
    assert gaps == {timedelta(minutes=20), timedelta(minutes=80)}


def test_from_the_second_pass_of_an_overlap_nothing_fires_twice() -> None:
    second_pass = datetime(2024, 11, 3, 1, 30, tzinfo=NEW_YORK, fold=1)  # 01:30 EST
    got = parse_cron("45 1 * * *").next_after(second_pass)
    assert got == datetime(2024, 11, 4, 1, 45, tzinfo=NEW_YORK)
    assert got.astimezone(UTC) > second_pass.astimezone(UTC)
    # The minute after the overlap ends is still reachable from inside the second pass.
    assert parse_cron("5 2 * * *").next_after(second_pass) == datetime(
        2024, 11, 3, 7, 5, tzinfo=UTC
    )


def test_fall_back_overlap_berlin() -> None:
    # 2024-10-27 03:00 CEST -> 02:00 CET: 02:30 happens twice.
    got = fires("30 2 * * *", datetime(2024, 10, 26, 12, 0, tzinfo=BERLIN), 2)
    assert got[0].astimezone(UTC) == datetime(2024, 10, 27, 0, 30, tzinfo=UTC)  # 02:30 CEST
    assert got[0].fold == 0
    assert got[1].astimezone(UTC) == datetime(2024, 10, 28, 1, 30, tzinfo=UTC)  # 02:30 CET
