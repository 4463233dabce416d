"""Cron expressions: parsing and "when does this fire next?", with no I/O and no clock.

Design decisions
----------------
* Five fields, ``minute hour day-of-month month day-of-week``. Each field is a comma-separated
  list of items; an item is ``*``, ``N``, ``a-b``, ``*/N`` or ``a-b/N``. Months accept ``JAN`` ..
  ``DEC`` and weekdays ``SUN`` .. ``SAT`` (any case). Day-of-week counts from ``0`` = Sunday and
  also accepts ``7`` for Sunday. ``a/N`` without a range is refused rather than guessed at, as
  are ranges that wrap around (``FRI-MON``).
* Aliases: ``@hourly``, ``@daily`` / ``@midnight``, ``@weekly``, ``@monthly``, ``@yearly`` /
  ``@annually``.
* Day-of-month and day-of-week: when both are restricted a day matches if *either* matches
  (the Vixie-cron OR rule); when only one is, it alone decides. A bare ``*`` never restricts.
  Anything else restricts, including ``*/2`` (Vixie cron would read any field starting with
  ``*`` as a star; that quirk is widely considered a bug and croniter does not copy it), with
  one exception kept from Vixie cron and croniter: a day field that covers its whole range
  (``1-31``, ``0-6``, ``MON-SUN``) does not restrict when the *other* day field is written with
  a ``*``. So ``0 0 */2 * 0-6`` fires on odd days, while ``0 0 1 * 0-6`` fires every day.
* An expression that can never fire (``0 0 30 2 *``) is refused at parse time, so
  :meth:`CronExpression.next_after` always has an answer.
* :meth:`CronExpression.next_after` jumps field by field (month, then day, then hour, then
  minute) using the sorted value lists; it never steps through time minute by minute.

Time zones and daylight saving
------------------------------
Naive datetimes are wall-clock times taken as given; no zone is assumed and no DST applies.
Aware datetimes are honoured in their own ``tzinfo`` (``zoneinfo`` or any PEP 495 zone): the
expression is matched against the wall clock of that zone and the result carries the same
``tzinfo``. Where the wall clock jumps:

* **Gap (spring forward).** A matching wall time that does not exist that day fires at the
  first instant after the gap (for ``30 2 * * *`` in New York on a spring-forward day: 03:00
  EDT). Every matching time inside one gap collapses into that single firing.
* **Overlap (fall back).** A wall time that happens twice fires once, at its first occurrence
  (``fold=0``); the repeat is skipped.

Results are always strictly later than the given instant, compared as absolute instants (so the
second pass through an overlap never re-fires what the first pass already fired).
"""

from __future__ import annotations

import calendar
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo

__all__ = ["CronExpression", "parse_cron"]

_ONE_MINUTE = timedelta(minutes=1)

_ALIASES: Mapping[str, str] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}

_MONTH_NAMES = {
    name: number
    for number, name in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"],
        start=1,
    )
}
_WEEKDAY_NAMES = {
    name: number for number, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])
}

# The longest possible month, by month number, for the "can this ever fire?" check (Feb may be 29).
_MAX_DAYS = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: Mapping[str, int]


_FIELDS = (
    _Field("minute", 0, 59, {}),
    _Field("hour", 0, 23, {}),
    _Field("day-of-month", 1, 31, {}),
    _Field("month", 1, 12, _MONTH_NAMES),
    # 7 is accepted as a second spelling of Sunday and folded onto 0 after parsing.
    _Field("day-of-week", 0, 7, _WEEKDAY_NAMES),
)


def _bad(field: _Field, token: str, why: str) -> ValueError:
    return ValueError(f"cron field {field.name!r} token {token!r}: {why}")


def _parse_value(field: _Field, text: str, item: str) -> int:
    if text.isascii() and text.isdigit():
        value = int(text)
    elif text.upper() in field.names:
        value = field.names[text.upper()]
    else:
        kind = "a number"
        if field.names:
            kind += f" or a name such as {next(iter(field.names))}"
        raise _bad(field, item, f"{text!r} is not {kind}")
    if not field.low <= value <= field.high:
        raise _bad(field, item, f"value out of range {field.low}-{field.high}")
    return value


def _parse_item(field: _Field, item: str) -> range:
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not (step_text.isascii() and step_text.isdigit()):
            raise _bad(field, item, f"step {step_text!r} is not a positive whole number")
        step = int(step_text)
        if step == 0:
            raise _bad(field, item, "step must be at least 1")
    if base == "*":
        # Day-of-week '*' spans 0-6: the extra 7 would only repeat Sunday.
        high = 6 if field.name == "day-of-week" else field.high
        return range(field.low, high + 1, step)
    first_text, dash, last_text = base.partition("-")
    if not first_text or (dash and not last_text):
        raise _bad(field, item, "malformed range; write 'a-b'")
    first = _parse_value(field, first_text, item)
    if not dash:
        if slash:
            fix = f"write '{first}-{field.high}/{step}' or '*/{step}'"
            raise _bad(field, item, f"a step needs a range; {fix}")
        return range(first, first + 1)
    last = _parse_value(field, last_text, item)
    if first > last:
        raise _bad(field, item, "reversed range; write the smaller value first (no wrap-around)")
    return range(first, last + 1, step)


