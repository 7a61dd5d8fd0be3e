"""crontab(5) expressions: the syntax we accept, the messages we refuse with, and fire times
that agree with croniter away from DST changes and follow our documented rules across them."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter  # type: ignore[import-untyped]
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from app.spec.cron import CronError, CronExpression

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
SAO_PAULO = ZoneInfo("America/Sao_Paulo")
ORACLE_ZONES = [
    "UTC",
    "Europe/Paris",
    "America/New_York",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
    "America/Sao_Paulo",
]


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def fires(expression: str, after: datetime, tz: ZoneInfo, count: int) -> list[datetime]:
    return list(islice(CronExpression.parse(expression).iter_after(after, tz), count))


def cron_error(text: str) -> CronError:
    with pytest.raises(CronError) as caught:
        CronExpression.parse(text)
    return caught.value


class TestSyntax:
    def test_star_means_every_value(self) -> None:
        expression = CronExpression.parse("* * * * *")
        assert expression.minutes == frozenset(range(60))
        assert expression.hours == frozenset(range(24))
        assert expression.days == frozenset(range(1, 32))
        assert expression.months == frozenset(range(1, 13))
        assert expression.weekdays == frozenset(range(7))
        assert not expression.dom_restricted
        assert not expression.dow_restricted

    @pytest.mark.parametrize(
        ("field", "values"),
        [
            ("5", {5}),
            ("05", {5}),
            ("10-13", {10, 11, 12, 13}),
            ("7-7", {7}),
            ("*/15", {0, 15, 30, 45}),
            ("10-30/10", {10, 20, 30}),
            ("50/3", {50, 53, 56, 59}),
            ("1,2-4,40-50/5", {1, 2, 3, 4, 40, 45, 50}),
            ("0,0,0", {0}),
        ],
    )
    def test_minute_forms(self, field: str, values: set[int]) -> None:
        assert CronExpression.parse(f"{field} * * * *").minutes == values

    def test_month_names_case_insensitive_and_in_ranges(self) -> None:
        assert CronExpression.parse("0 0 1 JAN,mar-May,Oct/2 *").months == {1, 3, 4, 5, 10, 12}

    def test_weekday_names_in_ranges(self) -> None:
        assert CronExpression.parse("0 0 * * mon-FRI").weekdays == {1, 2, 3, 4, 5}
        assert CronExpression.parse("0 0 * * Sun,sat").weekdays == {0, 6}

    @pytest.mark.parametrize("field", ["0", "7", "sun", "0,7", "7-7"])
    def test_zero_and_seven_are_sunday(self, field: str) -> None:
        assert CronExpression.parse(f"0 0 * * {field}").weekdays == {0}

    @pytest.mark.parametrize(
        ("field", "days"),
        [
            ("5-7", {5, 6, 0}),
            ("fri-7", {5, 6, 0}),
            ("0-7", set(range(7))),
            ("*/2", {0, 2, 4, 6}),
            ("1/2", {1, 3, 5, 0}),  # 1-7/2: the 7 is Sunday, as in Vixie cron
        ],
    )
    def test_weekday_ranges_reach_seven(self, field: str, days: set[int]) -> None:
        assert CronExpression.parse(f"0 0 * * {field}").weekdays == days

    @pytest.mark.parametrize(
        ("text", "dom", "dow"),
        [
            ("0 0 * * *", False, False),
            ("0 0 13 * 5", True, True),
            ("0 0 */2 * 1", False, True),
            ("0 0 1-31 * *", True, False),
            ("0 0 * * */2", False, False),
        ],
    )
    def test_restricted_means_not_starting_with_star(self, text: str, dom: bool, dow: bool) -> None:
        expression = CronExpression.parse(text)
        assert (expression.dom_restricted, expression.dow_restricted) == (dom, dow)

    def test_whitespace_between_fields_is_free(self) -> None:
        assert CronExpression.parse("  0\t0  * *   *  ") == CronExpression.parse("0 0 * * *")

    @pytest.mark.parametrize(
        ("macro", "same_as"),
        [
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@hourly", "0 * * * *"),
            ("@DAILY", "0 0 * * *"),
        ],
    )
    def test_macros(self, macro: str, same_as: str) -> None:
        assert CronExpression.parse(macro) == CronExpression.parse(same_as)


class TestRefusals:
    @pytest.mark.parametrize(
        ("text", "field", "message"),
        [
            ("0 24 * * *", "hour", "hour: 24 is out of range 0-23"),
            ("60 * * * *", "minute", "minute: 60 is out of range 0-59"),
            ("0 0 0 * *", "day of month", "day of month: 0 is out of range 1-31"),
            ("* * 0 0 *", "day of month", "day of month: 0 is out of range 1-31"),
            ("* * 1 0 *", "month", "month: 0 is out of range 1-12"),
            ("* * * 13 *", "month", "month: 13 is out of range 1-12"),
            ("* * * * 8", "day of week", "day of week: 8 is out of range 0-7"),
            ("0 0-24 * * *", "hour", "hour: 24 is out of range 0-23"),
            ("5-1 * * * *", "minute", "minute: range 5-1 is reversed; write it low-high in 0-59"),
            (
                "0 0 * * fri-mon",
                "day of week",
                "day of week: range fri-mon is reversed; write it low-high in 0-7 or sun-sat",
            ),
            ("*/0 * * * *", "minute", "minute: step 0 is out of range 1-59"),
            ("0 1-5/0 * * *", "hour", "hour: step 0 is out of range 1-23"),
            ("0 */24 * * *", "hour", "hour: step 24 is out of range 1-23"),
            ("0 0 * * */x", "day of week", "day of week: step 'x' is not a number in 1-7"),
            ("1,,2 * * * *", "minute", "minute: empty list item in '1,,2' (allowed 0-59)"),
            ("0, * * * *", "minute", "minute: empty list item in '0,' (allowed 0-59)"),
            ("x * * * *", "minute", "minute: 'x' is not a number in 0-59"),
            ("-5 * * * *", "minute", "minute: a missing value is not a number in 0-59"),
            ("1-2-3 * * * *", "minute", "minute: '2-3' is not a number in 0-59"),
            ("0 0 L * *", "day of month", "day of month: 'L' is not a number in 1-31"),
            ("0 0 ? * *", "day of month", "day of month: '?' is not a number in 1-31"),
            (
                "0 0 * foo *",
                "month",
                "month: 'foo' is not a number or name in 1-12 or jan-dec",
            ),
            (
                "0 0 * * monday",
                "day of week",
                "day of week: 'monday' is not a number or name in 0-7 or sun-sat",
            ),
            ("0 0 * * 1#2", "day of week", "day of week: '1#2' is not a number or name"),
            ("0 jan * * *", "hour", "hour: 'jan' is not a number in 0-23"),
        ],
    )
    def test_message_names_field_value_and_range(self, text: str, field: str, message: str) -> None:
        error = cron_error(text)
        assert error.field == field
        assert str(error).startswith(message)

    @pytest.mark.parametrize(
        ("text", "got"),
        [("", 0), ("* * * *", 4), ("0 0 * * * *", 6), ("0 0 * * * 2025", 6)],
    )
    def test_field_count(self, text: str, got: int) -> None:
        error = cron_error(text)
        assert error.field == "expression"
        assert str(error) == (
            f"expected 5 fields (minute hour day-of-month month day-of-week), got {got}"
        )

    @pytest.mark.parametrize("text", ["@reboot", "@fortnightly", "@daily x"])
    def test_unknown_macro(self, text: str) -> None:
        error = cron_error(text)
        assert error.field == "expression"
        assert f"unknown macro {text!r}" in str(error)
        assert "@yearly @annually @monthly @weekly @daily @midnight @hourly" in str(error)

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("0 0 30 2 *", "day of month: 30 is out of range 1-29 for feb"),
            ("0 0 31 feb *", "day of month: 31 is out of range 1-29 for feb"),
            ("0 0 31 4,6,9,11 *", "day of month: 31 is out of range 1-30 for apr,jun,sep,nov"),
            ("0 0 30,31 2 */2", "day of month: 30 is out of range 1-29 for feb"),
        ],
    )
    def test_day_that_never_comes(self, text: str, message: str) -> None:
        error = cron_error(text)
        assert error.field == "day of month"
        assert str(error) == message

    @pytest.mark.parametrize(
        "text",
        [
            "0 0 29 2 *",  # leap years
            "0 0 31 2 1",  # every Monday in February, by the OR rule
            "0 0 30,31 2,3 *",
            "0 0 */31 2 *",  # 1-31/31 is the 1st
        ],
    )
    def test_days_that_do_come(self, text: str) -> None:
        assert CronExpression.parse(text).next_after(utc(2025, 1, 1), ZoneInfo("UTC"))

    def test_is_a_value_error(self) -> None:
        assert isinstance(cron_error("61 * * * *"), ValueError)

    def test_naive_datetime_refused(self) -> None:
        with pytest.raises(ValueError, match="no time zone"):
            CronExpression.parse("* * * * *").next_after(datetime(2025, 1, 1), PARIS)


class TestCalendar:
    def test_leap_day_fires_in_leap_years_only(self) -> None:
        assert fires("0 0 29 2 *", utc(2025, 1, 1), ZoneInfo("UTC"), 3) == [
            utc(2028, 2, 29),
            utc(2032, 2, 29),
            utc(2036, 2, 29),
        ]

    def test_leap_day_skips_2100(self) -> None:
        assert fires("0 0 29 2 *", utc(2097, 1, 1), ZoneInfo("UTC"), 1) == [utc(2104, 2, 29)]

    def test_leap_day_in_paris_is_the_evening_before_in_utc(self) -> None:
        assert fires("0 0 29 2 *", utc(2025, 6, 1), PARIS, 1) == [utc(2028, 2, 28, 23)]

    def test_leap_day_answers_fast(self) -> None:
        expression = CronExpression.parse("0 0 29 2 *")
        started = time.perf_counter()
        for _ in range(20):
            expression.next_after(utc(2025, 6, 1), PARIS)
        assert (time.perf_counter() - started) / 20 < 0.010

    def test_month_ends(self) -> None:
        assert fires("0 12 31 * *", utc(2025, 1, 1), ZoneInfo("UTC"), 4) == [
            utc(2025, 1, 31, 12),
            utc(2025, 3, 31, 12),
            utc(2025, 5, 31, 12),
            utc(2025, 7, 31, 12),
        ]

    def test_year_end_rolls_over(self) -> None:
        assert fires("59 23 31 12 *", utc(2025, 12, 31, 23, 59), ZoneInfo("UTC"), 1) == [
            utc(2026, 12, 31, 23, 59)
        ]

    def test_sunday_as_seven(self) -> None:
        assert fires("0 0 * * 7", utc(2025, 1, 1), ZoneInfo("UTC"), 3) == [
            utc(2025, 1, 5),
            utc(2025, 1, 12),
            utc(2025, 1, 19),
        ]

    def test_day_of_month_or_day_of_week(self) -> None:
        # Every 13th and every Friday (Friday 2025-06-13 once).
        got = fires("0 0 13 * 5", utc(2025, 5, 31), ZoneInfo("UTC"), 6)
        assert [d.day for d in got] == [6, 13, 20, 27, 4, 11]
        got = fires("0 0 13 * 5", utc(2025, 1, 1), ZoneInfo("UTC"), 4)
        assert [d.day for d in got] == [3, 10, 13, 17]

    def test_star_step_day_of_month_ands_with_day_of_week(self) -> None:
        # `*/10` starts with `*`, so it is not "restricted": Mondays on the 1st, 11th, 21st, 31st.
        got = fires("0 0 */10 * 1", utc(2025, 1, 1), ZoneInfo("UTC"), 3)
        assert got == [utc(2025, 3, 31), utc(2025, 4, 21), utc(2025, 7, 21)]

    def test_strictly_after_and_whole_minutes(self) -> None:
        expression = CronExpression.parse("* * * * *")
        assert expression.next_after(utc(2025, 1, 1, 10), PARIS) == utc(2025, 1, 1, 10, 1)
        assert expression.next_after(
            utc(2025, 1, 1, 10, 0, 59) + timedelta(microseconds=1), PARIS
        ) == utc(2025, 1, 1, 10, 1)

    def test_after_may_be_in_any_zone(self) -> None:
        after = datetime(2025, 1, 1, 9, 30, tzinfo=ZoneInfo("Asia/Tokyo"))
        fire = CronExpression.parse("0 * * * *").next_after(after, PARIS)
        assert fire == utc(2025, 1, 1, 1)
        assert fire.tzinfo is UTC

    def test_between_is_half_open_and_limited(self) -> None:
        expression = CronExpression.parse("0 * * * *")
        start, end = utc(2025, 1, 1, 0), utc(2025, 1, 1, 3)
        assert expression.between(start, end, PARIS, 10) == [
            utc(2025, 1, 1, 1),
            utc(2025, 1, 1, 2),
            utc(2025, 1, 1, 3),
        ]
        assert expression.between(start, end, PARIS, 2) == [utc(2025, 1, 1, 1), utc(2025, 1, 1, 2)]
        assert expression.between(start, end, PARIS, 0) == []

    def test_runs_out_at_the_end_of_datetime(self) -> None:
        expression = CronExpression.parse("0 0 1 1 *")
        assert list(expression.iter_after(utc(9998, 6, 1), ZoneInfo("UTC"))) == [utc(9999, 1, 1)]
        with pytest.raises(ValueError, match="no fire time"):
            expression.next_after(utc(9999, 6, 1), ZoneInfo("UTC"))


# Expected instants worked out by hand. Paris 2025: 02:00 CET -> 03:00 CEST at 01:00Z on
# 30 March; 03:00 CEST -> 02:00 CET at 01:00Z on 26 October. New York 2025: 02:00 EST ->
# 03:00 EDT at 07:00Z on 9 March; 02:00 EDT -> 01:00 EST at 06:00Z on 2 November.
DST_CASES = [
    # Spring forward: a fixed time in the gap fires once, at the jump.
    ("30 2 * * *", PARIS, "2025-03-28 12:00", ["03-29 01:30", "03-30 01:00", "03-31 00:30"]),
    ("30 1 * * *", PARIS, "2025-03-28 12:00", ["03-29 00:30", "03-30 00:30", "03-30 23:30"]),
    ("0 2,3 * * *", PARIS, "2025-03-29 12:00", ["03-30 01:00", "03-31 00:00", "03-31 01:00"]),
    ("0,30 2 * * *", PARIS, "2025-03-29 12:00", ["03-30 01:00", "03-31 00:00", "03-31 00:30"]),
    # ...while jobs of every hour just have no ticks in the missing hour.
    ("*/15 * * * *", PARIS, "2025-03-30 00:30", ["03-30 00:45", "03-30 01:00", "03-30 01:15"]),
    ("0 * * * *", PARIS, "2025-03-29 23:30", ["03-30 00:00", "03-30 01:00", "03-30 02:00"]),
    ("30 * * * *", PARIS, "2025-03-30 00:00", ["03-30 00:30", "03-30 01:30", "03-30 02:30"]),
    # Fall back: a fixed time in the repeated hour fires once, in the first pass...
    ("30 2 * * *", PARIS, "2025-10-25 12:00", ["10-26 00:30", "10-27 01:30"]),
    ("30 1 * * *", PARIS, "2025-10-24 12:00", ["10-24 23:30", "10-25 23:30", "10-27 00:30"]),
    # ...while jobs of every hour fire in both passes: every 15 (or 60) real minutes.
    (
        "*/15 * * * *",
        PARIS,
        "2025-10-25 23:50",
        [
            "10-26 00:00",
            "10-26 00:15",
            "10-26 00:30",
            "10-26 00:45",
            "10-26 01:00",
            "10-26 01:15",
            "10-26 01:30",
            "10-26 01:45",
            "10-26 02:00",
        ],
    ),
    (
        "0 * * * *",
        PARIS,
        "2025-10-25 22:30",
        ["10-25 23:00", "10-26 00:00", "10-26 01:00", "10-26 02:00"],
    ),
    ("30 2 * * *", NEW_YORK, "2025-03-08 00:00", ["03-08 07:30", "03-09 07:00", "03-10 06:30"]),
    ("30 1 * * *", NEW_YORK, "2025-03-08 12:00", ["03-09 06:30", "03-10 05:30"]),
    ("*/15 * * * *", NEW_YORK, "2025-03-09 06:30", ["03-09 06:45", "03-09 07:00", "03-09 07:15"]),
    ("0 * * * *", NEW_YORK, "2025-03-09 05:30", ["03-09 06:00", "03-09 07:00", "03-09 08:00"]),
    ("30 1 * * *", NEW_YORK, "2025-11-01 12:00", ["11-02 05:30", "11-03 06:30"]),
    ("30 2 * * *", NEW_YORK, "2025-11-01 00:00", ["11-01 06:30", "11-02 07:30", "11-03 07:30"]),
    (
        "*/15 * * * *",
        NEW_YORK,
        "2025-11-02 04:50",
        [
            "11-02 05:00",
            "11-02 05:15",
            "11-02 05:30",
            "11-02 05:45",
            "11-02 06:00",
            "11-02 06:15",
            "11-02 06:30",
            "11-02 06:45",
            "11-02 07:00",
        ],
    ),
    ("0 * * * *", NEW_YORK, "2025-11-02 04:30", ["11-02 05:00", "11-02 06:00", "11-02 07:00"]),
    # Starting inside the second pass: the fixed time already fired in the first one.
    ("30 1 * * *", NEW_YORK, "2025-11-02 06:10", ["11-03 06:30"]),
    ("*/15 * * * *", NEW_YORK, "2025-11-02 06:10", ["11-02 06:15"]),
    # Fixed hours with many minutes: once per wall time, catch-up once.
    (
        "*/20 1 * * *",
        NEW_YORK,
        "2025-11-02 04:00",
        ["11-02 05:00", "11-02 05:20", "11-02 05:40", "11-03 06:00"],
    ),
    ("*/20 2 * * *", NEW_YORK, "2025-03-09 00:00", ["03-09 07:00", "03-10 06:00"]),
    # Lord Howe moves by 30 minutes: 02:00 -> 02:30 at 15:30Z on 4 October 2025 and
    # 02:00 -> 01:30 at 15:00Z on 5 April 2025.
    ("15 2 * * *", LORD_HOWE, "2025-10-04 12:00", ["10-04 15:30", "10-05 15:15"]),
    ("*/15 * * * *", LORD_HOWE, "2025-10-04 15:10", ["10-04 15:15", "10-04 15:30", "10-04 15:45"]),
    ("45 1 * * *", LORD_HOWE, "2025-04-05 12:00", ["04-05 14:45", "04-06 15:15"]),
    (
        "*/15 * * * *",
        LORD_HOWE,
        "2025-04-05 14:40",
        ["04-05 14:45", "04-05 15:00", "04-05 15:15", "04-05 15:30"],
    ),
]


@pytest.mark.parametrize(("expression", "tz", "after", "expected"), DST_CASES)
def test_dst_transitions(expression: str, tz: ZoneInfo, after: str, expected: list[str]) -> None:
    # Instants are UTC, "YYYY-MM-DD HH:MM" and then "MM-DD HH:MM" in the same year.
    start = datetime.fromisoformat(after).replace(tzinfo=UTC)
    want = [
        datetime.fromisoformat(f"{start.year}-{moment}").replace(tzinfo=UTC) for moment in expected
    ]
    assert fires(expression, start, tz, len(want)) == want


class TestMidnightTransitions:
    """Sao Paulo changed clocks at midnight, so a day could start at 01:00 or end twice."""

    def test_missing_midnight_fires_at_one(self) -> None:
        # 2018-11-04 00:00 -03 -> 01:00 -02 at 03:00Z.
        assert fires("0 0 * * *", utc(2018, 11, 3, 12), SAO_PAULO, 2) == [
            utc(2018, 11, 4, 3),
            utc(2018, 11, 5, 2),
        ]

    def test_repeated_evening_fires_once(self) -> None:
        # 2019-02-17 00:00 -02 -> 2019-02-16 23:00 -03 at 02:00Z: 23:xx on the 16th repeats.
        assert fires("0 23 * * *", utc(2019, 2, 15, 12), SAO_PAULO, 3) == [
            utc(2019, 2, 16, 1),
            utc(2019, 2, 17, 1),
            utc(2019, 2, 18, 2),
        ]

    def test_every_hour_job_fires_again_in_a_repeat_just_after_the_start(self) -> None:
        # 2016-02-21 00:00 -02 -> 2016-02-20 23:00 -03 at 02:00Z. From 23:50 -02 the next
        # match on the calendar is 1 January, at the same offset: the repeated 23:05 comes first.
        after = utc(2016, 2, 21, 1, 50)
        assert fires("5 * 1,20 1,2 *", after, SAO_PAULO, 2) == [
            utc(2016, 2, 21, 2, 5),
            utc(2017, 1, 1, 2, 5),
        ]


def test_daily_job_fires_once_every_local_day_for_years() -> None:
    for zone in ORACLE_ZONES:
        tz = ZoneInfo(zone)
        for expression in ["30 2 * * *", "30 1 * * *", "0 0 * * *", "45 23 * * *"]:
            got = fires(expression, utc(2015, 1, 1), tz, 365 * 4)
            local_days = [fire.astimezone(tz).date() for fire in got]
            assert len(set(local_days)) == len(local_days), (zone, expression)
            assert (local_days[-1] - local_days[0]).days == len(local_days) - 1


# --- croniter as the oracle --------------------------------------------------------------

MINUTE, HOUR, DOM, MONTH, DOW = (0, 59), (0, 23), (1, 31), (1, 12), (0, 7)
MONTH_NAMES = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DOW_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


@st.composite
def field_text(draw: st.DrawFn, bounds: tuple[int, int], names: list[str] | None = None) -> str:
    """One field, built from the forms croniter reads as crontab(5) does.

    Left out: `a-a` ranges (croniter reads `5-5` as the whole cycle) and `a/n` in day of
    week (croniter stops at 6 where Vixie cron runs to 7); both have explicit tests above.
    """
    low, high = bounds

    def value(number: int) -> str:
        named = names is not None and number - low < len(names)
        if named and draw(st.booleans()):
            return names[number - low]  # type: ignore[index]
        return str(number)

    def item() -> str:
        kind = draw(st.sampled_from(["single", "range", "range_step", "open_step"]))
        a = draw(st.integers(low, high))
        if kind == "single":
            return value(a)
        if kind == "open_step" and bounds != DOW:
            return f"{value(a)}/{draw(st.integers(1, high))}"
        assume(a < high)
        b = draw(st.integers(a + 1, high))
        step = f"/{draw(st.integers(1, high))}" if kind == "range_step" else ""
        return f"{value(a)}-{value(b)}{step}"

    kind = draw(st.sampled_from(["star", "star_step", "item", "list"]))
    if kind == "star":
        return "*"
    if kind == "star_step":
        return f"*/{draw(st.integers(1, high))}"
    if kind == "item":
        return item()
    return ",".join(item() for _ in range(draw(st.integers(2, 3))))


@st.composite
def expressions(draw: st.DrawFn) -> str:
    fields = [
        draw(field_text(MINUTE)),
        draw(field_text(HOUR)),
        draw(field_text(DOM)),
        draw(field_text(MONTH, MONTH_NAMES)),
        draw(field_text(DOW, DOW_NAMES)),
    ]
    return " ".join(fields)


def near_offset_change(tz: ZoneInfo, instant: datetime) -> bool:
    window = timedelta(hours=3)
    return (instant - window).astimezone(tz).utcoffset() != (instant + window).astimezone(
        tz
    ).utcoffset()


def oracle(text: str, after: datetime, tz: ZoneInfo, count: int) -> list[datetime]:
    # implement_cron_bug: like Vixie cron (and us), a day-of-month or day-of-week field that
    # starts with `*` is not "restricted", so the two are ANDed rather than ORed.
    schedule = croniter(text, after.astimezone(tz), day_or=True, implement_cron_bug=True)
    return [schedule.get_next(datetime).astimezone(UTC) for _ in range(count)]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=expressions(),
    after=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2036, 12, 31)),
    zone=st.sampled_from(ORACLE_ZONES),
)
def test_agrees_with_croniter_away_from_offset_changes(
    text: str, after: datetime, zone: str
) -> None:
    try:
        expression = CronExpression.parse(text)
    except CronError as error:
        assert error.field == "day of month"  # the generator only errs into impossible days
        assume(False)
    tz, start = ZoneInfo(zone), after.replace(tzinfo=UTC)
    ours = list(islice(expression.iter_after(start, tz), 5))
    theirs = oracle(text, start, tz, 5)
    assert ours[0] > start
    assert all(a < b for a, b in pairwise(ours))
    for mine, its in zip(ours, theirs, strict=True):
        if mine != its:
            # Only our documented DST rules may differ, and only next to an offset change.
            assert near_offset_change(tz, min(mine, its)), (text, zone, start, ours, theirs)
            break


@settings(max_examples=100, deadline=None)
@given(
    text=expressions(),
    after=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2036, 12, 31)),
    zone=st.sampled_from(ORACLE_ZONES),
)
def test_every_fire_matches_or_is_a_catch_up(text: str, after: datetime, zone: str) -> None:
    try:
        expression = CronExpression.parse(text)
    except CronError:
        assume(False)
    tz = ZoneInfo(zone)
    for fire in islice(expression.iter_after(after.replace(tzinfo=UTC), tz), 20):
        local = fire.astimezone(tz)
        is_jump = (fire - timedelta(seconds=1)).astimezone(tz).utcoffset() != local.utcoffset()
        assert local.second == 0 or is_jump
        assert matches(expression, local) or (is_jump and not expression.every_hour)


def matches(expression: CronExpression, local: datetime) -> bool:
    in_days = local.day in expression.days
    in_weekdays = local.isoweekday() % 7 in expression.weekdays
    day = (
        in_days or in_weekdays
        if expression.dom_restricted and expression.dow_restricted
        else in_days and in_weekdays
    )
    return (
        day
        and local.minute in expression.minutes
        and local.hour in expression.hours
        and local.month in expression.months
    )


def offset_changes(zone: str) -> list[datetime]:
    """The instants in 2005-2030 at which the zone's UTC offset changes."""
    tz, found = ZoneInfo(zone), []
    day = utc(2005, 1, 1)
    while day < utc(2030, 1, 1):
        following = day + timedelta(days=1)
        if day.astimezone(tz).utcoffset() != following.astimezone(tz).utcoffset():
            low, high = 0, 86_400  # seconds into the day: the offset changes in (low, high]
            while high - low > 1:
                middle = (low + high) // 2
                moment = day + timedelta(seconds=middle)
                same = moment.astimezone(tz).utcoffset() == day.astimezone(tz).utcoffset()
                low, high = (middle, high) if same else (low, middle)
            found.append(day + timedelta(seconds=high))
        day = following
    return found


