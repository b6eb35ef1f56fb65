"""Realtime over HTTP and the WebSocket ``/_rt/ws`` against a live host (``platform.toml`` of the
test project: history on ``chat:*`` keeping 5, outbox 8, presence grace 60 s)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.host.hosting import StartHost, assert_error
from tests.support.hostproc import HostProcess
from tests.support.waiting import wait_until
from tests.support.wsclient import WsClient


@pytest.fixture
def sockets(host: HostProcess) -> Iterator[list[WsClient]]:
    opened: list[WsClient] = []
    yield opened
    for ws in opened:
        ws.close()


def connect(host: HostProcess, opened: list[WsClient], cid: str | None = None) -> WsClient:
    ws = WsClient(host.port, f"/_rt/ws?cid={cid or uuid.uuid4().hex}")
    opened.append(ws)
    return ws


def subscribe(ws: WsClient, channel: str, **extra: object) -> None:
    ws.send({"action": "subscribe", "channel": channel, **extra})
    assert ws.recv_event("subscribed")["channel"] == channel


def test_http_publish_history_is_bounded_and_numbered(http: httpx.Client) -> None:
    for i in range(7):
        r = http.post(
            "/api/realtime/publish", json={"channel": "chat:h", "data": {"n": i}, "userId": "ann"}
        )
        assert r.status_code == 200, r.text
    messages = http.get("/api/realtime/history/chat:h").json()["messages"]
    assert [m["seq"] for m in messages] == [3, 4, 5, 6, 7]
    assert set(messages[0]) == {"seq", "channel", "data", "uid", "ts"}
    assert (messages[0]["data"], messages[0]["uid"]) == ({"n": 2}, "ann")
    after = http.get("/api/realtime/history/chat:h", params={"after": 5, "limit": 1}).json()
    assert [m["seq"] for m in after["messages"]] == [6]
    assert (
        http.post("/api/realtime/publish", json={"channel": "nohistory", "data": 1}).status_code
        == 200
    )
    assert http.get("/api/realtime/history/nohistory").json() == {"messages": []}
    assert "chat:h" in http.get("/api/realtime/channels").json()["channels"]


def test_http_presence(http: httpx.Client) -> None:
    url = "/api/realtime/presence/room%2Fa"
    assert http.post(f"{url}/join", json={"userId": "ann", "metadata": {"n": 1}}).json() == {
        "isNew": True
    }
    assert http.post(f"{url}/join", json={"userId": "ann"}).json() == {"isNew": False}
    members = http.get(url).json()["members"]
    assert [(m["userId"], m["metadata"]) for m in members] == [("ann", None)]
    assert "room/a" in http.get("/api/realtime/channels").json()["channels"]
    assert http.post(f"{url}/leave", json={"userId": "ann"}).json() == {"wasPresent": True}
    assert http.post(f"{url}/leave", json={"userId": "ann"}).json() == {"wasPresent": False}
    assert http.get(url).json() == {"members": []}


@pytest.mark.parametrize(
    ("method", "path", "body", "needle"),
    [
        ("POST", "/api/realtime/publish", {"data": 1}, "'channel'"),
        ("POST", "/api/realtime/publish", {"channel": "", "data": 1}, "non-empty"),
        ("POST", "/api/realtime/publish", {"channel": "c", "userId": 5}, "userId"),
        ("POST", "/api/realtime/publish", [1], "JSON object"),
        ("POST", "/api/realtime/presence/c/join", {}, "userId"),
        ("POST", "/api/realtime/presence/c/leave", {"userId": ""}, "userId"),
        ("GET", "/api/realtime/history/c?limit=x", None, "limit"),
        ("GET", "/api/realtime/history/c?after=-1", None, "after"),
        ("POST", "/api/realtime/publish", {"channel": "workflows:signals", "data": 1}, "type"),
    ],
)
def test_http_bad_input(
    http: httpx.Client, method: str, path: str, body: object, needle: str
) -> None:
    assert_error(http.request(method, path, json=body), 400, needle)


def test_websocket_pubsub_and_catch_up(
    host: HostProcess, http: httpx.Client, sockets: list[WsClient]
) -> None:
    a, b = connect(host, sockets), connect(host, sockets)
    subscribe(a, "chat:ws")
    b.send({"action": "publish", "channel": "chat:ws", "data": {"text": "hi"}, "userId": "bob"})
    got = a.recv_event("message")
    assert {k: got[k] for k in ("channel", "data", "userId", "from", "seq")} == {
        "channel": "chat:ws", "data": {"text": "hi"}, "userId": "bob", "from": "bob", "seq": 1
    }  # fmt: skip
    http.post("/api/realtime/publish", json={"channel": "chat:ws", "data": "from http"})
    assert a.recv_event("message")["data"] == "from http"
    b.send({"action": "ping"})
    assert b.recv_event("pong")["ts"] > 0
    b.send({"action": "fly"})
    assert "unknown action" in b.recv_event("error")["data"]["message"]
    b.send_raw("not json")
    assert b.recv_event("error")["data"]["message"] == "not a JSON object"
    a.send({"action": "unsubscribe", "channel": "chat:ws"})
    a.send({"action": "ping"})
    a.recv_event("pong")  # the unsubscribe is applied before the ping is answered
    http.post("/api/realtime/publish", json={"channel": "chat:ws", "data": "after"})
    a.send({"action": "ping"})
    assert a.recv()["event"] == "pong"  # nothing from chat:ws came before it


def test_websocket_catch_up_order(
    host: HostProcess, http: httpx.Client, sockets: list[WsClient]
) -> None:
    for text in ("one", "two", "three"):
        http.post("/api/realtime/publish", json={"channel": "chat:late", "data": text})
    c = connect(host, sockets)
    c.send({"action": "subscribe", "channel": "chat:late", "lastEventId": 1})
    first, second, confirmed = c.recv(), c.recv(), c.recv()
    assert [(first["seq"], first["data"]), (second["seq"], second["data"])] == [
        (2, "two"),
        (3, "three"),
    ]
    assert confirmed["event"] == "subscribed"


def test_presence_over_websocket_with_grace(
    host: HostProcess, http: httpx.Client, sockets: list[WsClient]
) -> None:
    watcher = connect(host, sockets)
    subscribe(watcher, "lobby")
    ann = connect(host, sockets, cid="ann-tab")
    ann.send({"action": "presence:join", "channel": "lobby", "userId": "ann", "metadata": {"c": 1}})
    joined = watcher.recv_event("presence:join")
    assert (joined["userId"], joined["metadata"]) == ("ann", {"c": 1})
    ann.send(
        {"action": "presence:update", "channel": "lobby", "userId": "ann", "metadata": {"c": 2}}
    )
    assert watcher.recv_event("presence:update")["metadata"] == {"c": 2}
    # The tab closes: ann stays present through the grace period; a reconnect keeps her.
    ann.close()
    again = connect(host, sockets, cid="ann-tab")
    again.send(
        {"action": "presence:join", "channel": "lobby", "userId": "ann", "metadata": {"c": 3}}
    )
    assert watcher.recv_event("presence:join")["metadata"] == {"c": 3}
    members = http.get("/api/realtime/presence/lobby").json()["members"]
    assert [m["userId"] for m in members] == ["ann"]
    again.send({"action": "presence:leave", "channel": "lobby"})
    assert watcher.recv_event("presence:leave")["userId"] == "ann"
    assert http.get("/api/realtime/presence/lobby").json() == {"members": []}


def test_presence_leaves_after_the_grace_period(start_host: StartHost) -> None:
    dev = start_host(command="dev")
    watcher = WsClient(dev.port, "/_rt/ws?cid=w")
    ann = WsClient(dev.port, "/_rt/ws?cid=a")
    try:
        subscribe(watcher, "room")
        ann.send({"action": "presence:join", "channel": "room", "userId": "ann"})
        watcher.recv_event("presence:join")
        ann.close()
        http = dev.client()
        # Still present: the grace period (60 s of the host's clock) has not passed.
        assert [m["userId"] for m in http.get("/api/realtime/presence/room").json()["members"]] == [
            "ann"
        ]
        assert http.post("/api/dev/clock", json={"advance": "61s"}).status_code == 200
        assert watcher.recv_event("presence:leave")["userId"] == "ann"
        assert http.get("/api/realtime/presence/room").json() == {"members": []}
    finally:
        watcher.close()
        ann.close()


def test_a_slow_client_is_dropped(
    host: HostProcess, http: httpx.Client, sockets: list[WsClient]
) -> None:
    slow = connect(host, sockets)
    subscribe(slow, "firehose")
    fast = connect(host, sockets)
    subscribe(fast, "firehose")
    blob = "x" * 200_000
    # The slow client reads nothing: once the socket buffers are full its outbox (8) fills and
    # the host drops it. The fast one keeps up and stays.
    for i in range(400):
        http.post("/api/realtime/publish", json={"channel": "firehose", "data": [i, blob]})
        assert fast.recv_event("message")["data"][0] == i
        if "too slow" in host.log():
            break
    wait_until(lambda: "dropped: too slow" in host.log())
    while slow.recv() is not None:
        pass  # drain what was in flight; then the close frame
    assert slow.closed == 1013
    fast.send({"action": "ping"})
    assert fast.recv_event("pong")


def test_signals_channel(host: HostProcess, http: httpx.Client, sockets: list[WsClient]) -> None:
    ws = connect(host, sockets)
    subscribe(ws, "workflows:signals")
    first = http.post("/api/workflows/waiter/start", json={"orderId": "rt-1"}).json()["runId"]
    second = http.post("/api/workflows/waiter/start", json={"orderId": "rt-2"}).json()["runId"]
    wait_until(lambda: http.get(f"/api/workflows/runs/{first}").json()["status"] == "waiting_event")
    wait_until(
        lambda: http.get(f"/api/workflows/runs/{second}").json()["status"] == "waiting_event"
    )
    count = http.post(
        "/api/workflows/signal",
        json={"eventType": "order.approved", "payload": {"orderId": "rt-1"}},
    ).json()["count"]
    assert count == 1
    seen = ws.recv_event("message")
    assert seen["data"] == {"type": "order.approved", "payload": {"orderId": "rt-1"}, "count": 1}
    # Publishing on the channel sends the event to the waiting run.
    ws.send({"action": "publish", "channel": "workflows:signals",
             "data": {"type": "order.approved", "payload": {"orderId": "rt-2"}}})  # fmt: skip
    assert ws.recv_event("message")["data"]["count"] == 1
    wait_until(lambda: http.get(f"/api/workflows/runs/{second}").json()["status"] == "completed")
    assert http.get(f"/api/workflows/runs/{first}").json()["status"] == "completed"


def test_websocket_needs_cid_and_the_token(start_host: StartHost) -> None:
    secured = start_host(bind="0.0.0.0", token="s3cret")
    refused = WsClient(secured.port, "/_rt/ws?cid=x")
    assert refused.rejected
    refused.close()
    ok = WsClient(secured.port, "/_rt/ws?cid=x&token=s3cret")
    try:
        ok.send({"action": "ping"})
        assert ok.recv_event("pong")
    finally:
        ok.close()
    missing = WsClient(secured.port, "/_rt/ws?token=s3cret")
    assert missing.rejected
    missing.close()
