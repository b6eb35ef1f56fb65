"""The platform's JS client, unchanged, against a live host: ``getPlatform().realtime`` and
``.auth`` over HTTP and ``RealtimeClient`` over the WebSocket (``js/realtime_auth_check.mjs``).

Node 20 has no global WebSocket: the script uses the npm package ``ws``, installed beside the
client (the ``js_client_dir`` fixture of ``tests/host/conftest.py``). Skipped only when ``node``
is missing, and failed then where ``PLATFORM_TESTS_REQUIRE`` names it (as in CI).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.hostproc import HostProcess

# Over ~3 s as a whole: one Node run of the client script serves the module.
pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).with_name("js") / "realtime_auth_check.mjs"


@pytest.fixture(scope="module")
def checks(host: HostProcess, node: str, js_client_dir: Path) -> dict[str, dict[str, Any]]:
    env = {
        **os.environ,
        "MARAVILLA_DEV_SERVER": host.url,
        "PLATFORM_JS_CLIENT_DIR": str(js_client_dir),
    }
    env.pop("MARAVILLA_TENANT", None)
    result = subprocess.run(
        [node, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=90, check=False
    )
    assert result.returncode == 0, (
        f"node exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    found: dict[str, dict[str, Any]] = {}
    done = False
    for line in result.stdout.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("done") is True:
                done = True
            elif "check" in record:
                found[record["check"]] = record
    assert done, f"the script did not finish\n{result.stdout}\n{result.stderr}"
    return found


def value(checks: dict[str, dict[str, Any]], name: str) -> Any:
    record = checks[name]
    assert "error" not in record, record
    return record["value"]


def test_realtime_over_http(checks: dict[str, dict[str, Any]], host: HostProcess) -> None:
    assert value(checks, "realtime.publish") is None
    history = value(checks, "realtime.history")
    assert [(m["seq"], m["channel"], m["data"], m["uid"]) for m in history] == [
        (1, "chat:js", {"text": "one"}, "ada"),
        (2, "chat:js", {"text": "two"}, None),
    ]
    assert [m["seq"] for m in value(checks, "realtime.history.after")] == [2]
    presence = value(checks, "realtime.presence")
    assert (presence["first"], presence["again"]) == (True, False)
    assert [(m["userId"], m["metadata"]) for m in presence["members"]] == [
        ("ada", {"mood": "busy"})
    ]
    assert "js-room" in presence["channels"]
    assert (presence["left"], presence["leftAgain"], presence["after"]) == (True, False, [])
    # What the JS client published is there over plain HTTP too.
    with httpx.Client(base_url=host.url) as http:
        assert len(http.get("/api/realtime/history/chat:js").json()["messages"]) == 2


def test_realtime_client_over_websocket(checks: dict[str, dict[str, Any]]) -> None:
    client = value(checks, "realtime.client")
    got = client["got"]
    # Two publishers (bob's socket, the server over HTTP): either may land first, but seq
    # numbers follow arrival order without gaps.
    assert [m["seq"] for m in got] == [1, 2]
    assert sorted((m["data"]["text"], m.get("userId")) for m in got) == [
        ("from the server", None),
        ("hi alice", "bob"),
    ]
    assert client["joins"] == ["bob"]
    assert client["leaves"] == ["bob"]
    assert client["members"] == ["bob"]


def auth_error(message: str) -> tuple[int, dict[str, Any]]:
    """``Auth error (<status>): <body>`` as the client throws it."""
    prefix = "Auth error ("
    assert message.startswith(prefix), message
    status, _, body = message[len(prefix) :].partition("): ")
    return int(status), json.loads(body)


def test_auth(checks: dict[str, dict[str, Any]], host: HostProcess) -> None:
    user = value(checks, "auth.register")
    assert user["id"].startswith("usr_")
    assert (user["email_verified"], user["status"], user["provider"], user["groups"]) == (
        False, "active", "email", []
    )  # fmt: skip
    assert user["profile"] == {"from": "node"}
    session = value(checks, "auth.login")
    assert set(session) >= {"access_token", "refresh_token", "expires_in", "user"}
    assert session["user"]["id"] == user["id"]
    wrong = auth_error(checks["auth.login.wrong"]["error"])
    unknown = auth_error(checks["auth.login.unknown"]["error"])
    assert (
        wrong
        == unknown
        == (401, {"error": "invalid_credentials", "detail": "invalid email or password"})
    )
    assert value(checks, "auth.validate")["id"] == user["id"]
    refreshed = value(checks, "auth.refresh")
    assert refreshed["renewed"] is True
    assert auth_error(refreshed["reuse"])[0] == 401
    assert value(checks, "auth.getUser")["email"] == user["email"]
    assert value(checks, "auth.getUser.missing") is None
    listed = value(checks, "auth.listUsers")
    assert listed["total"] >= 1 and user["id"] in [u["id"] for u in listed["users"]]
    assert "password" not in json.dumps(listed)
    assert value(checks, "auth.updateUser")["profile"] == {"from": "node", "plan": "pro"}
    assert value(checks, "auth.verify") is True
    assert value(checks, "auth.reset") == "string"
    assert auth_error(value(checks, "auth.logout"))[0] == 401
    assert value(checks, "auth.deleteUser") is None
    with httpx.Client(base_url=host.url) as http:
        events = http.get("/api/events", params={"r": "auth", "limit": 1000}).json()
    mine = [e["t"] for e in events if e["k"] == user["id"]]
    assert mine[0] == "auth.user.registered" and mine[-1] == "auth.user.deleted"
    assert {"auth.user.login", "auth.user.verified", "auth.user.password_reset",
            "auth.user.password_changed", "auth.user.logout", "auth.user.updated"} <= set(mine)  # fmt: skip
    assert "js password" not in host.log()