CHANGES = {zone: offset_changes(zone) for zone in ORACLE_ZONES[1:4] + ORACLE_ZONES[5:]}


def is_forward(tz: ZoneInfo, change: datetime) -> bool:
    before = (change - timedelta(seconds=1)).astimezone(tz).utcoffset()
    after = change.astimezone(tz).utcoffset()
    assert before is not None and after is not None
    return after > before


def by_the_rules(
    expression: CronExpression, tz: ZoneInfo, start: datetime, end: datetime
) -> list[datetime]:
    """The module docstring's DST rules applied minute by minute: slow, but plainly right."""
    fired = []
    minute = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while minute <= end:
        local = minute.astimezone(tz)
        second_pass = local.fold == 1 and not expression.every_hour
        if matches(expression, local) and not second_pass:
            fired.append(minute)
        elif is_forward(tz, minute) and not expression.every_hour:
            jumped = (minute - timedelta(seconds=1)).astimezone(tz).replace(tzinfo=None)
            gap_end = local.replace(tzinfo=None)
            while (jumped := jumped.replace(second=0) + timedelta(minutes=1)) < gap_end:
                if matches(expression, jumped):
                    fired.append(minute)
                    break
        minute += timedelta(minutes=1)
    return fired


NEAR_CHANGES = {
    "text": expressions(),
    "zone": st.sampled_from(sorted(CHANGES)),
    "index": st.integers(0, 10_000),
    "shift": st.integers(-6 * 3600, 6 * 3600),
}


