"""``GET /_platform/api/people``: the Data page's users and realtime channels section.

Read-only and bounded: at most ``USERS_MAX`` users (public fields only: the password hash,
sessions and tokens never leave ``platform.auth``) and ``CHANNELS_MAX`` channels, each with
its present members, how many messages it keeps and how many WebSockets subscribe to it.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from host.errors import json_response
from platform_shim.platform import Platform

__all__ = ["routes"]

USERS_MAX = 500
CHANNELS_MAX = 500


async def people(request: Request) -> Response:
    platform: Platform = request.app.state.platform
    listing = await platform.auth.list_users(limit=USERS_MAX)
    hub = request.app.state.host.realtime_hub
    channels = []
    for name in (await platform.realtime.channels())[:CHANNELS_MAX]:
        channels.append(
            {
                "name": name,
                "members": await platform.realtime.presence.members(name),
                "kept": await platform.realtime.history_length(name),
                "subscribers": len(hub.subscribers.get(name, ())) if hub is not None else 0,
            }
        )
    return json_response(
        {"users": listing["users"], "usersTotal": listing["total"], "channels": channels}
    )


routes: list[BaseRoute] = [Route("/_platform/api/people", people, methods=["GET"])]
