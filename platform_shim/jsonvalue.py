"""The one JSON codec for values that cross a durable boundary.

orjson would quietly turn datetimes and dataclasses into strings and objects; a value a user
stores must come back as what was stored, so those are refused with a ``TypeError`` naming the
key or step instead. ``NaN`` and the infinities become ``null``, as JavaScript's ``JSON.stringify``
makes them on the platform this mirrors.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["JSONValue", "dumps", "loads", "tight"]

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
