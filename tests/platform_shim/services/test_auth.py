"""``platform.auth``: the JS client's operations, and each security property the service
promises (module docstring of ``platform_shim/services/auth.py``)."""

from __future__ import annotations

import asyncio
import base64
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from platform_shim.platform import Platform, open_client
from platform_shim.runtime import open_platform
from platform_shim.services.auth import MAX_FAILURES, AuthError, RateLimited
from platform_shim.services.auth_crypto import SECRET_NAME
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow
from tests.support.eventlog import read_events
from tests.support.waiting import wait_until_async

PASSWORD = "correct horse battery staple"


@define_workflow({"id": "welcome", "trigger": {"kind": "event", "t": "auth.user.registered"}})
async def welcome(event: dict[str, Any], step: Any, ctx: Any) -> str:
    return str(event["data"]["email"])


@pytest.fixture
async def auth_platform(data_dir: Path, clock: FakeClock) -> AsyncIterator[Platform]:
    async with open_platform(data_dir, workflows=[welcome], clock=clock) as platform:
        yield platform


async def signed_up(platform: Platform, email: str = "Ada@Example.com") -> dict[str, Any]:
    return await platform.auth.register(email, PASSWORD, profile={"name": "Ada"})


def all_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in data_dir.rglob("*") if p.is_file())


async def test_register_returns_an_auth_user_and_starts_the_signup_trigger(
    auth_platform: Platform, data_dir: Path, clock: FakeClock
) -> None:
    user = await signed_up(auth_platform)
    assert user["id"].startswith("usr_")
    assert user == {
        "id": user["id"], "email": "ada@example.com", "email_verified": False, "status": "active",
        "provider": "email", "groups": [], "external_id": None, "profile": {"name": "Ada"},
        "created_at": clock.now_ms(), "updated_at": clock.now_ms(), "last_login_at": None,
    }  # fmt: skip
    await auth_platform.settle()
    [event] = [e for e in read_events(data_dir) if e["t"] == "auth.user.registered"]
    assert (event["r"], event["k"], event["data"]["email"]) == (
        "auth",
        user["id"],
        "ada@example.com",
    )
    [run] = await auth_platform.workflows.list(workflow_id="welcome")
    assert run.output == "ada@example.com"
    # The same external id registers once; the same email twice is refused.
    first = await auth_platform.auth.register("x@example.com", PASSWORD, external_id="crm-1")
    again = await auth_platform.auth.register("y@example.com", PASSWORD, external_id="crm-1")
    assert again == first
    with pytest.raises(AuthError) as refused:
        await auth_platform.auth.register("ADA@example.com", PASSWORD)
    assert refused.value.status == 409


async def test_passwords_are_hashed_never_stored_nor_in_events(
    auth_platform: Platform, data_dir: Path
) -> None:
    user = await signed_up(auth_platform)
    await auth_platform.auth.login("ada@example.com", PASSWORD)
    await auth_platform.auth.change_password(user["id"], PASSWORD, "another long secret")
    await auth_platform.settle()
    everything = all_bytes(data_dir)
    assert PASSWORD.encode() not in everything
    assert b"another long secret" not in everything
    stored = [json.loads(line) for line in (data_dir / "auth.jsonl").read_bytes().splitlines()]
    hashes = [r["user"]["password"] for r in stored if r.get("o") == "user"]
    assert hashes and all(h.startswith("scrypt$16384$8$1$") for h in hashes)
    assert len(set(hashes)) == len(hashes)  # a fresh salt each time
    for event in read_events(data_dir):
        assert "scrypt$" not in json.dumps(event) and "password" not in json.dumps(event["data"])


async def test_login_validate_and_short_lived_access(
    auth_platform: Platform, clock: FakeClock
) -> None:
    user = await signed_up(auth_platform)
    session = await auth_platform.auth.login("ADA@example.com ", PASSWORD)
    assert set(session) >= {"access_token", "refresh_token", "expires_in", "user"}
    assert session["expires_in"] == 900
    assert session["user"]["last_login_at"] == clock.now_ms()
    assert (await auth_platform.auth.validate(session["access_token"]))["id"] == user["id"]
    clock.advance("14m")
    await auth_platform.auth.validate(session["access_token"])
    clock.advance("2m")
    with pytest.raises(AuthError, match="invalid or expired token"):
        await auth_platform.auth.validate(session["access_token"])


