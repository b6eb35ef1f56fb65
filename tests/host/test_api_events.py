"""The platform event stream over HTTP against a real host: POST /api/events, live SSE."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.host.hosting import assert_error, quiet
from tests.support.hostproc import HostProcess


class SSE:
    """Reads Server-Sent Events from an open streaming response, one event at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines: Iterator[str] = response.iter_lines()
        self.comments: list[str] = []

    def next_event(self) -> dict[str, str]:
        fields: dict[str, str] = {}
        for line in self.lines:
            if line == "":
                if fields:
                    return fields
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            assert name not in fields, (name, fields)  # one line per field: nothing forged
            fields[name] = value[1:] if value.startswith(" ") else value
        raise AssertionError(f"the stream ended; fields so far: {fields}")

    def until(self, predicate: Callable[[dict[str, str]], bool]) -> dict[str, str]:
        while True:
            event = self.next_event()
            if predicate(event):
                return event


def publish(http: httpx.Client, **event: Any) -> int:
    response = http.post("/api/events", json=event)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id"}, body
    event_id: int = body["id"]
    return event_id


@pytest.fixture
def stream_client(host: HostProcess) -> Iterator[httpx.Client]:
    # A read timeout turns "the event never came" into a failure instead of a hang.
    with httpx.Client(base_url=host.url, timeout=httpx.Timeout(5.0)) as client:
        yield client


def test_publish_answers_increasing_ids(http: httpx.Client) -> None:
    first = publish(http, t="test.first", data={"n": 1})
    second = publish(http, t="test.second", r="custom", ns="space", k="key-1", data=[1, 2])
    assert isinstance(first, int)
    assert second > first
    recent = http.get("/api/events", params={"limit": 2}).json()
    assert recent[-1] == {
        "id": second,
        "t": "test.second",
        "r": "custom",
        "ns": "space",
        "k": "key-1",
        "data": [1, 2],
        "ts": recent[-1]["ts"],
    }
    assert recent[-2]["id"] == first
    assert recent[-2]["r"] == "custom"  # the default origin


def test_sse_is_live(http: httpx.Client, stream_client: httpx.Client) -> None:
    with stream_client.stream("GET", "/api/events/stream") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        sse = SSE(response)
        event_id = publish(http, t="live.hello", ns="greetings", data={"to": "world"})
        event = sse.until(lambda e: e.get("event") == "live.hello")
        assert event["id"] == str(event_id)
        payload = json.loads(event["data"])
        assert payload["id"] == event_id
        assert payload["t"] == "live.hello"
        assert payload["ns"] == "greetings"
        assert payload["data"] == {"to": "world"}
        assert isinstance(payload["ts"], int)
        # platform changes arrive too: a KV write is a kv.put event
        assert http.put("/api/kv/sse-ns/sse-key", json={"v": 1}).status_code == 200
        kv = sse.until(lambda e: e.get("event") == "kv.put")
        assert json.loads(kv["data"])["k"] == "sse-key"
        assert json.loads(kv["data"])["data"]["value"] == {"v": 1}


def test_sse_since_replays_what_was_missed(http: httpx.Client, stream_client: httpx.Client) -> None:
    first = publish(http, t="replay.a", data=1)
    second = publish(http, t="replay.b", data=2)
    third = publish(http, t="replay.c", data=3)
    with stream_client.stream("GET", "/api/events/stream", params={"since": first}) as response:
        sse = SSE(response)
        replayed = sse.until(lambda e: e.get("event", "").startswith("replay."))
        assert (replayed["event"], replayed["id"]) == ("replay.b", str(second))
        assert sse.next_event()["id"] == str(third)
        live = publish(http, t="replay.d", data=4)
        assert sse.until(lambda e: e.get("event", "").startswith("replay."))["id"] == str(live)
    # Last-Event-ID (what an EventSource sends when it reconnects) works like ?since=
    with stream_client.stream(
        "GET", "/api/events/stream", headers={"Last-Event-ID": str(second)}
    ) as response:
        sse = SSE(response)
        assert sse.until(lambda e: e.get("event", "").startswith("replay."))["id"] == str(third)


def test_sse_filters_by_type(http: httpx.Client, stream_client: httpx.Client) -> None:
    with stream_client.stream(
        "GET", "/api/events/stream", params={"t": "filtered.yes", "since": 0}
    ) as response:
        sse = SSE(response)
        publish(http, t="filtered.no", data=0)
        wanted = publish(http, t="filtered.yes", data=1)
        event = sse.next_event()
        assert (event["event"], event["id"]) == ("filtered.yes", str(wanted))


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{bad", "malformed JSON"),
        (b"[]", "object"),
        (b"{}", "'t'"),
        (b'{"t": ""}', "'t'"),
        (b'{"t": 5}', "'t'"),
        (b'{"t": "x", "extra": 1}', "extra"),
        (b'{"t": "x", "r": 5}', "'r'"),
        (b'{"t": "x", "ns": ["a"]}', "'ns'"),
        (b'{"t": "x\\nevent: forged"}', "control"),
        (b'{"t": "x\\r"}', "control"),
    ],
)
def test_bad_events_are_400_and_publish_nothing(
    http: httpx.Client, body: bytes, needle: str
) -> None:
    quiet(http)  # what earlier tests' events set going is written
    before = http.get("/api/events", params={"limit": 1}).json()
    assert_error(http.post("/api/events", content=body), 400, needle)
    assert http.get("/api/events", params={"limit": 1}).json() == before


def test_bad_stream_parameters_are_400(http: httpx.Client) -> None:
    assert_error(http.get("/api/events/stream", params={"since": "yesterday"}), 400, "since")
    assert_error(http.get("/api/events/stream", params={"since": "-3"}), 400, "since")
    assert_error(http.post("/api/events/stream"), 405)
