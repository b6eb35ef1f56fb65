"""``dev``-only endpoints: skip time ahead (``POST /api/dev/clock``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from host.api.common import read_object
from host.devclock import SkippableClock
from host.errors import ApiError, json_response
from platform_shim.durations import parse_duration_ms

__all__ = ["routes"]


async def clock(request: Request) -> Response:
    """``{"advance": "24h"}`` moves the dev host's clock forward; ``{}`` just reads it."""
    current = request.app.state.clock
    if not isinstance(current, SkippableClock):
        raise ApiError(404, "the clock can only be moved under 'python -m host dev'")
    body = await read_object(request, default={})
    unknown = set(body) - {"advance"}
    if unknown:
        raise ApiError(400, f"unknown field(s) {sorted(unknown)}; send {{'advance': '24h'}}")
    if "advance" in body:
        try:
            step = parse_duration_ms(body["advance"], "advance")
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        current.advance(step)
    return json_response({"now": current.now_ms(), "offsetMs": current.offset_ms})


routes: list[BaseRoute] = [Route("/api/dev/clock", clock, methods=["GET", "POST"])]
