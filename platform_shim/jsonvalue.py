"""The one JSON codec for values that cross a durable boundary.

orjson would quietly turn datetimes and dataclasses into strings and objects; a value a user
stores must come back as what was stored, so those are refused with a ``TypeError`` naming the
key or step instead. ``NaN`` and the infinities become ``null``, as JavaScript's ``JSON.stringify``
makes them on the platform this mirrors.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["JSONValue", "dumps", "loads"]

JSONValue = Any
"""A value made of dict (str keys), list, str, int, float, bool and None."""

_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def dumps(value: Any, what: str) -> bytes:
    """Serialize ``value``; ``what`` names it in the ``TypeError`` raised for a non-JSON value."""
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise TypeError(f"{what} is not a JSON value: {exc}") from None


def loads(data: bytes | str) -> Any:
    """Parse JSON text."""
    return orjson.loads(data)
