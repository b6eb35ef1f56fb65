"""Helpers shared by the HTTP API modules: reading JSON bodies and query parameters."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from host.errors import ApiError
from platform_shim.jsonvalue import loads_input
from platform_shim.platform import Platform

__all__ = ["endpoint", "parse_json", "platform_of", "query_int", "read_json", "read_object"]


Endpoint = Callable[[Request], Awaitable[Response]]


def endpoint(handler: Endpoint) -> Endpoint:
    """An API endpoint that reads the whole request body before anything else.

    An answer given before the body is read (a bad ``X-TTL`` or ``X-Metadata`` header, say)
    leaves the rest of the body unread, and the server then drops the connection without a
    ``Connection: close``: a client that reuses it (httpx, Node's fetch) gets a spurious
    "connection reset" on its next request. Reading first keeps every error answer on a
    healthy keep-alive connection; the body is bounded by the host's body limit.
    """

    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            await request.body()  # cached on the request for the handler
        return await handler(request)

    return wrapper


def platform_of(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


async def read_json(request: Request, *, default: Any = None) -> Any:
    """The body as JSON; an empty body is ``default``; malformed JSON is a 400."""
    body = await request.body()
    if not body.strip():
        return default
    return parse_json(body, "body")


def parse_json(data: bytes, what: str) -> Any:
    """JSON from a request (``what`` names where it was): malformed JSON or an integer past
    64 bits (which would be stored as another number) is a 400."""
    try:
        return loads_input(data)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"malformed JSON {what}: {exc}") from None
    except ValueError as exc:
        raise ApiError(400, f"the JSON {what} cannot be stored exactly: {exc}") from None


async def read_object(request: Request, *, default: Any = None) -> dict[str, Any]:
    """The body as a JSON object (or ``default`` when empty)."""
    value = await read_json(request, default=default)
    if not isinstance(value, dict):
        raise ApiError(400, f"the body must be a JSON object, not {type(value).__name__}")
    return value


def query_int(
    request: Request, name: str, default: int | None = None, *, minimum: int = 0
) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"query parameter {name!r} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise ApiError(400, f"query parameter {name!r} must be at least {minimum}, not {value}")
    return value
