"""The realtime routes (``host/api/realtime.py``) in ``/openapi.json``: merged by ``host/openapi.py``."""

from __future__ import annotations

from typing import Any

__all__ = ["REALTIME_PATHS", "REALTIME_SCHEMAS"]


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _answers(ok: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"200": ok}
    for code in ("400", "404", "503"):  # the middleware's refusals: added by host/openapi.py
        out[code] = {"$ref": f"#/components/responses/{code}"}
    return out


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _object(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


_CHANNEL = {
    "name": "channel",
    "in": "path",
    "required": True,
    "description": "channel name (printable, at most 256 characters; may contain '/')",
    "schema": {"type": "string", "minLength": 1},
}
_USER = {"type": "string", "minLength": 1, "maxLength": 256}
_COUNT = {"type": "integer", "minimum": 0}

REALTIME_SCHEMAS: dict[str, Any] = {
    "ChannelMessage": _object(
        ["seq", "channel", "ts"],
        seq={"type": "integer", "minimum": 1, "description": "increasing per channel"},
        channel={"type": "string"},
        data={},
        uid={"type": ["string", "null"], "description": "the publisher's user id"},
        ts={"type": "integer", "description": "epoch milliseconds"},
    ),
    "PresenceMember": _object(
        ["userId"],
        userId={"type": "string"},
        metadata={},
        lastSeen={"type": "integer", "description": "epoch milliseconds"},
    ),
}

REALTIME_PATHS: dict[str, Any] = {
    "/api/realtime/publish": {
        "post": {
            "operationId": "realtimePublish",
            "summary": "Publish to a channel (kept in its history if the project opted it in);"
            " on `workflows:signals`, `data` `{type, payload}` sends a workflow event",
            "requestBody": _body(
                _object(
                    ["channel"], channel={"type": "string", "minLength": 1}, data={}, userId=_USER
                )
            ),
            "responses": _answers(_json(_ref("Ok"), "published")),
        }
    },
    "/api/realtime/channels": {
        "get": {
            "operationId": "realtimeChannels",
            "summary": "Active channels: with a WebSocket subscriber, a present member or history",
            "responses": _answers(
                _json(
                    _object(["channels"], channels={"type": "array", "items": {"type": "string"}}),
                    "channel names, sorted",
                )
            ),
        }
    },
    "/api/realtime/presence/{channel}/join": {
        "post": {
            "operationId": "realtimePresenceJoin",
            "summary": "Mark a user present on a channel",
            "parameters": [_CHANNEL],
            "requestBody": _body(_object(["userId"], userId=_USER, metadata={})),
            "responses": _answers(
                _json(_object(["isNew"], isNew={"type": "boolean"}), "whether it is a new member")
            ),
        }
    },
    "/api/realtime/presence/{channel}/leave": {
        "post": {
            "operationId": "realtimePresenceLeave",
            "summary": "Remove a user from a channel's presence",
            "parameters": [_CHANNEL],
            "requestBody": _body(_object(["userId"], userId=_USER)),
            "responses": _answers(
                _json(
                    _object(["wasPresent"], wasPresent={"type": "boolean"}),
                    "whether the user was present",
                )
            ),
        }
    },
    "/api/realtime/presence/{channel}": {
        "get": {
            "operationId": "realtimePresenceMembers",
            "summary": "Who is present on a channel, in join order",
            "parameters": [_CHANNEL],
            "responses": _answers(
                _json(
                    _object(
                        ["members"], members={"type": "array", "items": _ref("PresenceMember")}
                    ),
                    "members",
                )
            ),
        }
    },
    "/api/realtime/history/{channel}": {
        "get": {
            "operationId": "realtimeHistory",
            "summary": "A channel's kept messages, oldest first (empty unless the project keeps"
            " its history); at most 500 a call",
            "parameters": [
                _CHANNEL,
                {"name": "limit", "in": "query", "required": False, "schema": _COUNT},
                {
                    "name": "after",
                    "in": "query",
                    "required": False,
                    "description": "only messages with a greater seq",
                    "schema": _COUNT,
                },
            ],
            "responses": _answers(
                _json(
                    _object(
                        ["messages"], messages={"type": "array", "items": _ref("ChannelMessage")}
                    ),
                    "messages",
                )
            ),
        }
    },
}
