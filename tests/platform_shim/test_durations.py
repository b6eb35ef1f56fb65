"""Tests of platform_shim.durations: every accepted form, every refused form, exact rounding."""

from __future__ import annotations

import math
from datetime import timedelta
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from platform_shim.durations import MAX_DURATION_MS, parse_duration_ms

FACTOR = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (1, 1),
        (1500, 1500),
        (10**15, 10**15),
        (0.0, 0),
        (1.0, 1),
        (1.4, 1),
        (1.5, 2),  # halves round up, not to even
        (2.5, 3),
        (0.49999, 0),
        (1234.5678, 1235),
        (float(2**53), 2**53),
        (2.0**53 + 2, 2**53 + 2),
        (4503599627370497.0, 4503599627370497),  # 2**52 + 1: value + 0.5 would round to even
    ],
)
def test_numbers_are_milliseconds(value: int | float, expected: int) -> None:
    result = parse_duration_ms(value)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(0), 0),
        (timedelta(milliseconds=1), 1),
        (timedelta(seconds=30), 30_000),
        (timedelta(days=7), 7 * 86_400_000),
        (timedelta(microseconds=499), 0),
        (timedelta(microseconds=500), 1),  # halves round up
        (timedelta(seconds=1, microseconds=1499), 1001),
        (timedelta(days=999_999_999), 999_999_999 * 86_400_000),
        (timedelta.max, 999_999_999 * 86_400_000 + 86_400_000),
    ],
)
def test_timedelta(value: timedelta, expected: int) -> None:
    assert parse_duration_ms(value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500ms", 500),
        ("30s", 30_000),
        ("5m", 300_000),
        ("1h", 3_600_000),
        ("7d", 604_800_000),
        ("0ms", 0),
        ("0s", 0),
        ("0", 0),
        ("1500", 1500),
        ("007s", 7000),
        ("1.5h", 5_400_000),
        ("0.5s", 500),
        ("1.005s", 1005),  # exact: float arithmetic would give 1004.999...
        ("1.0005s", 1001),  # half a ms rounds up
        ("1.0004s", 1000),
        ("2.5ms", 3),
        ("0.1m", 6000),
        ("0.25d", 21_600_000),
        ("  30s  ", 30_000),
        ("\t5m\n", 300_000),
        (" 1500 ", 1500),
    ],
)
def test_strings(text: str, expected: int) -> None:
    assert parse_duration_ms(text) == expected


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        -1,
        -0.5,
        -1e-9,
        math.nan,
        math.inf,
        -math.inf,
        timedelta(microseconds=-1),
        timedelta(days=-1),
        "",
        "   ",
        "5w",
        "1y",
        "5mo",
        "1h30m",
        "1h 30m",
        "5 s",
        "-5s",
        "+5s",
        "-1",
        "5S",
        "5M",
        "1H",
        "5MS",
        "1.5",  # a bare number must be whole milliseconds
        ".5s",
        "5.s",
        "1e3ms",
        "1_000ms",
        "s",
        "ms",
        "nan",
        "inf",
        "1,5s",
        "٥s",  # noqa: RUF001 - a non-ASCII digit that int() would accept
        "５s",  # noqa: RUF001 - fullwidth digit
        None,
        [],
        [5],
        {"ms": 5},
        b"5s",
        object,
    ],
)
def test_refused(value: object) -> None:
    with pytest.raises(ValueError, match="invalid duration") as info:
        parse_duration_ms(value)
    assert repr(value) in str(info.value)


def test_message_names_what_and_value() -> None:
    with pytest.raises(ValueError, match="use ms") as info:
        parse_duration_ms("5w", "duration for step 'grace-period'")
    assert str(info.value) == (
        "invalid duration for step 'grace-period': '5w' "
        '(use ms, or a string like "500ms", "30s", "5m", "1h", "7d")'
    )


def test_negative_message_says_why() -> None:
    with pytest.raises(ValueError, match="negative") as info:
        parse_duration_ms(-5, "delay for queue 'jobs'")
    assert "delay for queue 'jobs'" in str(info.value)
    assert "-5" in str(info.value)


def test_nan_message_says_why() -> None:
    with pytest.raises(ValueError, match="finite"):
        parse_duration_ms(math.nan)


def test_absurdly_long_digit_string_is_a_clean_error() -> None:
    # Past Python's int() digit limit the error must still be ours, naming the value.
    with pytest.raises(ValueError, match="invalid timeout"):
        parse_duration_ms("9" * 5000 + "s", "timeout")


@given(n=st.integers(min_value=0, max_value=10**30), unit=st.sampled_from(sorted(FACTOR)))
def test_integer_with_unit(n: int, unit: str) -> None:
    if n * FACTOR[unit] > MAX_DURATION_MS:
        with pytest.raises(ValueError, match="longer than"):
            parse_duration_ms(f"{n}{unit}")
    else:
        assert parse_duration_ms(f"{n}{unit}") == n * FACTOR[unit]


@given(n=st.integers(min_value=0, max_value=MAX_DURATION_MS))
def test_bare_digits_and_int_agree(n: int) -> None:
    assert parse_duration_ms(str(n)) == parse_duration_ms(n) == n


@pytest.mark.parametrize(
    "value",
    [
        MAX_DURATION_MS + 1,
        10**30,
        1e300,
        float(MAX_DURATION_MS) * 2,
        "99999999999999999999d",
        "1e308",
    ],
)
def test_a_duration_past_the_limit_is_a_value_error(value: object) -> None:
    # Before the limit these were accepted, and a wake or due time of now plus them no longer
    # fit the 64-bit integers written to the files: a TypeError naming nothing, at write time.
    with pytest.raises(ValueError, match="queue 'q'"):
        parse_duration_ms(value, "delay for queue 'q'")


@given(
    whole=st.integers(min_value=0, max_value=10**9),
    frac=st.text(alphabet="0123456789", min_size=1, max_size=12),
    unit=st.sampled_from(sorted(FACTOR)),
)
def test_decimal_with_unit_is_exact(whole: int, frac: str, unit: str) -> None:
    exact = (Fraction(whole) + Fraction(int(frac), 10 ** len(frac))) * FACTOR[unit]
    # Reference rounding: nearest integer, halves up.
    expected = math.floor(exact + Fraction(1, 2))
    assert parse_duration_ms(f"{whole}.{frac}{unit}") == expected


@given(st.floats(min_value=0, max_value=MAX_DURATION_MS, allow_nan=False, allow_infinity=False))
def test_float_rounds_to_nearest(value: float) -> None:
    result = parse_duration_ms(value)
    assert abs(Fraction(result) - Fraction(value)) <= Fraction(1, 2)
    if Fraction(value) - math.floor(value) == Fraction(1, 2):
        assert result == math.floor(value) + 1


@given(st.timedeltas(min_value=timedelta(0)))
def test_timedelta_rounds_to_nearest(value: timedelta) -> None:
    micros = (value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds
    result = parse_duration_ms(value)
    assert abs(result * 1000 - micros) <= 500
    assert result == micros // 1000 + (1 if micros % 1000 >= 500 else 0)
