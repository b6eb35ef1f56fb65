"""The auth service's rules: input checks, the public shape of a user, the login failure
counter, the errors, and what an event says. Pure functions and one small class, no I/O.

The failure counter keeps, per email (known or not), the times of the last ``MAX_FAILURES``
failed logins; an email with that many inside ``FAILURE_WINDOW_MS`` is refused until the oldest
leaves the window. At most ``MAX_TRACKED_EMAILS`` emails are tracked (the least recently failed
are forgotten first), so a flood of made-up emails cannot grow it without bound.
"""

from __future__ import annotations

import re
from collections import OrderedDict, deque
from typing import Any

from platform_shim.services.auth_state import PUBLIC_FIELDS

__all__ = [
    "BAD_LOGIN",
    "BAD_TOKEN",
    "FAILURE_WINDOW_MS",
    "MAX_FAILURES",
    "MAX_PASSWORD",
    "STATUSES",
    "AuthError",
    "Failures",
    "RateLimited",
    "bad",
    "check_email",
    "check_password",
    "check_string",
    "event_data",
    "public",
]

MAX_FAILURES = 5
FAILURE_WINDOW_MS = 15 * 60 * 1000
MAX_TRACKED_EMAILS = 100_000  # the failure counter's memory bound
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


class Failures:
    """Failed logins per email, bounded in memory (oldest emails forgotten first)."""

    def __init__(self) -> None:
        self._by_email: OrderedDict[str, deque[int]] = OrderedDict()

    def retry_after_ms(self, email: str, now: int) -> int:
        times = self._by_email.get(email)
        if not times:
            return 0
        while times and times[0] <= now - FAILURE_WINDOW_MS:
            times.popleft()
        if len(times) < MAX_FAILURES:
            return 0
        return times[0] + FAILURE_WINDOW_MS - now

    def failed(self, email: str, now: int) -> None:
        times = self._by_email.setdefault(email, deque(maxlen=MAX_FAILURES))
        times.append(now)
        self._by_email.move_to_end(email)
        while len(self._by_email) > MAX_TRACKED_EMAILS:
            self._by_email.popitem(last=False)

    def succeeded(self, email: str) -> None:
        self._by_email.pop(email, None)


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