def _parse_field(field: _Field, text: str) -> tuple[int, ...]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise _bad(field, text, "empty list item; remove the stray comma")
        values.update(_parse_item(field, item))
    if field.name == "day-of-week" and 7 in values:
        values.discard(7)
        values.add(0)
    return tuple(sorted(values))


def parse_cron(expr: str) -> CronExpression:
    """Parse a five-field cron expression (or an ``@alias``) into a :class:`CronExpression`.

    Raises ``ValueError`` naming the field and the token for anything outside the subset.
    """
    if not isinstance(expr, str):
        raise TypeError(f"cron expression must be a str, got {type(expr).__name__}")
    source = expr.strip()
    if not source:
        raise ValueError("cron expression is empty; expected five fields such as '0 * * * *'")
    if source.startswith("@"):
        try:
            text = _ALIASES[source.lower()]
        except KeyError:
            known = ", ".join(_ALIASES)
            raise ValueError(f"unknown cron alias {source!r}; known aliases: {known}") from None
    else:
        text = source
    parts = text.split()
    if len(parts) != len(_FIELDS):
        raise ValueError(
            f"cron expression {source!r} has {len(parts)} field(s); expected 5 fields: "
            "minute hour day-of-month month day-of-week (or an alias such as '@daily')"
        )
    minutes, hours, days, months, weekdays = (
        _parse_field(field, part) for field, part in zip(_FIELDS, parts, strict=True)
    )
    dom_restricted = parts[2] != "*" and not (len(days) == 31 and "*" in parts[4])
    dow_restricted = parts[4] != "*" and not (len(weekdays) == 7 and "*" in parts[2])
    expression = CronExpression(
        source=source,
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=weekdays,
        dom_restricted=dom_restricted,
        dow_restricted=dow_restricted,
    )
    if dom_restricted and not dow_restricted and all(days[0] > _MAX_DAYS[m] for m in months):
        month_names = ",".join(calendar.month_abbr[m] for m in months)
        raise ValueError(
            f"cron expression {source!r} never fires: day {days[0]} does not occur in {month_names}"
        )
    return expression


def _next_in(values: tuple[int, ...], at_least: int) -> int | None:
    index = bisect_left(values, at_least)
    return values[index] if index < len(values) else None