async def test_refresh_tokens_are_single_use(auth_platform: Platform) -> None:
    await signed_up(auth_platform)
    session = await auth_platform.auth.login("ada@example.com", PASSWORD)
    renewed = await auth_platform.auth.refresh(session["refresh_token"])
    assert renewed["refresh_token"] != session["refresh_token"]
    await auth_platform.auth.validate(renewed["access_token"])
    # The spent token again: refused, and the session it belonged to ends (it was copied).
    with pytest.raises(AuthError) as reused:
        await auth_platform.auth.refresh(session["refresh_token"])
    assert reused.value.status == 401
    with pytest.raises(AuthError):
        await auth_platform.auth.refresh(renewed["refresh_token"])
    with pytest.raises(AuthError):
        await auth_platform.auth.validate(renewed["access_token"])


async def test_logout_ends_the_session(auth_platform: Platform, data_dir: Path) -> None:
    await signed_up(auth_platform)
    session = await auth_platform.auth.login("ada@example.com", PASSWORD)
    await auth_platform.auth.logout(session["session_id"])
    for call in (auth_platform.auth.validate(session["access_token"]),
                 auth_platform.auth.refresh(session["refresh_token"])):  # fmt: skip
        with pytest.raises(AuthError):
            await call
    await auth_platform.settle()
    types = [e["t"] for e in read_events(data_dir) if e["r"] == "auth"]
    assert types == ["auth.user.registered", "auth.user.login", "auth.user.logout"]


async def test_login_is_rate_limited_per_email(auth_platform: Platform, clock: FakeClock) -> None:
    await signed_up(auth_platform)
    for _ in range(MAX_FAILURES):
        with pytest.raises(AuthError) as wrong:
            await auth_platform.auth.login("ada@example.com", "not the password")
        assert wrong.value.status == 401
    # Locked: even the right password is refused, before any check.
    with pytest.raises(RateLimited) as limited:
        await auth_platform.auth.login("ada@example.com", PASSWORD)
    assert limited.value.status == 429 and 0 < limited.value.retry_after_s <= 900
    # Another email is not affected; unknown emails are limited the same way.
    await auth_platform.auth.register("bob@example.com", PASSWORD)
    await auth_platform.auth.login("bob@example.com", PASSWORD)
    for _ in range(MAX_FAILURES):
        with pytest.raises(AuthError):
            await auth_platform.auth.login("nobody@example.com", "whatever-123")
    with pytest.raises(RateLimited):
        await auth_platform.auth.login("nobody@example.com", "whatever-123")
    clock.advance("15m")
    await auth_platform.auth.login("ada@example.com", PASSWORD)


async def test_failures_count_across_processes_and_survive_compaction(
    auth_platform: Platform, data_dir: Path, clock: FakeClock
) -> None:
    # A second process on the folder (a standby host, a script) and the worker count one
    # guesser's failures together, whichever of them saw each; and the count outlives a
    # compaction of the auth log and a restart within the window.
    await signed_up(auth_platform)
    other = open_client(data_dir, clock=clock)
    try:
        for n in range(MAX_FAILURES):
            on = (auth_platform, other)[n % 2]
            with pytest.raises(AuthError):
                await on.auth.login("ada@example.com", f"wrong-{n}")
        for on in (other, auth_platform):
            with pytest.raises(RateLimited):
                await on.auth.login("ada@example.com", PASSWORD)
    finally:
        other.close()
    with pytest.raises(AuthError):  # an address nobody registered is counted, not written
        await auth_platform.auth.login("nobody@example.com", "whatever-123")
    await auth_platform.auth.compact()
    assert b"nobody" not in (data_dir / "auth.jsonl").read_bytes()
    reopened = open_client(data_dir, clock=clock)
    try:
        with pytest.raises(RateLimited):
            await reopened.auth.login("ada@example.com", PASSWORD)
        clock.advance("15m")
        session = await reopened.auth.login("ada@example.com", PASSWORD)
        assert session["user"]["email"] == "ada@example.com"
    finally:
        reopened.close()


