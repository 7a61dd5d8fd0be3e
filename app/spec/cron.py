"""crontab(5) expressions and their fire times in a pipeline's IANA time zone.

Responsible for: parsing the five-field crontab syntax (and the @daily-style macros) into sets
of allowed values, refusing expressions that are malformed or can never fire with a message
that names the field, and answering "when does it fire next?" as UTC instants.

Syntax is Vixie cron's: `*`, numbers, `a-b`, `*/n`, `a-b/n`, `a/n` (= `a-max/n`), lists of
those; month names jan-dec and weekday names sun-sat, case-insensitive, also in ranges
(`mon-fri`); day of week 0 and 7 are both Sunday, so `5-7` is Friday to Sunday and `1/2`
(1-7/2) includes Sunday. When both day of month and day of week are restricted (the field does
not start with `*`) a day matches if EITHER matches (`0 0 13 * 5`: every 13th and every
Friday); otherwise both must. Macros: @yearly @annually @monthly @weekly @daily @midnight
@hourly (case-insensitive); @reboot is not a schedule and is refused. Quartz/croniter
extensions (`L`, `W`, `#`, `?`, seconds, years) are refused.

Fire times are wall-clock minutes in the zone, converted to UTC. Where the zone's clocks jump,
a job is treated by what its hour field says:

* A job whose hour field matches all 24 hours (`*`, `*/1`, `0-23`) repeats through the day:
  it fires at every instant the wall clock shows a matching minute. It has no ticks in a
  skipped hour (`*/15 * * * *` goes 01:45 → 03:00 when Paris jumps 02:00 → 03:00, and
  `30 * * * *` goes 01:30 → 03:30), and it fires in both passes of a repeated hour
  (`*/15 * * * *` keeps firing every 15 real minutes, `0 * * * *` every real hour).
* A job that names particular hours is a fixed-time job. Matching wall times inside a
  skipped stretch fire once, at the instant the clocks jump (`30 2 * * *` fires at 03:00 on
  the day Paris skips 02:00-02:59; `0,30 2 * * *` fires there once, and a regular 03:00 tick
  of `0 2,3 * * *` is not doubled). In a repeated stretch it fires only at the first
  occurrence (fold=0): `30 1 * * *` fires once at 01:30 EDT on the day New York repeats
  01:00-01:59, not again at 01:30 EST.

So a daily job fires exactly once every local day, and no instant is ever produced twice.
This is croniter's behaviour where clocks jump forward. Where they go back, croniter fires
fixed-time jobs twice (and can drop an every-hour job's second pass, as in Lord Howe's
30-minute repeat). Vixie cron has the same two rules but tells the kinds apart by spelling
(a minute or hour field starting with `*` is "wildcard"), so its `*/15 2 * * *` gets no
catch-up and fires in both passes; here the hour set decides, since it says what the job
means.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property, lru_cache
from itertools import islice, takewhile
from zoneinfo import ZoneInfo

_MINUTE = timedelta(minutes=1)
_SECOND = timedelta(seconds=1)
# tzdata never changes a zone's offset twice within one day, so a day-long stride cannot
# step over a change and back.
_DAY = timedelta(days=1)
_FIELD_NAMES = "minute hour day-of-month month day-of-week"
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# Longest length of each month in any year: February's 29th exists in leap years.
_LONGEST_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class CronError(ValueError):
    """An expression that is malformed or can never fire; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    first_name: int = 0  # the value of names[0]

    def fail(self, problem: str) -> CronError:
        return CronError(self.name, f"{self.name}: {problem}")

    def allowed(self) -> str:
        spelled = f" or {self.names[0]}-{self.names[-1]}" if self.names else ""
        return f"{self.low}-{self.high}{spelled}"


_MINUTES = _Field("minute", 0, 59)
_HOURS = _Field("hour", 0, 23)
_DAYS = _Field("day of month", 1, 31)
_MONTHS = _Field("month", 1, 12, _MONTH_NAMES, 1)
_WEEKDAYS = _Field("day of week", 0, 7, _WEEKDAY_NAMES, 0)
_ALL_HOURS = frozenset(range(24))


