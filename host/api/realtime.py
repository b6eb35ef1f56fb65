"""HTTP API for realtime channels, as the platform's JS client (``getPlatform().realtime``) calls it.

``POST /api/realtime/publish`` ``{channel, data, userId}``, ``GET /api/realtime/channels``,
``POST /api/realtime/presence/{ch}/join`` ``{userId, metadata}`` -> ``{isNew}``,
``POST .../leave`` ``{userId}`` -> ``{wasPresent}``, ``GET /api/realtime/presence/{ch}`` ->
``{members}``, ``GET /api/realtime/history/{ch}?limit=&after=`` -> ``{messages}``. Channel names
may contain ``/`` (the routes take the rest of the path).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from host.api.common import endpoint, platform_of, query_int, read_object
from host.errors import ApiError, json_response
from platform_shim.services.realtime import check_channel

__all__ = ["routes"]


def _channel(request: Request) -> str:
    try:
        return check_channel(request.path_params["channel"])
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def _user(body: dict[str, Any], *, required: bool) -> str | None:
    user = body.get("userId")
    if user is None and not required:
        return None
    if not isinstance(user, str) or not user:
        raise ApiError(400, f"'userId' must be a non-empty string, not {user!r}")
    return user


async def publish(request: Request) -> Response:
    body = await read_object(request)
    channel = body.get("channel")
    if not isinstance(channel, str):
        raise ApiError(400, f"'channel' is required and must be a string, not {channel!r}")
    await platform_of(request).realtime.publish(
        channel, body.get("data"), user_id=_user(body, required=False)
    )
    return json_response({"ok": True})


async def channels(request: Request) -> Response:
    return json_response({"channels": await platform_of(request).realtime.channels()})


async def presence_join(request: Request) -> Response:
    channel = _channel(request)
    body = await read_object(request)
    user = _user(body, required=True)
    assert user is not None
    presence = platform_of(request).realtime.presence
    is_new = await presence.join(channel, user, body.get("metadata"))
    return json_response({"isNew": is_new})


async def presence_leave(request: Request) -> Response:
    channel = _channel(request)
    body = await read_object(request)
    user = _user(body, required=True)
    assert user is not None
    was_present = await platform_of(request).realtime.presence.leave(channel, user)
    return json_response({"wasPresent": was_present})


async def presence_members(request: Request) -> Response:
    members = await platform_of(request).realtime.presence.members(_channel(request))
    return json_response({"members": members})


async def history(request: Request) -> Response:
    channel = _channel(request)
    limit = query_int(request, "limit")
    after = query_int(request, "after")
    messages = await platform_of(request).realtime.history(channel, limit=limit, after=after)
    return json_response({"messages": messages})


routes: list[BaseRoute] = [
    Route("/api/realtime/publish", endpoint(publish), methods=["POST"]),
    Route("/api/realtime/channels", endpoint(channels), methods=["GET"]),
    Route("/api/realtime/presence/{channel:path}/join", endpoint(presence_join), methods=["POST"]),
    Route(
        "/api/realtime/presence/{channel:path}/leave", endpoint(presence_leave), methods=["POST"]
    ),
    Route("/api/realtime/presence/{channel:path}", endpoint(presence_members), methods=["GET"]),
    Route("/api/realtime/history/{channel:path}", endpoint(history), methods=["GET"]),
]