async def test_a_flood_of_failed_logins_does_not_grow_the_auth_log_unbounded(
    auth_platform: Platform, data_dir: Path, clock: FakeClock
) -> None:
    # Every failed login is a line of auth.jsonl now; made-up emails each get their own. Once
    # dead lines outnumber twice the live ones plus the slack, the worker rewrites the log in
    # the background, keeping the failures still inside the window.
    auth_platform.auth.compaction.slack = 4
    start = clock.now_ms()
    for n in range(16):
        with pytest.raises(AuthError):
            await auth_platform.auth.login(f"guess-{n}@example.com", "whatever-123")
        clock.advance("6m")  # the oldest leave the 15-minute window as the flood goes on
    await auth_platform.settle()

    def lines() -> list[dict[str, Any]]:
        return [json.loads(x) for x in (data_dir / "auth.jsonl").read_bytes().splitlines()]

    await wait_until_async(lambda: len(lines()) < 16, 10, "the auth log's rewrite")
    kept = [line for line in lines() if line.get("o") == "fail"]
    assert 0 < len(kept) < 16
    # The rewrite came after the 13th failure (at 72 min): those that had left the window by
    # then (at 0 to 54 min) are gone.
    assert min(line["at"] for line in kept) > start + 54 * 60 * 1000


async def test_no_user_enumeration(auth_platform: Platform) -> None:
    await signed_up(auth_platform)
    with pytest.raises(AuthError) as unknown:
        await auth_platform.auth.login("nobody@example.com", PASSWORD)
    with pytest.raises(AuthError) as wrong:
        await auth_platform.auth.login("ada@example.com", "wrong password")
    assert (unknown.value.status, str(unknown.value)) == (wrong.value.status, str(wrong.value))
    fake = await auth_platform.auth.send_password_reset("nobody@example.com")
    real = await auth_platform.auth.send_password_reset("ada@example.com")
    assert len(fake["token"]) == len(real["token"])
    with pytest.raises(AuthError) as useless:
        await auth_platform.auth.reset_password(fake["token"], "a brand new password")
    with pytest.raises(AuthError) as random:
        await auth_platform.auth.reset_password("x" * 43, "a brand new password")
    assert str(useless.value) == str(random.value)


async def test_the_signing_secret(auth_platform: Platform, data_dir: Path) -> None:
    with pytest.raises(AuthError):
        await auth_platform.auth.validate("a.b.c")
    assert not (data_dir / f"{SECRET_NAME}.key").exists()  # created on first use, not by a refusal
    await signed_up(auth_platform)
    session = await auth_platform.auth.login("ada@example.com", PASSWORD)
    path = data_dir / f"{SECRET_NAME}.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    claims = jwt.decode(session["access_token"], options={"verify_signature": False})
    forged = {
        "wrong key": jwt.encode(
            claims, "not-the-secret-but-long-enough-for-hs256!", algorithm="HS256"
        ),
        "alg none": jwt.encode(claims, None, algorithm="none"),
        "tampered": _tamper(session["access_token"], {**claims, "sub": "usr_someone_else"}),
        "refresh as access": session["refresh_token"],
    }
    for name, token in forged.items():
        with pytest.raises(AuthError):
            await auth_platform.auth.validate(token)
        assert name


def _tamper(token: str, claims: dict[str, Any]) -> str:
    header, _, signature = token.split(".")
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{body}.{signature}"


async def test_verification_reset_and_change(auth_platform: Platform, data_dir: Path) -> None:
    user = await signed_up(auth_platform)
    token = (await auth_platform.auth.send_verification(user["id"]))["token"]
    await auth_platform.auth.verify_email(token)
    assert (await auth_platform.auth.get_user(user["id"]))["email_verified"] is True  # type: ignore[index]
    with pytest.raises(AuthError):
        await auth_platform.auth.verify_email(token)  # single use
    session = await auth_platform.auth.login("ada@example.com", PASSWORD)
    reset = (await auth_platform.auth.send_password_reset("ada@example.com"))["token"]
    await auth_platform.auth.reset_password(reset, "a brand new password")
    with pytest.raises(AuthError):
        await auth_platform.auth.validate(session["access_token"])  # every session ended
    with pytest.raises(AuthError):
        await auth_platform.auth.login("ada@example.com", PASSWORD)
    await auth_platform.auth.login("ada@example.com", "a brand new password")
    with pytest.raises(AuthError) as wrong_old:
        await auth_platform.auth.change_password(user["id"], "not it", "yet another password")
    assert wrong_old.value.status == 401
    await auth_platform.auth.change_password(
        user["id"], "a brand new password", "yet another password"
    )
    await auth_platform.auth.login("ada@example.com", "yet another password")
    await auth_platform.settle()
    types = {e["t"] for e in read_events(data_dir) if e["r"] == "auth"}
    assert {"auth.user.verified", "auth.user.password_reset", "auth.user.password_changed"} <= types


