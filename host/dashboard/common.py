"""Helpers the dashboard's JSON endpoints share: bounded query parameters and bounded values.

Every listing the dashboard serves is bounded (a ``limit`` with a ceiling) and every value it
shows is bounded too: a 4 MiB step output or KV value is sent as a short preview plus its size,
so one page never carries more than a few megabytes however large the data folder is.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request

from host.errors import ApiError

__all__ = ["PREVIEW_CHARS", "VALUE_LIMIT", "bounded", "bounded_raw", "query_limit", "query_text"]

VALUE_LIMIT = 64 * 1024
"""Values whose JSON is larger than this (bytes) are sent as a preview."""

PREVIEW_CHARS = 4096
"""How much of a large value's JSON text a preview keeps."""


def query_limit(request: Request, default: int, maximum: int) -> int:
    """``?limit=``: a positive integer up to ``maximum`` (``default`` when absent)."""
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"query parameter 'limit' must be an integer, not {raw!r}") from None
    if not 1 <= value <= maximum:
        raise ApiError(400, f"query parameter 'limit' must be between 1 and {maximum}, not {value}")
    return value


def query_text(request: Request, name: str) -> str | None:
    """A query parameter, ``None`` when absent or empty."""
    value = request.query_params.get(name)
    return value or None


def bounded_raw(raw: bytes, limit: int = VALUE_LIMIT) -> tuple[Any, int | None]:
    """A JSON value given as bytes: ``(value, None)``, or ``(preview text, size)`` when large."""
    if len(raw) <= limit:
        return orjson.loads(raw), None
    return raw[:PREVIEW_CHARS].decode("utf-8", errors="replace"), len(raw)


def bounded(value: Any, limit: int = VALUE_LIMIT) -> tuple[Any, int | None]:
    """A JSON value: ``(value, None)``, or ``(preview text, size)`` when its JSON is large."""
    if value is None or isinstance(value, bool | int | float):
        return value, None
    raw = orjson.dumps(value)
    if len(raw) <= limit:
        return value, None
    return raw[:PREVIEW_CHARS].decode("utf-8", errors="replace"), len(raw)
