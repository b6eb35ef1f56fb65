"""The one JSON codec for values that cross a durable boundary.

orjson would quietly turn datetimes and dataclasses into strings and objects; a value a user
stores must come back as what was stored, so those are refused with a ``TypeError`` naming the
key or step instead. ``NaN`` and the infinities become ``null``, as JavaScript's ``JSON.stringify``
makes them on the platform this mirrors.

Integers are 64-bit (``INT_MIN`` to ``INT_MAX``, orjson's range): a bigger one cannot be stored
(``dumps`` raises ``TypeError``), and JSON text from outside is read with ``loads_input``, which
refuses one with a ``ValueError`` where orjson would silently make it a float.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

__all__ = ["INT_MAX", "INT_MIN", "JSONValue", "dumps", "loads", "loads_input", "tight"]

JSONValue = Any
"""A value made of dict (str keys), list, str, int, float, bool and None."""

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


MAX_DEPTH = 250
"""How deeply a stored value may nest. orjson writes at most 254 levels; the margin lets every
answer wrap a stored value in a few levels of its own (a run inside a list of runs)."""

_HEADROOM = 254 - MAX_DEPTH


def dumps(value: Any, what: str) -> bytes:
    """Serialize ``value``; ``what`` names it in the ``TypeError`` raised for a non-JSON value
    (or one nested deeper than ``MAX_DEPTH``).

    The result is sized to its content (see ``tight``): callers keep these bytes in memory."""
    try:
        # Serialized inside [[[[...]]]] so orjson's own depth limit enforces the margin, without
        # walking the value; the wrapper's brackets are sliced off again.
        wrapped = orjson.dumps([[[[value]]]], option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        reason = str(exc)
        if "ecursion" in reason:
            reason = f"nested more than {MAX_DEPTH} levels deep"
        raise TypeError(f"{what} is not a JSON value: {reason}") from None
    return wrapped[_HEADROOM:-_HEADROOM]


def tight(data: bytes) -> bytes:
    """A copy of ``data`` that owns no more memory than its length.

    orjson's ``bytes`` keep the buffer they were written into: a 2-byte value holds 4 KiB. That
    is harmless for a line about to be written, and ruinous for a million KV values or a hundred
    thousand parked runs held in memory, so whatever is kept goes through here."""
    return bytes(memoryview(data))


def loads(data: bytes | str) -> Any:
    """Parse JSON text."""
    return orjson.loads(data)


INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
"""The integers a value may hold: what orjson writes (signed and unsigned 64-bit)."""

# An integer out of range has at least 19 digits (INT_MIN - 1 has 19), and most JSON has no run
# of 19 digits at all: only then is the text read a second time to look at its integers.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


def _checked_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:  # past Python's own limit on digits
        value = INT_MAX + 1
    if not INT_MIN <= value <= INT_MAX:
        shown = text if len(text) <= 40 else f"{text[:20]}...({len(text)} digits)"
        raise ValueError(
            f"the integer {shown} is outside the 64-bit range a stored value can hold"
            f" ({INT_MIN} to {INT_MAX}); send it as a string"
        )
    return value


def loads_input(data: bytes | str) -> Any:
    """Parse JSON text that came from outside (an HTTP body or header).

    As ``loads``, but an integer outside ``INT_MIN``..``INT_MAX`` is a ``ValueError`` naming it:
    orjson reads one as a float, which would store a different number than the one sent.
    Malformed JSON raises ``orjson.JSONDecodeError`` (a ``ValueError`` too)."""
    value = orjson.loads(data)
    raw = data.encode() if isinstance(data, str) else data
    if _LONG_DIGITS.search(raw):
        try:
            json.loads(raw, parse_int=_checked_int)
        except RecursionError:
            raise ValueError("the JSON is nested too deeply") from None
    return value
