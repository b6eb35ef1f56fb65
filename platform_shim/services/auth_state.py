"""The fold of ``auth.jsonl``: users, sessions and one-time tokens.

Invariants:

- Secrets never appear in this log in a usable form: a password is a scrypt hash, a refresh,
  verification or reset token is its SHA-256.
- Every change is one line, written and fsync'd before the caller sees its result; lines are
  validated against the latest state inside the log's commit cycle (under the cross-process
  lock), so two processes can never register the same email or consume one token twice.
- Each change that users of the platform hear about (``auth.user.*``) is written with its
  event (``"evt"``) and a number ``n``; once the event is on the platform stream an ``ann``
  line marks it announced. The worker re-announces whatever is left unmarked when it starts:
  a crash between the two writes delivers the event late, never loses it.

Line shapes (``o`` is the op): ``{"o": "user", "user": {...}}`` (create or replace),
``{"o": "deluser", "id"}``, ``{"o": "session", "session": {...}}`` (create or replace, e.g. a
rotated refresh hash), ``{"o": "endsession", "id"}``, ``{"o": "token", "hash", "kind", "uid",
"exp"}``, ``{"o": "usetoken", "hash"}``, ``{"o": "ann", "n"}``; any line may carry
``"n"`` and ``"evt": {"t", "k", "data"}``; ``{"o": "fail", "key", "at"}`` (a failed login, the email as
``auth_failures.failure_key``) and ``{"o": "okay", "key"}`` (its failures forgotten), written
without an fsync: the login failure counter (``auth_failures.py``) is a fold of them, so every
process on the store counts every host's failures.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from platform_shim.services.auth_failures import Failures
from platform_shim.store.protocol import Record

__all__ = ["PUBLIC_FIELDS", "AuthState", "OneTimeToken"]

PUBLIC_FIELDS = (
    "id",
    "email",
    "email_verified",
    "status",
    "provider",
    "groups",
    "external_id",
    "profile",
    "created_at",
    "updated_at",
    "last_login_at",
)
"""What an ``AuthUser`` shows: everything but the password hash."""


@dataclass
class OneTimeToken:
    kind: str  # "verify" | "reset"
    user_id: str
    expires_at: int


class AuthState:
    """Users by id (and by email, by external id), live sessions, unused one-time tokens."""

    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.by_email: dict[str, str] = {}
        self.by_external: dict[str, str] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.tokens: dict[str, OneTimeToken] = {}
        self.unannounced: dict[int, dict[str, Any]] = {}
        self.last_n = 0
        self.failures = Failures()

    def reset(self) -> None:
        self.users.clear()
        self.by_email.clear()
        self.by_external.clear()
        self.sessions.clear()
        self.tokens.clear()
        self.unannounced.clear()
        self.last_n = 0
        self.failures.clear()

    def apply(self, record: Record, line: bytes) -> None:
        op = record.get("o")
        if op == "user":
            self._put_user(record["user"])
            if record.get("end_sessions"):
                self._end_sessions(record["user"]["id"])
        elif op == "deluser":
            self._delete_user(record["id"])
        elif op == "session":
            self.sessions[record["session"]["id"]] = record["session"]
            if "user" in record:  # a login also records the user's last_login_at
                self._put_user(record["user"])
        elif op == "endsession":
            self.sessions.pop(record["id"], None)
        elif op == "token":
            self.tokens[record["hash"]] = OneTimeToken(record["kind"], record["uid"], record["exp"])
        elif op == "usetoken":
            self.tokens.pop(record["hash"], None)
        elif op == "ann":
            self.unannounced.pop(record["n"], None)
        elif op == "fail":
            self.failures.failed(record["key"], record["at"])
        elif op == "okay":
            self.failures.succeeded(record["key"])
        n = record.get("n")
        if isinstance(n, int):
            self.last_n = max(self.last_n, n)
            if "evt" in record:
                self.unannounced[n] = record["evt"]

    def _put_user(self, user: dict[str, Any]) -> None:
        old = self.users.get(user["id"])
        if old is not None:
            self.by_email.pop(old["email"], None)
        self.users[user["id"]] = user
        self.by_email[user["email"]] = user["id"]
        if user.get("external_id"):
            self.by_external[user["external_id"]] = user["id"]

    def _delete_user(self, user_id: str) -> None:
        user = self.users.pop(user_id, None)
        if user is None:
            return
        self.by_email.pop(user["email"], None)
        if user.get("external_id"):
            self.by_external.pop(user["external_id"], None)
        self._end_sessions(user_id)
        for digest in [d for d, t in self.tokens.items() if t.user_id == user_id]:
            del self.tokens[digest]

    def _end_sessions(self, user_id: str) -> None:
        for sid in [sid for sid, s in self.sessions.items() if s["uid"] == user_id]:
            del self.sessions[sid]

    def user_by_email(self, email: str) -> dict[str, Any] | None:
        user_id = self.by_email.get(email)
        return self.users.get(user_id) if user_id else None

    # ---------------------------------------------------------------------- compaction

    def live_count(self) -> int:
        return (
            len(self.users)
            + len(self.sessions)
            + len(self.tokens)
            + len(self.unannounced)
            + len(self.failures)
            + 1
        )

    def live_records(self, now_ms: int) -> Iterator[bytes]:
        """The lines a fresh log needs (expired sessions and tokens are left out)."""
        yield orjson.dumps({"o": "ann", "n": self.last_n})  # keeps the numbering going
        for user in self.users.values():
            yield orjson.dumps({"o": "user", "user": user})
        for session in self.sessions.values():
            if session["exp"] > now_ms:
                yield orjson.dumps({"o": "session", "session": session})
        for digest, token in self.tokens.items():
            if token.expires_at > now_ms:
                yield orjson.dumps(
                    {"o": "token", "hash": digest, "kind": token.kind, "uid": token.user_id,
                     "exp": token.expires_at}
                )  # fmt: skip
        for n, evt in self.unannounced.items():
            yield orjson.dumps({"o": "pending", "n": n, "evt": evt})
        for key, at in self.failures.live(now_ms):
            yield orjson.dumps({"o": "fail", "key": key, "at": at})
