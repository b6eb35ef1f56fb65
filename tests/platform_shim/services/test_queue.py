"""The queue's producer side through ``platform.queue.send``: events and pending state."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from platform_shim.platform import Platform, open_client
from platform_shim.testing import FakeClock
from tests.support.eventlog import EVENT_KEYS, of_type, raw


async def test_send_returns_an_id_and_appends_queue_sent(
    platform: Platform, data_dir: Path, clock: FakeClock
) -> None:
    message_id = await platform.queue.send("emails", {"to": "a@b.c", "n": [1, 2]})
    assert isinstance(message_id, str)
    assert message_id
    (event,) = of_type(data_dir, "queue.sent")
    assert set(event) == EVENT_KEYS
    assert (event["r"], event["ns"], event["k"]) == ("queue", "emails", message_id)
    now = clock.now_ms()
    assert event["ts"] == now
    assert event["data"] == {
        "id": message_id,
        "payload": {"to": "a@b.c", "n": [1, 2]},
        "enqueuedAt": now,
        "deliverAt": now,
    }


async def test_ids_are_unique(platform: Platform) -> None:
    ids = [await platform.queue.send("q", i) for i in range(20)]
    assert len(set(ids)) == 20


@pytest.mark.parametrize(
    ("delay", "ms"),
    [
        (None, 0),
        (0, 0),
        (1500, 1500),
        (2.5, 3),
        ("30s", 30_000),
        ("500ms", 500),
        ("2h", 7_200_000),
        (timedelta(minutes=1), 60_000),
    ],
)
async def test_delay_forms(
    platform: Platform, data_dir: Path, clock: FakeClock, delay: Any, ms: int
) -> None:
    await platform.queue.send("q", "p", delay=delay)
    (event,) = of_type(data_dir, "queue.sent")
    assert event["data"]["deliverAt"] - event["data"]["enqueuedAt"] == ms
    assert event["data"]["enqueuedAt"] == clock.now_ms()


@pytest.mark.parametrize("delay", [-1, "-5s", "5w", "soon", True, [1], float("inf")])
async def test_bad_delay_is_a_value_error(platform: Platform, data_dir: Path, delay: Any) -> None:
    with pytest.raises(ValueError, match="delay"):
        await platform.queue.send("q", "p", delay=delay)
    assert raw(data_dir) == b""


@pytest.mark.parametrize("name", ["", None, 7])
async def test_bad_name_is_a_value_error(platform: Platform, data_dir: Path, name: Any) -> None:
    with pytest.raises(ValueError, match="queue name"):
        await platform.queue.send(name, "p")
    assert raw(data_dir) == b""


@pytest.mark.parametrize("payload", [{1, 2}, object(), {"when": timedelta(1)}])
async def test_non_json_payload_is_a_type_error(
    platform: Platform, data_dir: Path, payload: Any
) -> None:
    with pytest.raises(TypeError, match="emails"):
        await platform.queue.send("emails", payload)
    assert raw(data_dir) == b""
    assert "emails" not in platform.queue_state.queues


async def test_pending_state_holds_the_message(
    platform: Platform, data_dir: Path, clock: FakeClock
) -> None:
    payload: dict[str, Any] = {"job": 1}
    first = await platform.queue.send("jobs", payload, delay="10s")
    payload["job"] = "mutated after send"
    second = await platform.queue.send("jobs", None)
    other = await platform.queue.send("other", [1])
    now = clock.now_ms()
    pending = platform.queue_state.queues["jobs"]
    assert list(pending) == [first, second]
    assert pending[first] == {
        "id": first,
        "payload": {"job": 1},
        "enqueuedAt": now,
        "deliverAt": now + 10_000,
    }
    assert pending[second]["payload"] is None
    assert list(platform.queue_state.queues["other"]) == [other]
    reopened = open_client(data_dir, clock=clock)
    try:
        assert reopened.queue_state.queues == platform.queue_state.queues
    finally:
        reopened.close()
