"""``platform.auth``: users, passwords and sessions, with the platform JS client's operations.

Security decisions (each has a test in ``tests/platform_shim/services/test_auth.py``):

- Passwords are hashed with scrypt (``auth_crypto``), off the event loop; never logged, never
  in an event, never in a line of ``auth.jsonl`` other than as their hash.
- Access tokens are HS256 JWTs (``ACCESS_TTL_S``, 15 minutes) signed with the data folder's own
  secret; validating one also checks that its session is live and its user active, so logout,
  a password change or a deleted user end it at once.
- Refresh tokens (``REFRESH_TTL_MS``, 30 days) are single-use: ``refresh`` rotates them. An old
  one presented again means it was copied: the whole session is revoked.
- Login failures are counted per email (known or not) on the platform clock, across every
  host on the store (``auth_failures.py``): after ``MAX_FAILURES`` within ``FAILURE_WINDOW_MS``
  the email is refused (``RateLimited``) until the window passes, before any password check.
- No user enumeration: an unknown email and a wrong password give the same error after the
  same work (a dummy scrypt), and ``send_password_reset`` answers an unknown email with a
  token-shaped value that resets nothing.
- Email verification and reset tokens are single-use, expire (24 hours, 1 hour) and are stored
  as hashes. A password reset or change revokes every session of the user.

Every change is also an event on the platform stream with ``r = "auth"`` and ``k`` = user id:
``auth.user.registered``, ``.login``, ``.logout``, ``.updated``, ``.deleted``, ``.verified``,
``.password_changed``, ``.password_reset``; its data is the public user (no secret).
Times are epoch milliseconds, like everywhere else in the platform.

Size (over 400 lines, on purpose): the JS client's list of auth operations, one method each;
hashing, rules and state are already their own modules.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any

import orjson

from platform_shim.clock import Clock
from platform_shim.jsonvalue import dumps
from platform_shim.services.auth_crypto import (
    SECRET_NAME,
    dummy_verify,
    hash_password,
    hash_token,
    new_token,
    sign_access,
    verify_access,
    verify_password,
)
from platform_shim.services.auth_failures import FAILURE_WINDOW_MS, MAX_FAILURES, failure_key
from platform_shim.services.auth_rules import (
    BAD_LOGIN,
    BAD_TOKEN,
    MAX_PASSWORD,
    STATUSES,
    AuthError,
    RateLimited,
    bad,
    check_email,
    check_password,
    check_string,
    event_data,
    public,
)
from platform_shim.services.auth_state import AuthState
from platform_shim.services.events import EventsService
from platform_shim.services.selfcompact import SelfCompacting
from platform_shim.store.protocol import Log, Store

__all__ = [
    "ACCESS_TTL_S",
    "FAILURE_WINDOW_MS",
    "MAX_FAILURES",
    "REFRESH_TTL_MS",
    "AuthError",
    "AuthService",
    "RateLimited",
]

ACCESS_TTL_S = 15 * 60
REFRESH_TTL_MS = 30 * 24 * 3600 * 1000
VERIFY_TTL_MS = 24 * 3600 * 1000
RESET_TTL_MS = 3600 * 1000
Prepared = tuple[dict[str, Any] | None, Any]
"""What an operation's check returns inside the commit cycle: the line to write (or None) and
the result to give back."""


class AuthService:
    """``platform.auth``."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        events: EventsService,
        *,
        is_worker: Callable[[], bool],
    ) -> None:
        self.state = AuthState()
        self.log: Log = store.open_log("auth", self.state)
        self._store = store
        self._clock = clock
        self._events = events
        self._key: bytes | None = None
        # Failed logins are lines of this log too: a flood of them must not grow it unbounded.
        self.compaction = SelfCompacting(
            self.log, self.state.live_count, self.compact, is_worker=is_worker
        )
        self._announcing: set[int] = set()  # event numbers being announced by this process

    # ---------------------------------------------------------------------- plumbing

    def _secret(self) -> bytes:
        if self._key is None:
            self._key = self._store.secret(SECRET_NAME, create=True)
            assert self._key is not None
        return self._key

    def _existing_secret(self) -> bytes | None:
        """The key if one was made: checking a token must not create it (a refused request
        writes nothing). One key per store, so every host checks every host's tokens."""
        if self._key is None:
            self._key = self._store.secret(SECRET_NAME, create=False)
        return self._key

    async def _commit(
        self, check: Callable[[], Prepared], event: str | None = None, durable: bool = True
    ) -> Any:
        """Write what ``check`` decides (against the latest state), announce ``event`` with
        the public user the result names, and return the result."""
        state = self.state
        numbered: list[int] = []

        def prepare() -> tuple[bytes | None, Callable[[], Any]]:
            record, result = check()
            if record is None:
                return None, lambda: result
            if event is not None:
                state.last_n += 1
                user = None
                if isinstance(result, dict):
                    user = result if "email" in result else result.get("user")
                uid = record.get("uid") or (user or {}).get("id") or record.get("id")
                record["n"] = state.last_n
                record["evt"] = {"t": event, "k": uid, "data": event_data(record, user)}
                numbered.append(state.last_n)
            line = orjson.dumps(record)

            def apply() -> Any:
                state.apply(orjson.loads(line), line)
                return result

            return line, apply

        result = await self.log.submit(prepare, durable=durable)
        for n in numbered:
            await self._announce(n)
        return result

    async def announce_pending(self) -> None:
        """Put every recorded but unannounced ``auth.user.*`` event on the platform stream
        (the worker calls this when it starts: these are events a crash held back)."""
        self.log.fresh()
        for n in sorted(self.state.unannounced):
            await self._announce(n)

    async def _announce(self, n: int) -> None:
        """Publish event ``n`` once from this process, then mark it announced. An event is
        announced by the process that recorded it, or by the next worker after a crash."""
        evt = self.state.unannounced.get(n)
        if evt is None or n in self._announcing:
            return
        self._announcing.add(n)
        try:
            await self._events.publish(evt["t"], evt["data"], r="auth", k=evt["k"])

            def prepare() -> tuple[bytes | None, Callable[[], None]]:
                if n not in self.state.unannounced:
                    return None, lambda: None
                line = orjson.dumps({"o": "ann", "n": n})
                return line, lambda: self.state.apply({"o": "ann", "n": n}, line)

            await self.log.submit(prepare)
        finally:
            self._announcing.discard(n)

    def _user(self, user_id: object) -> dict[str, Any]:
        uid = check_string(user_id, "user_id")
        self.log.fresh()
        user = self.state.users.get(uid)
        if user is None:
            raise AuthError(404, f"no user {uid!r}", "not_found")
        return user

    def _session(self, user: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """A new session record and the ``AuthSession`` answer for it."""
        now = self._clock.now_ms()
        sid = "ses_" + secrets.token_hex(12)
        refresh = new_token()
        session = {"id": sid, "uid": user["id"], "refresh": hash_token(refresh), "created": now,
                   "exp": now + REFRESH_TTL_MS}  # fmt: skip
        return session, self._answer(user, session, refresh)

    def _answer(
        self, user: dict[str, Any], session: dict[str, Any], refresh: str
    ) -> dict[str, Any]:
        now_s = self._clock.now_ms() // 1000
        claims = {"sub": user["id"], "sid": session["id"], "typ": "access", "iat": now_s,
                  "exp": now_s + ACCESS_TTL_S, "email": user["email"],
                  "jti": secrets.token_hex(8)}  # fmt: skip
        return {
            "access_token": sign_access(self._secret(), claims),
            "refresh_token": f"{session['id']}.{refresh}",
            "expires_in": ACCESS_TTL_S,
            "session_id": session["id"],
            "user": public(user),
        }

    # ------------------------------------------------------------------- registration

    async def register(
        self,
        email: str,
        password: str,
        *,
        profile: dict[str, Any] | None = None,
        external_id: str | None = None,
    ) -> dict[str, Any]:
        """Create a user (``email_verified`` false); with ``external_id``, registering again
        returns the existing user. Emits ``auth.user.registered``."""
        address = check_email(email)
        check_password(password)
        if profile is not None and not isinstance(profile, dict):
            raise bad("'profile' must be an object")
        if external_id is not None:
            check_string(external_id, "external_id")
        dumps(profile, "profile")
        hashed = await asyncio.to_thread(hash_password, password)
        now = self._clock.now_ms()
        state = self.state

        def check() -> Prepared:
            if external_id is not None and external_id in state.by_external:
                return None, public(state.users[state.by_external[external_id]])
            if address in state.by_email:
                raise AuthError(409, "this email cannot be registered", "conflict")
            user = {"id": "usr_" + secrets.token_hex(12), "email": address,
                    "email_verified": False, "status": "active", "provider": "email",
                    "groups": [], "external_id": external_id, "profile": profile or {},
                    "created_at": now, "updated_at": now, "last_login_at": None,
                    "password": hashed}  # fmt: skip
            return {"o": "user", "user": user}, public(user)

        result: dict[str, Any] = await self._commit(check, "auth.user.registered")
        return result

    async def _note_failure(self, op: str, key: str, at: int = 0) -> None:
        """Record a failed login (``fail``) or forget an email's failures (``okay``, written
        only if it has some), for every process on the store; no fsync: losing the last few
        on a crash costs a guesser's count, never a user's data."""
        failures = self.state.failures
        if op == "okay" and key not in failures:
            return
        record = {"o": op, "key": key, "at": at} if op == "fail" else {"o": op, "key": key}

        def prepare() -> tuple[bytes, Callable[[], None]]:
            return orjson.dumps(record), lambda: self.state.apply(record, b"")

        await self.log.submit(prepare, durable=False)
        self.compaction.check()

    # ------------------------------------------------------------------------ sessions

    async def login(self, email: str, password: str) -> dict[str, Any]:
        """A session ``{access_token, refresh_token, expires_in, session_id, user}``."""
        address = check_email(email)
        if not isinstance(password, str) or len(password) > MAX_PASSWORD:
            raise AuthError(401, BAD_LOGIN, "invalid_credentials")
        now = self._clock.now_ms()
        key = failure_key(address)
        self.log.fresh()  # every host's failures count
        wait = self.state.failures.retry_after_ms(key, now)
        if wait > 0:
            raise RateLimited(-(-wait // 1000))
        user = self.state.user_by_email(address)
        if user is None or "password" not in user:
            await asyncio.to_thread(dummy_verify, password)
            ok = False
        else:
            ok = await asyncio.to_thread(verify_password, password, user["password"])
        if not ok:
            await self._note_failure("fail", key, now)
            raise AuthError(401, BAD_LOGIN, "invalid_credentials")
        assert user is not None
        if user["status"] != "active":
            raise AuthError(403, f"this account is {user['status']}", "forbidden")
        await self._note_failure("okay", key)
        state = self.state

        def check() -> Prepared:
            current = state.users.get(user["id"])
            if current is None:
                raise AuthError(401, BAD_LOGIN, "invalid_credentials")
            session, answer = self._session(current)
            updated = {**current, "last_login_at": now}
            answer["user"] = public(updated)
            return {
                "o": "session",
                "session": session,
                "user": updated,
                "uid": current["id"],
            }, answer

        # A login writes the session and the user's last_login_at in one line.
        result: dict[str, Any] = await self._commit(check, "auth.user.login")
        return result

    async def validate(self, token: str) -> dict[str, Any]:
        """The user of a valid access token (its session live, its user active)."""
        if not isinstance(token, str) or not token or len(token) > 4096:
            raise AuthError(401, BAD_TOKEN, "invalid_token")
        key = self._existing_secret()
        claims = verify_access(key, token, self._clock.now_ms() // 1000) if key else None
        self.log.fresh()
        session = self.state.sessions.get(claims["sid"]) if claims else None
        user = self.state.users.get(claims["sub"]) if claims else None
        if (
            session is None
            or user is None
            or session["uid"] != user["id"]
            or session["exp"] <= self._clock.now_ms()
            or user["status"] != "active"
        ):
            raise AuthError(401, BAD_TOKEN, "invalid_token")
        return public(user)

    async def refresh(self, token: str) -> dict[str, Any]:
        """A new session answer for a refresh token, which is then spent (single use)."""
        if not isinstance(token, str) or token.count(".") != 1 or len(token) > 512:
            raise AuthError(401, BAD_TOKEN, "invalid_token")
        sid, secret = token.split(".")
        digest = hash_token(secret)
        now = self._clock.now_ms()
        state = self.state

        def check() -> Prepared:
            session = state.sessions.get(sid)
            if session is None or session["exp"] <= now:
                raise AuthError(401, BAD_TOKEN, "invalid_token")
            user = state.users.get(session["uid"])
            if not secrets.compare_digest(session["refresh"], digest):
                # A spent token came back: someone holds a copy. End the session for everyone.
                return {"o": "endsession", "id": sid, "uid": session["uid"]}, None
            if user is None or user["status"] != "active":
                raise AuthError(401, BAD_TOKEN, "invalid_token")
            fresh = new_token()
            rotated = {**session, "refresh": hash_token(fresh)}
            return {"o": "session", "session": rotated}, self._answer(user, rotated, fresh)

        result = await self._commit(check)
        if result is None:
            raise AuthError(401, BAD_TOKEN, "invalid_token")
        answer: dict[str, Any] = result
        return answer

    async def logout(self, session_id: str) -> None:
        """End a session (its access and refresh tokens stop working). Emits ``auth.user.logout``."""
        sid = check_string(session_id, "session_id")
        state = self.state

        def check() -> Prepared:
            session = state.sessions.get(sid)
            if session is None:
                return None, None
            return {"o": "endsession", "id": sid, "uid": session["uid"]}, None

        await self._commit(check, "auth.user.logout")

    # ---------------------------------------------------------------------- managing

    async def get_user(self, user_id: str) -> dict[str, Any] | None:
        uid = check_string(user_id, "user_id")
        self.log.fresh()
        user = self.state.users.get(uid)
        return public(user) if user else None

    async def list_users(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        status: str | None = None,
        email_contains: str | None = None,
        group_id: str | None = None,
    ) -> dict[str, Any]:
        """``{users, total, limit, offset}``, oldest first."""
        for name, value, low in (("limit", limit, 1), ("offset", offset, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise bad(f"'{name}' must be an integer of at least {low}")
        if status is not None and status not in STATUSES:
            raise bad(f"'status' must be one of {list(STATUSES)}")
        for name, text in (("email_contains", email_contains), ("group_id", group_id)):
            if text is not None and not isinstance(text, str):
                raise bad(f"'{name}' must be a string")
        self.log.fresh()
        users = [
            u
            for u in self.state.users.values()
            if (status is None or u["status"] == status)
            and (email_contains is None or email_contains.lower() in u["email"])
            and (group_id is None or group_id in u["groups"])
        ]
        page = users[offset : offset + min(limit, 1000)]
        return {"users": [public(u) for u in page], "total": len(users), "limit": limit,
                "offset": offset}  # fmt: skip

    async def update_user(
        self,
        user_id: str,
        *,
        email: str | None = None,
        status: str | None = None,
        profile: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Change email (then unverified), status, or merge ``profile``. Emits ``auth.user.updated``."""
        self._user(user_id)
        address = None if email is None else check_email(email)
        if status is not None and status not in STATUSES:
            raise bad(f"'status' must be one of {list(STATUSES)}")
        if profile is not None and not isinstance(profile, dict):
            raise bad("'profile' must be an object")
        dumps(profile, "profile")
        now = self._clock.now_ms()
        state = self.state

        def check() -> Prepared:
            user = state.users.get(user_id)
            if user is None:
                raise AuthError(404, f"no user {user_id!r}", "not_found")
            changed = dict(user)
            if address is not None and address != user["email"]:
                if address in state.by_email:
                    raise AuthError(409, "this email cannot be used", "conflict")
                changed["email"], changed["email_verified"] = address, False
            if status is not None:
                changed["status"] = status
            if profile is not None:
                changed["profile"] = {**user.get("profile", {}), **profile}
            changed["updated_at"] = now
            return {"o": "user", "user": changed}, public(changed)

        result: dict[str, Any] = await self._commit(check, "auth.user.updated")
        return result

    async def delete_user(self, user_id: str) -> None:
        """Delete a user with their sessions and tokens. Emits ``auth.user.deleted``."""
        user = self._user(user_id)
        state = self.state

        def check() -> Prepared:
            if user["id"] not in state.users:
                raise AuthError(404, f"no user {user['id']!r}", "not_found")
            return {"o": "deluser", "id": user["id"], "uid": user["id"]}, public(user)

        await self._commit(check, "auth.user.deleted")

    # -------------------------------------------------------------- one-time tokens

    async def _issue(self, kind: str, user_id: str, ttl_ms: int) -> str:
        token = new_token()
        record = {"o": "token", "hash": hash_token(token), "kind": kind, "uid": user_id,
                  "exp": self._clock.now_ms() + ttl_ms}  # fmt: skip
        await self._commit(lambda: (record, None))
        return token

    async def _spend(self, kind: str, token: object) -> dict[str, Any]:
        """The user a valid unspent ``kind`` token names; the token is spent."""
        if not isinstance(token, str) or not token or len(token) > 512:
            raise AuthError(400, BAD_TOKEN, "invalid_token")
        digest = hash_token(token)
        now = self._clock.now_ms()
        state = self.state

        def check() -> Prepared:
            found = state.tokens.get(digest)
            user = state.users.get(found.user_id) if found else None
            if found is None or found.kind != kind or found.expires_at <= now or user is None:
                raise AuthError(400, BAD_TOKEN, "invalid_token")
            return {"o": "usetoken", "hash": digest}, user

        user: dict[str, Any] = await self._commit(check)
        return user

    async def send_verification(self, user_id: str) -> dict[str, str]:
        """A single-use email verification token (24 h) for the caller to deliver."""
        user = self._user(user_id)
        return {"token": await self._issue("verify", user["id"], VERIFY_TTL_MS)}

    async def verify_email(self, token: str) -> None:
        """Mark the token's user verified. Emits ``auth.user.verified``."""
        user = await self._spend("verify", token)
        await self._set(user["id"], "auth.user.verified", email_verified=True)

    async def send_password_reset(self, email: str) -> dict[str, str]:
        """A single-use reset token (1 h). An unknown email gets a token that resets nothing,
        so this never tells whether an account exists."""
        address = check_email(email)
        self.log.fresh()
        user = self.state.user_by_email(address)
        if user is None:
            return {"token": new_token()}
        return {"token": await self._issue("reset", user["id"], RESET_TTL_MS)}

    async def reset_password(self, token: str, new_password: str) -> None:
        """Set a new password with a reset token; every session of the user ends.
        Emits ``auth.user.password_reset``."""
        check_password(new_password, "new_password")
        user = await self._spend("reset", token)
        hashed = await asyncio.to_thread(hash_password, new_password)
        await self._set(user["id"], "auth.user.password_reset", password=hashed, _end_sessions=True)
        await self._note_failure("okay", failure_key(user["email"]))

    async def change_password(self, user_id: str, old_password: str, new_password: str) -> None:
        """Change a password knowing the old one; every session ends.
        Emits ``auth.user.password_changed``."""
        user = self._user(user_id)
        check_password(new_password, "new_password")
        if not isinstance(old_password, str) or not await asyncio.to_thread(
            verify_password, old_password, user.get("password", "")
        ):
            raise AuthError(401, "the old password is wrong", "invalid_credentials")
        hashed = await asyncio.to_thread(hash_password, new_password)
        await self._set(
            user["id"], "auth.user.password_changed", password=hashed, _end_sessions=True
        )

    async def _set(
        self, user_id: str, event: str, _end_sessions: bool = False, **fields: Any
    ) -> None:
        now = self._clock.now_ms()
        state = self.state

        def check() -> Prepared:
            user = state.users.get(user_id)
            if user is None:
                raise AuthError(404, f"no user {user_id!r}", "not_found")
            changed = {**user, **fields, "updated_at": now}
            record: dict[str, Any] = {"o": "user", "user": changed}
            if _end_sessions:
                record["end_sessions"] = True
            return record, public(changed)

        await self._commit(check, event)

    # ---------------------------------------------------------------------- compaction

    async def compact(self) -> None:
        """Rewrite ``auth.jsonl`` with only what is live (worker only), off the loop."""
        now = self._clock.now_ms()
        await self.log.rewrite(lambda: list(self.state.live_records(now)))