@settings(max_examples=200, deadline=None)
@given(**NEAR_CHANGES)
def test_follows_the_documented_rules_at_offset_changes(
    text: str, zone: str, index: int, shift: int
) -> None:
    try:
        expression = CronExpression.parse(text)
    except CronError:
        assume(False)
    tz, changes = ZoneInfo(zone), CHANGES[zone]
    start = changes[index % len(changes)] + timedelta(seconds=shift)
    end = start + timedelta(hours=8)
    assert expression.between(start, end, tz, 1000) == by_the_rules(expression, tz, start, end)


@settings(max_examples=200, deadline=None)
@given(**NEAR_CHANGES)
def test_agrees_with_croniter_where_clocks_jump_forward(
    text: str, zone: str, index: int, shift: int
) -> None:
    # Where clocks go back croniter fires fixed-hour jobs in both passes (we fire once), and
    # sometimes drops the second pass of every-hour jobs (Lord Howe's 30-minute repeat).
    try:
        expression = CronExpression.parse(text)
    except CronError:
        assume(False)
    tz = ZoneInfo(zone)
    forward = [change for change in CHANGES[zone] if is_forward(tz, change)]
    start = forward[index % len(forward)] + timedelta(seconds=shift)
    ours = list(islice(expression.iter_after(start, tz), 5))
    theirs = oracle(text, start, tz, 5)
    horizon = start + timedelta(days=1)  # well before the clocks go back again
    assert [t for t in ours if t <= horizon] == [t for t in theirs if t <= horizon]