async def test_manage_users(auth_platform: Platform) -> None:
    ada = await signed_up(auth_platform)
    bob = await auth_platform.auth.register("bob@example.com", PASSWORD)
    listed = await auth_platform.auth.list_users(limit=1)
    assert (listed["total"], [u["id"] for u in listed["users"]]) == (2, [ada["id"]])
    assert (await auth_platform.auth.list_users(email_contains="BOB"))["total"] == 1
    updated = await auth_platform.auth.update_user(bob["id"], status="suspended", profile={"a": 1})
    assert (updated["status"], updated["profile"]) == ("suspended", {"a": 1})
    with pytest.raises(AuthError) as suspended:
        await auth_platform.auth.login("bob@example.com", PASSWORD)
    assert suspended.value.status == 403
    assert (await auth_platform.auth.list_users(status="suspended"))["total"] == 1
    session = await auth_platform.auth.login("ada@example.com", PASSWORD)
    await auth_platform.auth.delete_user(ada["id"])
    assert await auth_platform.auth.get_user(ada["id"]) is None
    with pytest.raises(AuthError):
        await auth_platform.auth.validate(session["access_token"])
    with pytest.raises(AuthError) as missing:
        await auth_platform.auth.update_user(ada["id"], status="active")
    assert missing.value.status == 404


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda a: a.register("not-an-email", PASSWORD), "email"),
        (lambda a: a.register("a@b.co", "short"), "8 to 1024"),
        (lambda a: a.register("a@b.co", PASSWORD, profile=[1]), "profile"),
        (lambda a: a.list_users(limit=0), "limit"),
        (lambda a: a.list_users(status="gone"), "status"),
        (lambda a: a.logout(""), "session_id"),
    ],
)
async def test_bad_input(auth_platform: Platform, call: Any, needle: str) -> None:
    with pytest.raises(AuthError, match=needle) as refused:
        await call(auth_platform.auth)
    assert refused.value.status == 400


async def test_concurrent_changes_announce_each_event_once(
    auth_platform: Platform, data_dir: Path
) -> None:
    user = await signed_up(auth_platform)
    # Six updates in one commit cycle: each announces its own event, none another's.
    await asyncio.gather(
        *(auth_platform.auth.update_user(user["id"], profile={"n": i}) for i in range(6))
    )
    await auth_platform.settle()
    updates = [
        e["data"]["profile"]["n"] for e in read_events(data_dir) if e["t"] == "auth.user.updated"
    ]
    assert sorted(updates) == list(range(6))


async def test_an_event_a_crash_kept_from_the_stream_is_announced_at_start(
    data_dir: Path, clock: FakeClock
) -> None:
    async with open_platform(data_dir, clock=clock) as platform:
        await signed_up(platform)
    # A registration whose event never reached the stream (the process died in between).
    user = {"id": "usr_crashed", "email": "late@example.com", "status": "active", "groups": []}
    line = {"o": "user", "user": user, "n": 99, "evt": {"t": "auth.user.registered",
            "k": "usr_crashed", "data": {"email": "late@example.com"}}}  # fmt: skip
    with (data_dir / "auth.jsonl").open("ab") as log:
        log.write(json.dumps(line).encode() + b"\n")
    async with open_platform(data_dir, workflows=[welcome], clock=clock) as platform:
        await platform.settle()
        late = [e for e in read_events(data_dir) if e["k"] == "usr_crashed"]
        assert [e["t"] for e in late] == ["auth.user.registered"]
    async with open_platform(data_dir, clock=clock) as platform:
        await platform.settle()
    assert len([e for e in read_events(data_dir) if e["k"] == "usr_crashed"]) == 1  # once
