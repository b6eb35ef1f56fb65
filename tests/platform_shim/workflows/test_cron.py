"""Tests of platform_shim.workflows.cron: seconds-first six-field cron in UTC, epoch milliseconds.

Fixed dates pin the calendar cases; the property tests check the three methods against each
other (``next_after`` and ``latest_at_or_before`` take different croniter code paths), against
per-expression predicates written here by hand, and against a naive reference scheduler that
reads random expressions from the rules and walks the calendar day by day.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from croniter import croniter
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from platform_shim.errors import DefinitionError
from platform_shim.workflows.cron import CronSchedule

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ms(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, milli: int = 0
) -> int:
    """Epoch milliseconds of a UTC wall-clock time."""
    moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    return (moment - EPOCH) // timedelta(milliseconds=1) + milli


def at(epoch_ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=epoch_ms)


def nexts(expr: str, start: int, count: int) -> list[datetime]:
    schedule = CronSchedule.parse(expr)
    result = []
    for _ in range(count):
        start = schedule.next_after(start)
        result.append(at(start))
    return result


# --- fixed examples ------------------------------------------------------------------------


def test_daily_at_three_is_seconds_first() -> None:
    # croniter's default reading of these six fields is "every second of 00:00 on the 3rd".
    daily = CronSchedule.parse("0 0 3 * * *")
    assert nexts("0 0 3 * * *", ms(2024, 1, 1), 3) == [
        datetime(2024, 1, 1, 3, tzinfo=UTC),
        datetime(2024, 1, 2, 3, tzinfo=UTC),
        datetime(2024, 1, 3, 3, tzinfo=UTC),
    ]
    assert daily.next_after(ms(2024, 1, 1, 2, 59, 59, 999)) == ms(2024, 1, 1, 3)
    assert daily.next_after(ms(2024, 1, 1, 3)) == ms(2024, 1, 2, 3)  # strictly after
    assert daily.next_after(ms(2024, 1, 1, 3, 0, 0, 1)) == ms(2024, 1, 2, 3)
    assert daily.latest_at_or_before(ms(2024, 1, 1, 3)) == ms(2024, 1, 1, 3)  # at counts
    assert daily.latest_at_or_before(ms(2024, 1, 1, 3, 0, 0, 500)) == ms(2024, 1, 1, 3)
    assert daily.latest_at_or_before(ms(2024, 1, 1, 2, 59, 59, 999)) == ms(2023, 12, 31, 3)
    assert daily.ticks_between(ms(2024, 1, 1), ms(2024, 1, 31)) == 30
    assert daily.expr == "0 0 3 * * *"


def test_every_fifteen_seconds_with_sub_second_inputs() -> None:
    every15 = CronSchedule.parse("*/15 * * * * *")
    base = ms(2024, 5, 6, 7, 8)
    assert every15.next_after(base) == base + 15_000
    assert every15.next_after(base + 1) == base + 15_000
    assert every15.next_after(base + 14_999) == base + 15_000
    assert every15.next_after(base + 15_000) == base + 30_000
    assert every15.next_after(base + 15_001) == base + 30_000
    assert every15.next_after(base + 59_500) == base + 60_000  # into the next minute
    assert every15.latest_at_or_before(base + 15_999) == base + 15_000
    assert every15.latest_at_or_before(base + 14_999) == base
    assert every15.latest_at_or_before(base) == base
    assert every15.latest_at_or_before(base - 1) == base - 15_000
    assert every15.ticks_between(base, base + 60_000) == 4
    assert every15.ticks_between(base - 1, base + 60_000) == 5
    assert every15.ticks_between(ms(2024, 5, 6, 23, 59, 50), ms(2024, 5, 7, 0, 0, 10)) == 1


def test_five_fields_mean_second_zero() -> None:
    five = CronSchedule.parse("*/5 * * * *")
    six = CronSchedule.parse("0 */5 * * * *")
    assert five.expr == "*/5 * * * *"
    start = ms(2024, 2, 28, 23, 50)
    assert nexts("*/5 * * * *", start, 3) == [
        datetime(2024, 2, 28, 23, 55, tzinfo=UTC),
        datetime(2024, 2, 29, 0, 0, tzinfo=UTC),
        datetime(2024, 2, 29, 0, 5, tzinfo=UTC),
    ]
    assert five.next_after(ms(2024, 1, 1, 0, 4, 59, 999)) == ms(2024, 1, 1, 0, 5)
    assert five.latest_at_or_before(ms(2024, 1, 1, 0, 9, 59, 999)) == ms(2024, 1, 1, 0, 5)
    assert five.ticks_between(ms(2024, 1, 1), ms(2024, 1, 1, 1)) == 12
    for probe in (start, ms(2024, 3, 1, 0, 2, 30, 7), ms(2031, 12, 31, 23, 59, 59, 999)):
        assert five.next_after(probe) == six.next_after(probe)
        assert five.latest_at_or_before(probe) == six.latest_at_or_before(probe)


def test_five_field_hourly_at_minute_thirty() -> None:
    assert nexts("30 * * * *", ms(2024, 1, 1, 0, 30), 2) == [
        datetime(2024, 1, 1, 1, 30, tzinfo=UTC),
        datetime(2024, 1, 1, 2, 30, tzinfo=UTC),
    ]


def test_weekdays() -> None:
    # 2024-01-05 is a Friday.
    assert nexts("0 30 9 * * mon-fri", ms(2024, 1, 5, 10), 3) == [
        datetime(2024, 1, 8, 9, 30, tzinfo=UTC),
        datetime(2024, 1, 9, 9, 30, tzinfo=UTC),
        datetime(2024, 1, 10, 9, 30, tzinfo=UTC),
    ]
    assert nexts("0 30 9 * * 1-5", ms(2024, 1, 5, 10), 3) == nexts(
        "0 30 9 * * MON-FRI", ms(2024, 1, 5, 10), 3
    )
    assert nexts("0 0 12 * * sat,sun", ms(2024, 1, 1), 3) == [
        datetime(2024, 1, 6, 12, tzinfo=UTC),
        datetime(2024, 1, 7, 12, tzinfo=UTC),
        datetime(2024, 1, 13, 12, tzinfo=UTC),
    ]
    # 0 and 7 are both Sunday.
    assert nexts("0 0 0 * * 0", ms(2024, 1, 1), 4) == nexts("0 0 0 * * 7", ms(2024, 1, 1), 4)
    assert [d.weekday() for d in nexts("0 0 0 * * 7", ms(2024, 1, 1), 4)] == [6, 6, 6, 6]
    # A range whose end is below its start wraps around the week.
    assert [d.strftime("%a") for d in nexts("0 0 0 * * fri-mon", ms(2024, 1, 1), 5)] == [
        "Fri",
        "Sat",
        "Sun",
        "Mon",
        "Fri",
    ]
    weekly = CronSchedule.parse("0 0 0 * * mon")
    assert weekly.latest_at_or_before(ms(2024, 1, 7, 23, 59, 59, 999)) == ms(2024, 1, 1)
    assert weekly.ticks_between(ms(2024, 1, 1), ms(2024, 12, 31)) == 52


def days(expr: str, start: int, count: int) -> list[str]:
    return [d.date().isoformat() for d in nexts(expr, start, count)]


def test_day_of_month_or_weekday_like_classic_cron() -> None:
    # Both restricted: a day matching either fires (the 13th, and every Friday).
    friday_or_13th = ["2024-01-05", "2024-01-12", "2024-01-13", "2024-01-19", "2024-01-26"]
    assert days("0 0 0 13 * fri", ms(2024, 1, 1), 5) == friday_or_13th
    # Only the day of month restricted: just the 13th.
    assert days("0 0 0 13 * *", ms(2024, 1, 1), 2) == ["2024-01-13", "2024-02-13"]
    assert days("0 0 0 13 * */1", ms(2024, 1, 1), 2) == ["2024-01-13", "2024-02-13"]
    assert days("0 0 0 * * fri", ms(2024, 1, 1), 2) == ["2024-01-05", "2024-01-12"]
    # A weekday list that names every day is still a restriction: every day fires.
    assert days("0 0 0 13 * 0-6", ms(2024, 1, 1), 2) == ["2024-01-02", "2024-01-03"]


# --- fields read by the platform, not by croniter ---------------------------------------------


def test_equal_range_is_one_value() -> None:
    # croniter alone reads "9-9" as every hour and "mon-mon" as every day.
    assert nexts("0 0 9-9 * * *", ms(2024, 1, 1), 2) == [
        datetime(2024, 1, 1, 9, tzinfo=UTC),
        datetime(2024, 1, 2, 9, tzinfo=UTC),
    ]
    assert days("0 0 0 * * mon-mon", ms(2024, 1, 1), 2) == ["2024-01-08", "2024-01-15"]
    assert days("0 0 0 * * 3-3,5", ms(2024, 1, 1), 3) == ["2024-01-03", "2024-01-05", "2024-01-10"]
    assert days("0 0 0 1 jan-jan/3 *", ms(2024, 1, 1), 2) == ["2025-01-01", "2026-01-01"]
    assert nexts("30-30 * * * * *", ms(2024, 1, 1), 2) == [
        datetime(2024, 1, 1, 0, 0, 30, tzinfo=UTC),
        datetime(2024, 1, 1, 0, 1, 30, tzinfo=UTC),
    ]


def seconds_of(expr: str) -> list[int]:
    return [d.second for d in nexts(expr, ms(2024, 1, 1) - 1, 8)]


def weekdays_of(expr: str) -> list[str]:
    return sorted({d.strftime("%a") for d in nexts(expr, ms(2024, 1, 1) - 1, 14)})


def test_steps_and_wrapping_ranges() -> None:
    assert seconds_of("*/20 * * * * *") == [0, 20, 40, 0, 20, 40, 0, 20]
    assert seconds_of("10/20 * * * * *") == [10, 30, 50, 10, 30, 50, 10, 30]
    assert seconds_of("5-25/10 * * * * *") == [5, 15, 25, 5, 15, 25, 5, 15]
    # A wrapping range keeps its step across the wrap: 50, 54, 58, then 2 (62 - 60), 6, 10.
    assert seconds_of("50-10/4 * * * * *") == [2, 6, 10, 50, 54, 58, 2, 6]
    assert weekdays_of("0 0 0 * * 6-1/2") == ["Mon", "Sat"]
    assert weekdays_of("0 0 0 * * fri-mon/2") == ["Fri", "Sun"]
    assert [d.month for d in nexts("0 0 0 1 nov-feb/2 *", ms(2024, 1, 1), 4)] == [11, 1, 11, 1]
    # Days of month wrap over 1-31: 28, 30, then 1 (32 - 31), 3.
    assert days("0 0 0 28-3/2 * *", ms(2024, 1, 1) - 1, 5) == [
        "2024-01-01",
        "2024-01-03",
        "2024-01-28",
        "2024-01-30",
        "2024-02-01",
    ]


def test_weekday_seven_is_sunday() -> None:
    assert weekdays_of("0 0 0 * * 7") == ["Sun"]
    assert weekdays_of("0 0 0 * * 7-7") == ["Sun"]
    assert weekdays_of("0 0 0 * * 6-7") == ["Sat", "Sun"]
    assert weekdays_of("0 0 0 * * 5-7") == ["Fri", "Sat", "Sun"]
    assert weekdays_of("0 0 0 * * 7-1") == ["Mon", "Sun"]
    assert weekdays_of("0 0 0 * * 1-7/2") == ["Fri", "Mon", "Sun", "Wed"]
    assert weekdays_of("0 0 0 * * 7/2") == ["Sat", "Sun", "Thu", "Tue"]
    assert len(weekdays_of("0 0 0 * * sun-7")) == 7  # 0 through 7 is the whole week
    assert len(weekdays_of("0 0 0 * * 0-7")) == 7


def test_month_boundaries() -> None:
    # The 31st skips the months that have none.
    assert nexts("0 0 0 31 * *", ms(2024, 1, 31), 3) == [
        datetime(2024, 3, 31, tzinfo=UTC),
        datetime(2024, 5, 31, tzinfo=UTC),
        datetime(2024, 7, 31, tzinfo=UTC),
    ]
    first = CronSchedule.parse("0 0 0 1 * *")
    assert first.next_after(ms(2024, 1, 31, 23, 59, 59, 999)) == ms(2024, 2, 1)
    assert first.next_after(ms(2024, 12, 15)) == ms(2025, 1, 1)
    assert first.latest_at_or_before(ms(2024, 3, 1)) == ms(2024, 3, 1)
    assert first.latest_at_or_before(ms(2024, 2, 29, 23, 59, 59, 999)) == ms(2024, 2, 1)
    last_second = CronSchedule.parse("59 59 23 * * *")
    assert last_second.latest_at_or_before(ms(2024, 3, 1)) == ms(2024, 2, 29, 23, 59, 59)
    assert last_second.latest_at_or_before(ms(2023, 3, 1)) == ms(2023, 2, 28, 23, 59, 59)
    assert last_second.next_after(ms(2024, 12, 31, 23, 59, 59)) == ms(2025, 1, 1, 23, 59, 59)
    new_year = CronSchedule.parse("0 0 0 1 jan *")
    assert new_year.next_after(ms(2024, 6, 1)) == ms(2025, 1, 1)
    assert new_year.latest_at_or_before(ms(2024, 6, 1)) == ms(2024, 1, 1)
    quarterly = CronSchedule.parse("0 0 0 1 */3 *")
    assert quarterly.ticks_between(ms(2024, 1, 1) - 1, ms(2024, 12, 31)) == 4


def test_leap_day() -> None:
    leap = CronSchedule.parse("0 0 12 29 2 *")
    assert leap.next_after(ms(2024, 1, 1)) == ms(2024, 2, 29, 12)
    assert leap.next_after(ms(2024, 2, 29, 12)) == ms(2028, 2, 29, 12)
    # 2100 is not a leap year: the gap is eight years.
    assert leap.next_after(ms(2096, 3, 1)) == ms(2104, 2, 29, 12)
    assert leap.latest_at_or_before(ms(2027, 12, 31)) == ms(2024, 2, 29, 12)
    assert leap.latest_at_or_before(ms(2024, 2, 29, 12)) == ms(2024, 2, 29, 12)
    assert leap.latest_at_or_before(ms(2024, 2, 29, 11, 59, 59, 999)) == ms(2020, 2, 29, 12)
    assert leap.ticks_between(ms(2024, 1, 1), ms(2040, 1, 1)) == 4  # 2024, 2028, 2032, 2036
    assert leap.ticks_between(ms(2024, 3, 1), ms(2027, 12, 31)) == 0


def test_before_1970() -> None:
    every_second = CronSchedule.parse("* * * * * *")
    assert every_second.next_after(-1) == 0
    assert every_second.next_after(-1500) == -1000
    assert every_second.latest_at_or_before(-1) == -1000
    assert every_second.latest_at_or_before(-1000) == -1000
    assert every_second.ticks_between(-3000, 0) == 3
    daily = CronSchedule.parse("0 0 3 * * *")
    assert daily.next_after(ms(1969, 12, 31, 12)) == ms(1970, 1, 1, 3)
    assert daily.latest_at_or_before(ms(1970, 1, 1, 2)) == ms(1969, 12, 31, 3)


def test_ends_of_the_calendar() -> None:
    leap = CronSchedule.parse("0 0 12 29 2 *")
    # Nothing before year 1 can be represented: None rather than an error.
    assert leap.latest_at_or_before(ms(1, 1, 1, 0, 0, 5)) is None
    every_second = CronSchedule.parse("* * * * * *")
    assert every_second.latest_at_or_before(ms(1, 1, 1, 0, 0, 5, 500)) == ms(1, 1, 1, 0, 0, 5)
    last = ms(9999, 12, 31, 23, 59, 59)
    with pytest.raises(ValueError, match=str(last)):
        every_second.next_after(last)
    assert every_second.ticks_between(last - 3000, last + 999) == 3
    assert every_second.ticks_between(last - 3000, 2**80) == 3  # a far-future sentinel is fine
    with pytest.raises(ValueError, match=str(last + 500)):
        every_second.latest_at_or_before(last + 500)
    too_late = ms(9999, 12, 31) + 10 * 86_400_000
    with pytest.raises(ValueError, match=str(too_late)):
        every_second.next_after(too_late)


# --- ticks_between ------------------------------------------------------------------------


def test_ticks_between_bounds_are_exclusive_then_inclusive() -> None:
    daily = CronSchedule.parse("0 0 3 * * *")
    tick = ms(2024, 1, 1, 3)
    assert daily.ticks_between(tick, tick) == 0
    assert daily.ticks_between(tick - 1, tick) == 1
    assert daily.ticks_between(tick - 1, tick - 1) == 0
    assert daily.ticks_between(tick, tick + 999) == 0
    assert daily.ticks_between(tick - 1000, tick + 999) == 1
    assert daily.ticks_between(tick + 5, tick - 5) == 0  # reversed range


def test_ticks_between_cap() -> None:
    every_second = CronSchedule.parse("* * * * * *")
    hour_start = ms(2024, 1, 1)
    assert every_second.ticks_between(hour_start, hour_start + 3_600_000) == 3600
    assert every_second.ticks_between(hour_start, hour_start + 3_600_000, cap=100) == 100
    assert every_second.ticks_between(hour_start, hour_start + 100_000, cap=100) == 100
    assert every_second.ticks_between(hour_start, hour_start + 99_000, cap=100) == 99
    assert every_second.ticks_between(hour_start, hour_start + 3_600_000, cap=0) == 0
    # A whole day of seconds is 86 400 ticks; the default cap stops the count at 10 000.
    assert every_second.ticks_between(hour_start, hour_start + 86_400_000) == 10_000
    with pytest.raises(ValueError, match="-1"):
        every_second.ticks_between(hour_start, hour_start + 1000, cap=-1)


def test_ticks_between_takes_one_or_two_steps_for_none_or_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[object] = []
    original = croniter.get_next

    def spy(self: croniter, *args: object, **kwargs: object) -> object:
        calls.append(args)
        return original(self, *args, **kwargs)

    daily = CronSchedule.parse("0 0 3 * * *")
    monkeypatch.setattr(croniter, "get_next", spy)
    assert daily.ticks_between(ms(2024, 1, 1, 4), ms(2024, 1, 2)) == 0
    assert len(calls) == 1
    calls.clear()
    assert daily.ticks_between(ms(2024, 1, 1, 4), ms(2024, 1, 2, 4)) == 1
    assert len(calls) == 2


# --- purity and value semantics --------------------------------------------------------------


def test_never_reads_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_clock() -> float:
        raise AssertionError("the clock was read")

    schedule = CronSchedule.parse("*/15 * * * * *")
    monkeypatch.setattr(sys.modules["croniter.croniter"], "time", no_clock)
    monkeypatch.setattr(time, "time", no_clock)
    start = ms(2024, 1, 1, 0, 0, 7)
    assert schedule.next_after(start) == ms(2024, 1, 1, 0, 0, 15)
    assert schedule.latest_at_or_before(start) == ms(2024, 1, 1)
    assert schedule.ticks_between(start, start + 60_000) == 4
    assert CronSchedule.parse("0 0 3 * * *").next_after(start) == ms(2024, 1, 1, 3)


def test_same_question_same_answer() -> None:
    schedule = CronSchedule.parse("0 0 3 * * *")
    start = ms(2024, 1, 1)
    first = (schedule.next_after(start), schedule.latest_at_or_before(start))
    schedule.ticks_between(start, start + 30 * 86_400_000)
    assert (schedule.next_after(start), schedule.latest_at_or_before(start)) == first


def test_value_semantics() -> None:
    schedule = CronSchedule.parse("  0  0 3 * *\t* ")
    assert schedule.expr == "  0  0 3 * *\t* "  # kept exactly as written
    assert schedule.next_after(ms(2024, 1, 1)) == ms(2024, 1, 1, 3)
    assert CronSchedule.parse("0 0 3 * * *") == CronSchedule.parse("0 0 3 * * *")
    assert hash(CronSchedule.parse("0 0 3 * * *")) == hash(CronSchedule.parse("0 0 3 * * *"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule.expr = "* * * * * *"  # type: ignore[misc]


@pytest.mark.parametrize(
    "expr",
    [
        "0 0 3 * * *",
        "*/5 * * * *",
        "0,30 * * * * *",
        "10-20/5 * * * * *",
        "0 0 0 * jan-mar/2 *",
        "0 0 0 1 DEC *",
        "0 0 0 * * Sun",
        "0 0 0 * * 0-7",
        "59 59 23 31 12 *",
        "0 0 0 29 2 *",
    ],
)
def test_valid_expressions(expr: str) -> None:
    assert CronSchedule.parse(expr).expr == expr


# --- invalid expressions --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("", "got 0"),
        ("   ", "got 0"),
        ("* * *", "got 3"),
        ("* * * *", "got 4"),
        ("0 0 3 * * * 2024", "got 7"),
        ("@daily", "got 1"),
        ("60 * * * * *", "second value 60 is out of range 0-59"),
        ("* 60 * * * *", "minute value 60"),
        ("* * 24 * * *", "hour value 24"),
        ("* * * 0 * *", "day of month value 0"),
        ("* * * 32 * *", "day of month value 32"),
        ("* * * * 0 *", "month value 0"),
        ("* * * * 13 *", "month value 13"),
        ("* * * * * 8", "weekday value 8"),
        ("0 0 12 1-40 * *", "day of month value 40"),
        ("60 * * * *", "minute value 60"),  # five fields: the first is the minute
        ("a b c d e f", "'a'"),
        ("* * * * foo *", "'foo' is not a valid month"),
        ("* * * * mon *", "'mon' is not a valid month"),
        ("* * * * * jan", "'jan' is not a valid weekday"),
        ("* * * * * mon-jan", "'jan' is not a valid weekday"),
        ("*/0 * * * * *", "step 0"),
        ("1,,2 * * * * *", "cannot read ''"),
        ("1- * * * * *", "cannot read '1-'"),
        ("-1 * * * * *", "cannot read '-1'"),
        ("5/ * * * * *", "cannot read '5/'"),
        ("*/-1 * * * * *", "cannot read '*/-1'"),
        ("*-5 * * * * *", "cannot read '*-5'"),
        ("? * * * * *", "cannot read '?'"),
        ("0 0 0 ? * mon", "cannot read '?'"),
        ("H * * * * *", "cannot read 'H'"),
        ("0 0 0 L * *", "cannot read 'L'"),
        ("0 0 0 15W * *", "cannot read '15W'"),
        ("0 0 0 * * 1#2", "cannot read '1#2'"),
        ("0 0 0 * * L5", "cannot read 'L5'"),
        ("0 0 0 30 2 *", "never fires"),
        ("0 0 0 31 4,6,9,11 *", "never fires"),
        ("0 0 0 30-31 2 *", "never fires"),
        ("1234567890 * * * * *", "cannot read"),
        ("0 0 0 * * 1,,", "cannot read ''"),
        ("0 0 0 * * ８", "cannot read"),  # noqa: RUF001 - fullwidth digit
        ("0 0 0 * * 0-8", "weekday value 8"),
        ("0 0 0 * 12-13 *", "month value 13"),
    ],
)
def test_invalid_expressions(expr: str, reason: str) -> None:
    with pytest.raises(DefinitionError) as info:
        CronSchedule.parse(expr)
    message = str(info.value)
    assert repr(expr) in message
    assert reason in message
    assert isinstance(info.value, ValueError)


def test_non_string_expression() -> None:
    with pytest.raises(DefinitionError, match="None"):
        CronSchedule.parse(None)  # type: ignore[arg-type]


# --- properties -------------------------------------------------------------------------------

Predicate = Callable[[datetime], bool]

# Each expression with a predicate written from its meaning, and the widest range over which
# ticks_between is compared with a count by next_after (kept to about a hundred ticks).
CASES: dict[str, tuple[Predicate, int]] = {
    "0 0 3 * * *": (
        lambda d: (d.hour, d.minute, d.second) == (3, 0, 0),
        40 * 86_400_000,
    ),
    "*/15 * * * * *": (lambda d: d.second % 15 == 0, 1_800_000),
    "*/5 * * * *": (lambda d: d.second == 0 and d.minute % 5 == 0, 6 * 3_600_000),
    "10,20 * * * * *": (lambda d: d.second in (10, 20), 3_600_000),
    "5-10/2 0 */6 * * *": (
        lambda d: d.second in (5, 7, 9) and d.minute == 0 and d.hour % 6 == 0,
        10 * 86_400_000,
    ),
    "0 30 9 * * mon-fri": (
        lambda d: (d.hour, d.minute, d.second) == (9, 30, 0) and d.weekday() < 5,
        120 * 86_400_000,
    ),
    "0 0 0 13 * fri": (
        lambda d: d.time() == datetime.min.time() and (d.day == 13 or d.weekday() == 4),
        400 * 86_400_000,
    ),
    "0 0 0 31 * *": (
        lambda d: d.time() == datetime.min.time() and d.day == 31,
        3 * 365 * 86_400_000,
    ),
    "0 0 12 29 2 *": (
        lambda d: (d.month, d.day, d.hour, d.minute, d.second) == (2, 29, 12, 0, 0),
        40 * 365 * 86_400_000,
    ),
}

# Ticks within this distance of each other are checked second by second against the predicate.
BRUTE_FORCE_SPAN_MS = 3_600_000

# Each example makes up to a few hundred croniter calls; on a loaded machine that can pass
# hypothesis's default 200 ms deadline, which would make these tests flaky, not stricter.
CRON_SETTINGS = settings(deadline=None)

expressions = st.sampled_from(sorted(CASES))
times = st.integers(min_value=ms(2000, 1, 1), max_value=ms(2090, 1, 1))


@CRON_SETTINGS
@given(expr=expressions, t=times)
def test_next_after_is_the_first_tick_after(expr: str, t: int) -> None:
    schedule = CronSchedule.parse(expr)
    predicate, _ = CASES[expr]
    n = schedule.next_after(t)
    assert n > t
    assert n % 1000 == 0
    assert predicate(at(n))
    assert schedule.ticks_between(t, n - 1) == 0
    assert schedule.ticks_between(t, n) == 1
    assert schedule.latest_at_or_before(n) == n
    # The last tick before n, found by croniter's get_prev path, is not after t.
    before = schedule.latest_at_or_before(n - 1)
    assert before is not None
    assert before <= t
    if n - t <= BRUTE_FORCE_SPAN_MS:
        first_second = t // 1000 + 1
        assert not any(predicate(at(second * 1000)) for second in range(first_second, n // 1000))


@CRON_SETTINGS
@given(expr=expressions, t=times)
def test_latest_at_or_before_is_the_last_tick(expr: str, t: int) -> None:
    schedule = CronSchedule.parse(expr)
    predicate, _ = CASES[expr]
    p = schedule.latest_at_or_before(t)
    assert p is not None
    assert p <= t
    assert p % 1000 == 0
    assert predicate(at(p))
    assert schedule.next_after(p) == schedule.next_after(t)
    assert schedule.ticks_between(p, t) == 0


@settings(CRON_SETTINGS, max_examples=60)
@given(expr=expressions, t=times, fraction=st.floats(min_value=0, max_value=1))
def test_ticks_between_counts_like_repeated_next_after(expr: str, t: int, fraction: float) -> None:
    schedule = CronSchedule.parse(expr)
    _, span = CASES[expr]
    upto = t + int(span * fraction)
    count = 0
    tick = schedule.next_after(t)
    while tick <= upto:
        count += 1
        tick = schedule.next_after(tick)
    assert schedule.ticks_between(t, upto) == count
    if count:
        assert schedule.ticks_between(t, upto, cap=count - 1) == count - 1
    assert schedule.ticks_between(t, upto, cap=count + 1) == count


@CRON_SETTINGS
@given(t=times)
def test_five_fields_equal_six_with_second_zero(t: int) -> None:
    five = CronSchedule.parse("*/5 * * * *")
    six = CronSchedule.parse("0 */5 * * * *")
    assert five.next_after(t) == six.next_after(t)
    assert five.latest_at_or_before(t) == six.latest_at_or_before(t)


# --- a reference scheduler for random expressions ------------------------------------------------

# (low, high accepted, high of the cycle) per field, seconds first.
FIELD_BOUNDS = ((0, 59, 59), (0, 59, 59), (0, 23, 23), (1, 31, 31), (1, 12, 12), (0, 7, 6))


@st.composite
def field_texts(draw: st.DrawFn, index: int) -> str:
    low, high, _ = FIELD_BOUNDS[index]
    values = st.integers(min_value=low, max_value=high)
    steps = st.integers(min_value=1, max_value=high - low + 2)
    item = st.one_of(
        st.just("*"),
        steps.map(lambda n: f"*/{n}"),
        values.map(str),
        st.tuples(values, values).map(lambda ab: f"{ab[0]}-{ab[1]}"),
        st.tuples(values, values, steps).map(lambda abn: f"{abn[0]}-{abn[1]}/{abn[2]}"),
        st.tuples(values, steps).map(lambda an: f"{an[0]}/{an[1]}"),
    )
    return ",".join(draw(st.lists(item, min_size=1, max_size=3)))


def reference_values(index: int, text: str) -> set[int]:
    """The values of one field, read straight from the rules."""
    low, _, cycle_high = FIELD_BOUNDS[index]
    size = cycle_high - low + 1
    result: set[int] = set()
    for item in text.split(","):
        body, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            first, last = low, cycle_high
        elif "-" in body:
            first, last = (int(part) for part in body.split("-"))
        else:
            first = int(body)
            last = cycle_high if step_text else first
        if index == 5 and first == 7 and last != 7:
            first = 0  # Sunday written as 7 at the start of a range that goes on
        # Walk forward from first, wrapping around the cycle, until last is passed.
        distance = last - first if last >= first else last - first + size
        for offset in range(0, distance + 1, step):
            result.add(low + (first + offset - low) % size)
    return result


def reference_ticks(fields: list[str], after: datetime) -> Iterator[datetime]:
    """Every tick after ``after`` (whole second), walking the calendar one day at a time."""
    sets = [reference_values(index, text) for index, text in enumerate(fields)]
    seconds, minutes, hours, days_of_month, months, weekdays = sets

    def unrestricted(index: int) -> bool:
        low, _, cycle_high = FIELD_BOUNDS[index]
        return fields[index].startswith("*") and len(sets[index]) == cycle_high - low + 1

    day = after.replace(hour=0, minute=0, second=0)
    while True:
        by_day = day.day in days_of_month
        by_weekday = day.isoweekday() % 7 in weekdays
        if unrestricted(3) or unrestricted(5):
            day_matches = by_day and by_weekday
        else:
            day_matches = by_day or by_weekday
        if day.month in months and day_matches:
            for hour in sorted(hours):
                for minute in sorted(minutes):
                    for second in sorted(seconds):
                        moment = day.replace(hour=hour, minute=minute, second=second)
                        if moment > after:
                            yield moment
        day += timedelta(days=1)


@settings(max_examples=150, deadline=None)
@given(
    fields=st.tuples(*(field_texts(index) for index in range(6))).map(list),
    t=times,
)
@pytest.mark.slow
def test_random_expressions_agree_with_reference(fields: list[str], t: int) -> None:
    expr = " ".join(fields)
    error: DefinitionError | None = None
    try:
        schedule = CronSchedule.parse(expr)
    except DefinitionError as exc:
        error = exc
    if error is not None:
        # The only refusal well-formed random fields can earn: dates that do not exist.
        assert "never fires" in str(error)
        assume(False)
    expected = reference_ticks(fields, at(t - t % 1000))
    tick = t
    for _ in range(3):
        tick = schedule.next_after(tick)
        assert at(tick) == next(expected), expr
    assert schedule.latest_at_or_before(tick) == tick
    assert schedule.latest_at_or_before(tick - 1) == schedule.latest_at_or_before(tick - 1000)