@dataclass(frozen=True)
class CronExpression:
    """A parsed cron expression; build one with :func:`parse_cron`.

    The value tuples (``minutes`` .. ``weekdays``) are sorted. The same values as frozensets,
    under pyWorkflowy 0.1.0's names, are ``minute``, ``hour``, ``day_of_month``, ``month`` and
    ``day_of_week`` (0 = Sunday .. 6 = Saturday). Unlike 0.1.0, which required both day fields
    to match, a day matches when either restricted day field does (standard cron).
    """

    source: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]
    dom_restricted: bool
    dow_restricted: bool

    # Derived once (next_after() runs on every firing of every cron job, and these are what it
    # tests membership in); frozensets, so the expression still pickles.
    minute: frozenset[int] = field(init=False, repr=False, compare=False)
    hour: frozenset[int] = field(init=False, repr=False, compare=False)
    day_of_month: frozenset[int] = field(init=False, repr=False, compare=False)
    month: frozenset[int] = field(init=False, repr=False, compare=False)
    day_of_week: frozenset[int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "minute", frozenset(self.minutes))
        object.__setattr__(self, "hour", frozenset(self.hours))
        object.__setattr__(self, "day_of_month", frozenset(self.days))
        object.__setattr__(self, "month", frozenset(self.months))
        object.__setattr__(self, "day_of_week", frozenset(self.weekdays))

    def __str__(self) -> str:
        return self.source

    def _day_ok(self, day: int, weekday: int) -> bool:
        """The day-of-month / day-of-week rule (OR when both restrict; see the module doc)."""
        if self.dom_restricted:
            return day in self.day_of_month or (self.dow_restricted
                                                and weekday in self.day_of_week)
        return not self.dow_restricted or weekday in self.day_of_week

    def matches(self, dt: datetime) -> bool:
        """True when the wall-clock minute of ``dt`` (seconds ignored) is one this expression names.

        This looks at the fields of ``dt`` as written; the daylight-saving rules of
        :meth:`next_after` (a gap fires at its end) are not applied here.
        """
        return (
            dt.minute in self.minutes
            and dt.hour in self.hours
            and dt.month in self.months
            and self._day_ok(dt.day, _cron_weekday(dt.year, dt.month, dt.day))
        )

    def next_after(self, dt: datetime) -> datetime:
        """The first firing strictly after ``dt``, with seconds and microseconds zeroed.

        Naive in, naive out (plain wall-clock arithmetic). Aware in, aware out in the same
        ``tzinfo``, matched against that zone's wall clock: a matching time lost to a
        spring-forward gap fires once at the first instant after the gap, and a time repeated
        by a fall-back fires once, at its first occurrence (``fold=0``).
        """
        if not isinstance(dt, datetime):
            raise TypeError(f"next_after() needs a datetime, got {type(dt).__name__}")
        if dt.tzinfo is None or dt.utcoffset() is None:
            return self._next_wall(_floor_minute(dt) + _ONE_MINUTE)
        zone = dt.tzinfo
        instant = dt.astimezone(UTC)
        # Re-derive the wall time from the instant: a nonexistent input time is normalised and
        # an input in the second pass of an overlap keeps fold=1.
        wall = instant.astimezone(zone).replace(tzinfo=None)
        candidate = self._next_wall(_floor_minute(wall) + _ONE_MINUTE)
        while True:
            resolved = _resolve_wall(candidate, zone)
            if resolved.astimezone(UTC) > instant:
                return resolved
            # Only reachable when `dt` lies in the second pass of an overlap and `candidate` is
            # in its first pass, so this walks at most the matching minutes of one overlap.
            candidate = self._next_wall(candidate + _ONE_MINUTE)

    def _next_wall(self, start: datetime) -> datetime:
        """The first matching naive wall time at or after ``start`` (already minute-aligned)."""
        day_ok, months = self._day_ok, self.month
        year, month, day = start.year, start.month, start.day
        hour, minute = start.hour, start.minute
        # A valid expression fires at least once every eight years (Feb 29 across 2100 is the
        # worst case); the bound only guards against a bug turning into a hang.
        last_year = year + 9
        while year <= last_year:
            if month not in months:
                next_month = _next_in(self.months, month)
                if next_month is None:
                    year, month = year + 1, self.months[0]
                else:
                    month = next_month
                day, hour, minute = 1, 0, 0
                continue
            month_length = _month_length(year, month)
            weekday = _cron_weekday(year, month, day) if day <= month_length else 0
            while day <= month_length and not day_ok(day, weekday):
                day += 1
                weekday = (weekday + 1) % 7
                hour, minute = 0, 0
            if day > month_length:
                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
                day, hour, minute = 1, 0, 0
                continue
            next_hour = _next_in(self.hours, hour)
            if next_hour is None:
                day, hour, minute = day + 1, 0, 0
                continue
            if next_hour != hour:
                hour, minute = next_hour, 0
            next_minute = _next_in(self.minutes, minute)
            if next_minute is None:
                hour, minute = hour + 1, 0
                if hour == 24:
                    day, hour = day + 1, 0
                continue
            return datetime(year, month, day, hour, next_minute)
        raise RuntimeError(f"cron expression {self.source!r} found no fire time before {year}")


def _month_length(year: int, month: int) -> int:
    if month == 2:
        return 29 if calendar.isleap(year) else 28
    return _MAX_DAYS[month]


def _cron_weekday(year: int, month: int, day: int) -> int:
    # calendar.weekday counts Monday as 0; cron counts Sunday as 0.
    return (calendar.weekday(year, month, day) + 1) % 7


def _floor_minute(dt: datetime) -> datetime:
    return dt.replace(second=0, microsecond=0)


def _resolve_wall(wall: datetime, zone: tzinfo) -> datetime:
    """When a matching wall time fires in ``zone``: a gap fires at its end, an overlap at fold=0."""
    first = wall.replace(tzinfo=zone, fold=0)
    round_trip = first.astimezone(UTC).astimezone(zone)
    if round_trip.replace(tzinfo=None, fold=0) == wall:
        return first
    # `wall` falls in a gap. Under fold=1 it reads with the offset after the jump and lands
    # before the transition; under fold=0 with the offset before it and lands after. The
    # transition instant sits in between; bisect to the second (zones change on whole seconds).
    before = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    after = first.astimezone(UTC)
    if before > after:
        before, after = after, before
    offset_after = after.astimezone(zone).utcoffset()
    # Invariant: the offset at `before + low` differs from `offset_after`; at `before + high` it
    # equals it. Whole seconds, so this ends in about a dozen steps for an hour-wide gap.
    low, high = 0, int((after - before).total_seconds())
    while high - low > 1:
        middle = (low + high) // 2
        if (before + timedelta(seconds=middle)).astimezone(zone).utcoffset() == offset_after:
            high = middle
        else:
            low = middle
    return (before + timedelta(seconds=high)).astimezone(zone)
