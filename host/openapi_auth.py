"""The auth routes (``host/api/auth.py``) in ``/openapi.json``: merged by ``host/openapi.py``."""

from __future__ import annotations

from typing import Any

__all__ = ["AUTH_PATHS", "AUTH_RESPONSES", "AUTH_SCHEMAS"]

_STR = {"type": "string"}
_NULLABLE_STR = {"type": ["string", "null"]}
_STATUS = {"enum": ["active", "suspended", "deactivated"]}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _object(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


AUTH_SCHEMAS: dict[str, Any] = {
    "AuthUser": _object(
        ["id", "email", "email_verified", "status", "provider", "groups"],
        id={"type": "string", "pattern": "^usr_"},
        email=_STR,
        email_verified={"type": "boolean"},
        status=_STATUS,
        provider=_STR,
        groups={"type": "array", "items": _STR},
        external_id=_NULLABLE_STR,
        profile={"type": ["object", "null"]},
        created_at={"type": ["integer", "null"], "description": "epoch milliseconds"},
        updated_at={"type": ["integer", "null"], "description": "epoch milliseconds"},
        last_login_at={"type": ["integer", "null"], "description": "epoch milliseconds"},
    ),
    "AuthSession": _object(
        ["access_token", "refresh_token", "expires_in", "user"],
        access_token={"type": "string", "description": "HS256 JWT"},
        refresh_token={"type": "string", "description": "opaque, single use"},
        expires_in={"type": "integer", "description": "seconds"},
        session_id=_STR,
        user=_ref("AuthUser"),
    ),
}

_USER_ID = {"type": "string", "minLength": 1}
_PASSWORD = {"type": "string", "minLength": 8, "maxLength": 1024}
_TOKEN = _object(["token"], token=_STR)
_OK = _ref("Ok")

# op: (summary, request body schema, answer schema, error statuses besides 400/404/503)
_OPS: dict[str, tuple[str, dict[str, Any], dict[str, Any], tuple[str, ...]]] = {
    "register": (
        "Create a user (emits auth.user.registered)",
        _object(
            ["email", "password"],
            email=_STR,
            password=_PASSWORD,
            profile={"type": "object"},
            external_id=_STR,
        ),
        _ref("AuthUser"),
        ("409",),
    ),
    "login": (
        "A session for an email and password (per-email failure limit: 429)",
        _object(["email", "password"], email=_STR, password=_STR),
        _ref("AuthSession"),
        ("401", "403", "429"),
    ),
    "validate": ("The user of an access token", _TOKEN, _ref("AuthUser"), ("401",)),
    "refresh": ("Spend a refresh token for a new session", _TOKEN, _ref("AuthSession"), ("401",)),
    "logout": ("End a session", _object(["session_id"], session_id=_STR), _OK, ()),
    "get-user": (
        "A user, or null",
        _object(["user_id"], user_id=_USER_ID),
        {"anyOf": [_ref("AuthUser"), {"type": "null"}]},
        (),
    ),
    "list-users": (
        "Users, oldest first, a page at a time",
        {
            "type": "object",
            "properties": {
                "limit": {"type": "integer", "minimum": 1},
                "offset": {"type": "integer", "minimum": 0},
                "status": _STATUS,
                "email_contains": _STR,
                "group_id": _STR,
            },
        },
        _object(
            ["users", "total", "limit", "offset"],
            users={"type": "array", "items": _ref("AuthUser")},
            total={"type": "integer"},
            limit={"type": "integer"},
            offset={"type": "integer"},
        ),
        (),
    ),
    "update-user": (
        "Change email, status or profile (emits auth.user.updated)",
        _object(
            ["user_id"], user_id=_USER_ID, email=_STR, status=_STATUS, profile={"type": "object"}
        ),
        _ref("AuthUser"),
        ("409",),
    ),
    "delete-user": (
        "Delete a user and their sessions",
        _object(["user_id"], user_id=_USER_ID),
        _OK,
        (),
    ),
    "send-verification": (
        "A single-use email verification token",
        _object(["user_id"], user_id=_USER_ID),
        _TOKEN,
        (),
    ),
    "verify-email": ("Spend a verification token", _TOKEN, _OK, ()),
    "send-password-reset": (
        "A single-use reset token (any email gets one: no enumeration)",
        _object(["email"], email=_STR),
        _TOKEN,
        (),
    ),
    "reset-password": (
        "Spend a reset token for a new password (ends every session)",
        _object(["token", "new_password"], token=_STR, new_password=_PASSWORD),
        _OK,
        (),
    ),
    "change-password": (
        "Change a password knowing the old one (ends every session)",
        _object(
            ["user_id", "old_password", "new_password"],
            user_id=_USER_ID,
            old_password=_STR,
            new_password=_PASSWORD,
        ),
        _OK,
        ("401",),
    ),
}


def _operation(op: str) -> dict[str, Any]:
    summary, body, answer, errors = _OPS[op]
    responses: dict[str, Any] = {
        "200": {"description": "done", "content": {"application/json": {"schema": answer}}}
    }
    # 401/403/413/415 from the middleware are added by host/openapi.py.
    for code in ("400", "404", "503", *errors):
        responses[code] = {"$ref": f"#/components/responses/{code}"}
    return {
        "post": {
            "operationId": "auth" + "".join(part.title() for part in op.split("-")),
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": responses,
        }
    }


AUTH_PATHS: dict[str, Any] = {f"/api/platform/auth/{op}": _operation(op) for op in _OPS}

_ERROR = {"application/json": {"schema": _ref("Error")}}

AUTH_RESPONSES: dict[str, Any] = {
    "403": {"description": "the account is suspended or deactivated", "content": _ERROR},
    "429": {
        "description": "too many failed logins for this email; try again later",
        "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}},
        "content": _ERROR,
    },
}
