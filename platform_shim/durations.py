"""Turn the duration forms users write into whole milliseconds.

Guarantee: :func:`parse_duration_ms` returns an ``int`` of milliseconds from 0 to
``MAX_DURATION_MS`` or raises ``ValueError``; nothing in between. The message names what the duration was for and the exact
value (its ``repr``), so a bad value in a workflow definition is found from the log line alone.
Decimal strings are converted exactly (no float round-off), and every rounding is to the nearest
millisecond with halves rounded up.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta

__all__ = ["MAX_DURATION_MS", "parse_duration_ms"]

MAX_DURATION_MS = 10**17
"""The longest duration (about 3.2 million years): a wake time or due time of now plus this
still fits the 64-bit integers the files hold, and is beyond any ``timedelta``."""

# Milliseconds per unit. Months and years are deliberately absent: their length varies, and a
# duration has to mean the same number of milliseconds every time it is used.
_UNIT_MS: dict[str, int] = {
    "ms": 1,
    "s": 1_000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
}

# [0-9] rather than \d: \d also matches non-ASCII digits (Arabic-Indic, fullwidth, ...), which
# int() would then accept.
# Lower-case units only, so "5M" cannot be read as minutes by one person and months by another.
_DURATION_RE = re.compile(r"(?P<whole>[0-9]+)(?:\.(?P<frac>[0-9]+))?(?P<unit>ms|s|m|h|d)")
_DIGITS_RE = re.compile(r"[0-9]+")

_HINT = 'use ms, or a string like "500ms", "30s", "5m", "1h", "7d"'

_US_PER_DAY = 86_400_000_000


def _invalid(what: str, value: object, reason: str = "") -> ValueError:
    detail = f"{reason}; {_HINT}" if reason else _HINT
    return ValueError(f"invalid {what}: {value!r} ({detail})")


def _round_half_up(numerator: int, denominator: int) -> int:
    """Nearest integer to ``numerator / denominator`` (both non-negative), halves up."""
    return (2 * numerator + denominator) // (2 * denominator)


def _parse_string(value: str, what: str) -> int:
    text = value.strip()
    if _DIGITS_RE.fullmatch(text):
        # A bare integer string means milliseconds, like a bare int does.
        return _to_int(text, what, value)
    match = _DURATION_RE.fullmatch(text)
    if match is None:
        raise _invalid(what, value)
    factor = _UNIT_MS[match["unit"]]
    frac = match["frac"] or ""
    # Scale to an integer before dividing so that "1.005s" is exactly 1005 ms, not 1004.9999.
    scaled = _to_int(match["whole"] + frac, what, value)
    return _round_half_up(scaled * factor, 10 ** len(frac))


def _to_int(digits: str, what: str, value: str) -> int:
    try:
        return int(digits)
    except ValueError:
        # Only reachable past Python's limit on int() digits; still name the value.
        raise _invalid(what, value, "too many digits") from None


def _parse_float(value: float, what: str) -> int:
    if not math.isfinite(value):
        raise _invalid(what, value, "not a finite number")
    if value < 0:
        raise _invalid(what, value, "a duration cannot be negative")
    whole = math.floor(value)
    # value - floor(value) is exact for a float, so this rounds correctly even near 2**53,
    # where floor(value + 0.5) would round the addition itself.
    return int(whole) + (1 if value - whole >= 0.5 else 0)


def _parse_timedelta(value: timedelta, what: str) -> int:
    if value < timedelta(0):
        raise _invalid(what, value, "a duration cannot be negative")
    micros = (value.days * _US_PER_DAY) + value.seconds * 1_000_000 + value.microseconds
    return _round_half_up(micros, 1_000)


def parse_duration_ms(value: object, what: str = "duration") -> int:
    """Return ``value`` as a non-negative whole number of milliseconds.

    Accepted forms:

    * an ``int`` of milliseconds (``bool`` is refused although it is an ``int``);
    * a finite ``float`` of milliseconds, rounded to the nearest millisecond (halves up);
    * a ``datetime.timedelta``, rounded to the nearest millisecond (halves up);
    * a string: a number of digits with an optional ``.digits`` fraction immediately followed by
      one unit of ``ms``, ``s``, ``m``, ``h`` or ``d`` (``"500ms"``, ``"30s"``, ``"1.5h"``), or
      a bare digit string meaning milliseconds (``"1500"``); surrounding whitespace is ignored.

    Every form must be non-negative and at most ``MAX_DURATION_MS``. Anything else (negative or non-finite numbers, unknown or
    upper-case units, compound strings such as ``"1h30m"``, ``None``, other types) raises
    ``ValueError`` whose message contains ``what`` and ``repr(value)``, for example
    ``invalid duration for step 'grace-period': '5w' (use ms, or a string like ...)``.
    """
    ms = _parse(value, what)
    if ms > MAX_DURATION_MS:
        raise _invalid(what, value, f"longer than the {MAX_DURATION_MS} ms a duration may last")
    return ms


def _parse(value: object, what: str) -> int:
    # bool first: it is an int subclass, and "True" as a duration is always a mistake.
    if isinstance(value, bool):
        raise _invalid(what, value)
    if isinstance(value, int):
        if value < 0:
            raise _invalid(what, value, "a duration cannot be negative")
        return int(value)
    if isinstance(value, float):
        return _parse_float(value, what)
    if isinstance(value, timedelta):
        return _parse_timedelta(value, what)
    if isinstance(value, str):
        return _parse_string(value, what)
    raise _invalid(what, value)