@dataclass(frozen=True)
class CronExpression:
    """A parsed crontab(5) expression: the allowed values of each field."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0-6, 0 = Sunday
    dom_restricted: bool
    dow_restricted: bool

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        """Parse five crontab fields or a macro; raises CronError naming the bad field."""
        fields = _expand_macro(text.strip()).split()
        if len(fields) != 5:
            raise CronError("expression", f"expected 5 fields ({_FIELD_NAMES}), got {len(fields)}")
        minute, hour, dom, month, dow = fields
        expression = cls(
            minutes=_parse_field(minute, _MINUTES),
            hours=_parse_field(hour, _HOURS),
            days=_parse_field(dom, _DAYS),
            months=_parse_field(month, _MONTHS),
            weekdays=frozenset(value % 7 for value in _parse_field(dow, _WEEKDAYS)),
            dom_restricted=not dom.startswith("*"),
            dow_restricted=not dow.startswith("*"),
        )
        expression._check_can_fire()
        return expression

    @property
    def every_hour(self) -> bool:
        """True when the hour field matches all 24 hours (see the DST rules above)."""
        return self.hours == _ALL_HOURS

    def next_after(self, after: datetime, tz: ZoneInfo) -> datetime:
        """The first fire time strictly after `after` (aware, any zone), as aware UTC."""
        fire = self._next_fire(_aware_utc(after), tz)
        if fire is None:
            raise ValueError(f"no fire time after {after.isoformat()} before the year 10000")
        return fire

    def iter_after(self, after: datetime, tz: ZoneInfo) -> Iterator[datetime]:
        """Fire times strictly after `after`, in increasing order, as aware UTC."""
        fire = self._next_fire(_aware_utc(after), tz)
        while fire is not None:
            yield fire
            fire = self._next_fire(fire, tz)

    def between(self, start: datetime, end: datetime, tz: ZoneInfo, limit: int) -> list[datetime]:
        """Fire times in (start, end], the earliest `limit` of them, as aware UTC."""
        end = _aware_utc(end)
        return list(islice(takewhile(lambda fire: fire <= end, self.iter_after(start, tz)), limit))

    # Sorted copies for bisecting; cached_property writes past the frozen __setattr__.
    @cached_property
    def _sorted_minutes(self) -> tuple[int, ...]:
        return tuple(sorted(self.minutes))

    @cached_property
    def _sorted_hours(self) -> tuple[int, ...]:
        return tuple(sorted(self.hours))

    @cached_property
    def _sorted_months(self) -> tuple[int, ...]:
        return tuple(sorted(self.months))

    def _check_can_fire(self) -> None:
        # Under the OR rule any weekday rescues a month, and a day-of-month field starting
        # with `*` always includes the 1st: only a lone day-of-month list can miss every month.
        if not self.dom_restricted or self.dow_restricted:
            return
        longest = max(_LONGEST_MONTH[month - 1] for month in self.months)
        if min(self.days) > longest:
            months = ",".join(_MONTH_NAMES[month - 1] for month in sorted(self.months))
            raise _DAYS.fail(f"{min(self.days)} is out of range 1-{longest} for {months}")

    def _next_fire(self, after: datetime, tz: ZoneInfo) -> datetime | None:
        """Walk matching wall-clock minutes, one stretch of constant UTC offset at a time."""
        try:
            return self._next_fire_unchecked(after, tz)
        except OverflowError:  # past the year 9999, where datetime ends
            return None

    def _next_fire_unchecked(self, after: datetime, tz: ZoneInfo) -> datetime | None:
        lo, offset = after, _offset(tz, after)
        wall_lo = _wall(lo, offset).replace(second=0, microsecond=0) + _MINUTE
        if not self.every_hour and (repeat_end := _repeat_end(tz, lo)) is not None:
            wall_lo = max(wall_lo, repeat_end)  # this wall time already fired in the first pass
        while (wall := self._next_wall(wall_lo)) is not None:
            candidate = (wall - offset).replace(tzinfo=UTC)
            change = _change_that_matters(tz, lo, candidate, offset)
            if change is None:
                return candidate
            new_offset = _offset(tz, change)
            if new_offset > offset:  # clocks jump forward over [change+offset, change+new_offset)
                if not self.every_hour and wall < _wall(change, new_offset):
                    return change
                wall_lo = _ceil_minute(_wall(change, new_offset))
            else:  # clocks go back: [change+new_offset, change+offset) shows again
                wall_lo = _ceil_minute(_wall(change, new_offset if self.every_hour else offset))
            lo, offset = change, new_offset
        return None

    def _next_wall(self, start: datetime) -> datetime | None:
        """The first matching wall-clock minute at or after `start` (naive), skipping days."""
        day, earliest = start.date(), (start.hour, start.minute)
        while True:
            if day.month not in self.months:
                next_month = self._next_month(day)
                if next_month is None:
                    return None
                day, earliest = next_month, (0, 0)
            elif not self._day_matches(day):
                day, earliest = day + _DAY, (0, 0)
            elif (hour_minute := self._time_at_or_after(*earliest)) is not None:
                return datetime.combine(day, time(*hour_minute))
            else:
                day, earliest = day + _DAY, (0, 0)

    def _next_month(self, day: date) -> date | None:
        months = self._sorted_months
        index = bisect_left(months, day.month + 1)
        if index < len(months):
            return date(day.year, months[index], 1)
        return date(day.year + 1, months[0], 1) if day.year < 9999 else None

    def _day_matches(self, day: date) -> bool:
        in_days = day.day in self.days
        in_weekdays = day.isoweekday() % 7 in self.weekdays
        if self.dom_restricted and self.dow_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays

    def _time_at_or_after(self, hour: int, minute: int) -> tuple[int, int] | None:
        hours, minutes = self._sorted_hours, self._sorted_minutes
        index = bisect_left(hours, hour)
        if index < len(hours) and hours[index] == hour:
            at = bisect_left(minutes, minute)
            if at < len(minutes):
                return hour, minutes[at]
            index += 1
        return (hours[index], minutes[0]) if index < len(hours) else None


def _expand_macro(text: str) -> str:
    if not text.startswith("@"):
        return text
    if (expansion := _MACROS.get(text.lower())) is None:
        macros = " ".join(_MACROS)
        raise CronError("expression", f"unknown macro {text!r}; expected one of {macros}")
    return expansion


def _parse_field(text: str, field: _Field) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise field.fail(f"empty list item in {text!r} (allowed {field.allowed()})")
        values.update(_parse_item(item, field))
    return frozenset(values)


def _parse_item(item: str, field: _Field) -> range:
    base, slash, step_text = item.partition("/")
    step = _parse_step(step_text, field) if slash else 1
    if base == "*":
        return range(field.low, field.high + 1, step)
    first, dash, last = base.partition("-")
    start = _parse_value(first, field)
    if not dash:
        end = field.high if slash else start  # `a/n` runs to the field's maximum
    else:
        end = _parse_value(last, field)
        if start > end:
            raise field.fail(f"range {base} is reversed; write it low-high in {field.allowed()}")
    return range(start, end + 1, step)


def _parse_value(token: str, field: _Field) -> int:
    if token.isascii() and token.isdigit():
        value = int(token)
        if not field.low <= value <= field.high:
            raise field.fail(f"{value} is out of range {field.low}-{field.high}")
        return value
    if token.lower() in field.names:
        return field.names.index(token.lower()) + field.first_name
    shown = repr(token) if token else "a missing value"
    kind = "a number or name" if field.names else "a number"
    raise field.fail(f"{shown} is not {kind} in {field.allowed()}")


def _parse_step(token: str, field: _Field) -> int:
    if not (token.isascii() and token.isdigit()):
        raise field.fail(f"step {token!r} is not a number in 1-{field.high}")
    step = int(token)
    if not 1 <= step <= field.high:
        raise field.fail(f"step {step} is out of range 1-{field.high}")
    return step


def _aware_utc(instant: datetime) -> datetime:
    if instant.utcoffset() is None:
        raise ValueError(f"{instant.isoformat()} has no time zone; pass an aware datetime")
    return instant.astimezone(UTC)


def _offset(tz: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(tz).utcoffset()
    assert offset is not None  # a ZoneInfo always knows its offset at an instant
    return offset


def _wall(instant: datetime, offset: timedelta) -> datetime:
    """The naive wall-clock time of a UTC instant at a given offset."""
    return (instant + offset).replace(tzinfo=None)


def _ceil_minute(wall: datetime) -> datetime:
    floor = wall.replace(second=0, microsecond=0)
    return floor if floor == wall else floor + _MINUTE


def _repeat_end(tz: ZoneInfo, instant: datetime) -> datetime | None:
    """If `instant` is in the second pass of a repeated stretch, the wall time it ends at."""
    local = instant.astimezone(tz)
    if not local.fold:
        return None
    first_pass = local.replace(fold=0).astimezone(UTC)
    change = _first_change(tz, first_pass, instant)
    assert change is not None  # the clocks went back between the two passes
    return _ceil_minute(_wall(change, _offset(tz, first_pass)))


def _change_that_matters(
    tz: ZoneInfo, lo: datetime, candidate: datetime, offset: timedelta
) -> datetime | None:
    """The first offset change in (lo, candidate], or None when none can change the answer.

    `candidate` is the first matching wall time read at `offset`. When that reading holds
    (same offset, first pass), no change further than a day from `lo` can matter: a change
    in between would need a matching wall time inside its gap or repeat, earlier than the
    first match. Only a change just after `lo` can repeat wall times from before it.
    """
    local = candidate.astimezone(tz)
    near = min(lo + _DAY, candidate)
    if local.utcoffset() == offset and not local.fold and _offset(tz, near) == offset:
        return None
    return _first_change(tz, lo, candidate)


def _first_change(tz: ZoneInfo, lo: datetime, hi: datetime) -> datetime | None:
    """The first instant in (lo, hi] at which the zone's UTC offset differs from lo's."""
    offset, start = _offset(tz, lo), lo
    while start < hi:
        stop = min(start + _DAY, hi)
        if _offset(tz, stop) != offset:
            return _bisect_change(tz, start, stop, offset)
        start = stop
    return None


def _bisect_change(tz: ZoneInfo, lo: datetime, hi: datetime, offset: timedelta) -> datetime:
    # Offset changes fall on whole seconds. Invariant: lo + before has `offset`, lo + after
    # does not (rounding hi up a fraction of a second cannot reach another change).
    lo = lo.replace(microsecond=0)
    before, after = 0, -(-(hi - lo) // _SECOND)
    while after - before > 1:
        middle = (before + after) // 2
        if _offset(tz, lo + middle * _SECOND) == offset:
            before = middle
        else:
            after = middle
    return lo + after * _SECOND


@lru_cache(maxsize=4096)
def parse_cron(text: str) -> CronExpression:
    """CronExpression.parse, remembered (the result is immutable): thousands of pipelines share
    a few expressions, and each is parsed when its spec is read and at every reschedule."""
    return CronExpression.parse(text)
