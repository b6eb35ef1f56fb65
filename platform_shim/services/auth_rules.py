"""The auth service's rules: input checks, the public shape of a user, the errors, and what an
event says. Pure functions, no I/O. (The login failure counter is ``auth_failures.py``.)
"""

from __future__ import annotations

import re
from typing import Any

from platform_shim.services.auth_state import PUBLIC_FIELDS

__all__ = [
    "BAD_LOGIN",
    "BAD_TOKEN",
    "MAX_PASSWORD",
    "STATUSES",
    "AuthError",
    "RateLimited",
    "bad",
    "check_email",
    "check_password",
    "check_string",
    "event_data",
    "public",
]

MIN_PASSWORD, MAX_PASSWORD = 8, 1024
STATUSES = ("active", "suspended", "deactivated")
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
BAD_LOGIN = "invalid email or password"
BAD_TOKEN = "invalid or expired token"


class AuthError(Exception):
    """A refused auth operation: ``status`` is the HTTP answer, ``code`` a short name."""

    def __init__(self, status: int, message: str, code: str = "auth_error") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RateLimited(AuthError):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__(
            429, "too many failed logins for this email; try again later", "rate_limited"
        )
        self.retry_after_s = retry_after_s


def bad(message: str) -> AuthError:
    return AuthError(400, message, "bad_request")


def check_email(value: object) -> str:
    if not isinstance(value, str) or len(value) > 254 or not EMAIL_PATTERN.fullmatch(value.strip()):
        raise bad(f"'email' must be an email address, not {str(value)[:80]!r}")
    return value.strip().lower()


def check_password(value: object, name: str = "password") -> str:
    if not isinstance(value, str) or not MIN_PASSWORD <= len(value) <= MAX_PASSWORD:
        # Never echo the value: it may be someone's real password.
        raise bad(f"'{name}' must be a string of {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return value


def check_string(value: object, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 512:
        raise bad(f"'{name}' must be a non-empty string")
    return value


def public(user: dict[str, Any]) -> dict[str, Any]:
    """The user as ``AuthUser`` (no password hash)."""
    return {name: user.get(name) for name in PUBLIC_FIELDS}


def event_data(record: dict[str, Any], user: dict[str, Any] | None) -> dict[str, Any]:
    """An event's data: the public user (never a hash) and the session id where there is one."""
    data: dict[str, Any] = {}
    if user is not None:
        data.update(user)
        data["userId"] = user["id"]
    if record.get("o") in ("session", "endsession"):
        data["sessionId"] = record.get("session", {}).get("id") or record.get("id")
        data["userId"] = record.get("uid")
    return data
