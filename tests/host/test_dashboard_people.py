"""The Data page's users and realtime channels (``/_platform/api/people`` and ``people.js``):
users without secrets, channels with who is present; checked over HTTP and in Chromium."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support.hostproc import HostProcess
from tests.support.wsclient import WsClient

# Over ~3 s as a whole: a host and Chromium serve two tests.
pytestmark = pytest.mark.slow

if TYPE_CHECKING:
    from playwright.sync_api import Browser


def test_people_endpoint_lists_users_and_channels(host: HostProcess, http: httpx.Client) -> None:
    http.post(
        "/api/platform/auth/register",
        json={"email": "dash@example.com", "password": "pw-long-enough"},
    )
    ws = WsClient(host.port, "/_rt/ws?cid=dash")
    try:
        ws.send({"action": "subscribe", "channel": "dash-room"})
        ws.recv_event("subscribed")
        ws.send({"action": "presence:join", "channel": "dash-room", "userId": "ann"})
        ws.recv_event("presence:join")
        people = http.get("/_platform/api/people").json()
    finally:
        ws.close()
    [user] = [u for u in people["users"] if u["email"] == "dash@example.com"]
    assert "password" not in user and "scrypt" not in str(people)
    [room] = [c for c in people["channels"] if c["name"] == "dash-room"]
    assert [m["userId"] for m in room["members"]] == ["ann"]
    assert room["subscribers"] == 1


def test_the_data_page_shows_them(host: HostProcess, http: httpx.Client, browser: Browser) -> None:
    from playwright.sync_api import expect

    http.post(
        "/api/platform/auth/register",
        json={"email": "seen@example.com", "password": "pw-long-enough"},
    )
    http.post("/api/realtime/presence/lobby-dash/join", json={"userId": "zoe"})
    page = browser.new_context().new_page()
    try:
        page.goto(f"{host.url}/_platform/data")
        people = page.locator("#people")
        expect(people).to_contain_text("seen@example.com")
        expect(people.locator("tr", has_text="lobby-dash")).to_contain_text("zoe")
    finally:
        page.context.close()
