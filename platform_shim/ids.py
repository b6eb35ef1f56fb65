"""Identifiers: time-ordered, unique, URL-safe.

26 characters of Crockford base32 (48 bits of milliseconds, then 80 random bits), so ids sort
by creation time in listings and files, and never need escaping in a URL or a file name.
"""

from __future__ import annotations

import os
import time

__all__ = ["new_id"]

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


def new_id(now_ms: int | None = None) -> str:
    """A new unique id; ``now_ms`` (default: the wall clock) sets its time prefix."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    value = ((ms & ((1 << 48) - 1)) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))
