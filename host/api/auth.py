"""HTTP API for ``platform.auth``: ``POST /api/platform/auth/<op>``, as the platform's JS client
(``getPlatform().auth``) calls it, with its snake_case bodies.

Every op answers JSON: the ``AuthUser``, the session ``{access_token, refresh_token,
expires_in, session_id, user}``, ``{token}``, ``{users, total, limit, offset}``, or ``{"ok":
true}`` for the ops the client treats as void. A refusal is ``{"error", "detail"}`` with the
service's status (400 bad input, 401 bad credentials or token, 403 account not active, 404
unknown user, 409 email taken, 429 too many failed logins, with ``Retry-After``). Request
bodies are never logged, and no error text repeats a password.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from host.api.common import endpoint, platform_of, read_object
from host.errors import error_response, json_response
from platform_shim.services.auth import AuthError, AuthService, RateLimited

__all__ = ["OPS", "routes"]

Op = Callable[[AuthService, dict[str, Any]], Awaitable[Any]]
_OK = {"ok": True}


def _field(body: dict[str, Any], name: str) -> Any:
    """A body field, as sent (None when absent): the service checks every value's type."""
    return body.get(name)


async def _register(auth: AuthService, b: dict[str, Any]) -> Any:
    return await auth.register(
        _field(b, "email"),
        _field(b, "password"),
        profile=_field(b, "profile"),
        external_id=_field(b, "external_id"),
    )


async def _login(auth: AuthService, b: dict[str, Any]) -> Any:
    return await auth.login(_field(b, "email"), _field(b, "password"))


async def _validate(auth: AuthService, b: dict[str, Any]) -> Any:
    return await auth.validate(_field(b, "token"))


async def _refresh(auth: AuthService, b: dict[str, Any]) -> Any:
    return await auth.refresh(_field(b, "token"))


async def _logout(auth: AuthService, b: dict[str, Any]) -> Any:
    await auth.logout(_field(b, "session_id"))
    return _OK


async def _get_user(auth: AuthService, b: dict[str, Any]) -> Any:
    return await auth.get_user(_field(b, "user_id"))


async def _list_users(auth: AuthService, b: dict[str, Any]) -> Any:
    return await auth.list_users(
        limit=b.get("limit", 50),
        offset=b.get("offset", 0),
        status=_field(b, "status"),
        email_contains=_field(b, "email_contains"),
        group_id=_field(b, "group_id"),
    )


async def _update_user(auth: AuthService, b: dict[str, Any]) -> Any:
    return await auth.update_user(
        _field(b, "user_id"),
        email=_field(b, "email"),
        status=_field(b, "status"),
        profile=_field(b, "profile"),
    )


async def _delete_user(auth: AuthService, b: dict[str, Any]) -> Any:
    await auth.delete_user(_field(b, "user_id"))
    return _OK


async def _send_verification(auth: AuthService, b: dict[str, Any]) -> Any:
    return await auth.send_verification(_field(b, "user_id"))


async def _verify_email(auth: AuthService, b: dict[str, Any]) -> Any:
    await auth.verify_email(_field(b, "token"))
    return _OK


async def _send_password_reset(auth: AuthService, b: dict[str, Any]) -> Any:
    return await auth.send_password_reset(_field(b, "email"))


async def _reset_password(auth: AuthService, b: dict[str, Any]) -> Any:
    await auth.reset_password(_field(b, "token"), _field(b, "new_password"))
    return _OK


async def _change_password(auth: AuthService, b: dict[str, Any]) -> Any:
    await auth.change_password(
        _field(b, "user_id"),
        _field(b, "old_password"),
        _field(b, "new_password"),
    )
    return _OK


OPS: dict[str, Op] = {
    "register": _register,
    "login": _login,
    "validate": _validate,
    "refresh": _refresh,
    "logout": _logout,
    "get-user": _get_user,
    "list-users": _list_users,
    "update-user": _update_user,
    "delete-user": _delete_user,
    "send-verification": _send_verification,
    "verify-email": _verify_email,
    "send-password-reset": _send_password_reset,
    "reset-password": _reset_password,
    "change-password": _change_password,
}


def _route(op: Op) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        body = await read_object(request, default={})
        try:
            result = await op(platform_of(request).auth, body)
        except RateLimited as exc:
            return error_response(
                exc.status, str(exc), exc.code, headers={"Retry-After": str(exc.retry_after_s)}
            )
        except AuthError as exc:
            return error_response(exc.status, str(exc), exc.code)
        return json_response(result)

    return handle


routes: list[BaseRoute] = [
    Route(f"/api/platform/auth/{name}", endpoint(_route(op)), methods=["POST"])
    for name, op in OPS.items()
]
