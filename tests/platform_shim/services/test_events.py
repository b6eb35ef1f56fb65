"""Custom events through ``platform.events.publish``, and the ids of the shared stream."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from platform_shim.platform import Platform, open_client
from platform_shim.testing import FakeClock
from tests.support.eventlog import EVENT_KEYS, raw, read_events
from tests.support.procs import spawn
from tests.support.reap import finish, reaping


async def test_publish_defaults(platform: Platform, data_dir: Path, clock: FakeClock) -> None:
    eid = await platform.events.publish("auth.user.registered", {"userId": "u_1"})
    (event,) = read_events(data_dir)
    assert set(event) == EVENT_KEYS
    assert event == {
        "id": eid,
        "t": "auth.user.registered",
        "r": "custom",
        "ns": None,
        "k": None,
        "data": {"userId": "u_1"},
        "ts": clock.now_ms(),
    }


async def test_publish_with_resource_namespace_key(platform: Platform, data_dir: Path) -> None:
    eid = await platform.events.publish("billing.paid", [1, 2], r="billing", ns="acct", k="inv-9")
    no_data = await platform.events.publish("ping")
    first, second = read_events(data_dir)
    assert (first["id"], first["r"], first["ns"], first["k"], first["data"]) == (
        eid,
        "billing",
        "acct",
        "inv-9",
        [1, 2],
    )
    assert (second["id"], second["data"], second["r"]) == (no_data, None, "custom")
    assert no_data > eid
    recent = await platform.events.recent()
    assert [e["id"] for e in recent] == [eid, no_data]


@pytest.mark.parametrize("t", ["", None, 5])
async def test_bad_type_is_a_value_error(platform: Platform, data_dir: Path, t: Any) -> None:
    with pytest.raises(ValueError, match="event type"):
        await platform.events.publish(t, {})
    assert raw(data_dir) == b""


@pytest.mark.parametrize("t", ["kv.put", "db.document.created", "storage.put", "queue.sent"])
async def test_service_event_types_cannot_be_forged(
    platform: Platform, data_dir: Path, clock: FakeClock, t: str
) -> None:
    # The services' state is read back from these types: a forged one would change state in
    # every process that reloads the stream, and not in this one.
    with pytest.raises(ValueError, match="reserved"):
        await platform.events.publish(t, {"value": 1}, r=t.split(".")[0], ns="n", k="k")
    assert raw(data_dir) == b""
    await platform.kv.put("n", "after", 1)
    reopened = open_client(data_dir, clock=clock)
    try:
        assert await reopened.kv.get("n", "after") == 1
    finally:
        reopened.close()


@pytest.mark.parametrize(
    "fields", [{"r": ""}, {"r": 5}, {"ns": 5}, {"k": ["x"]}], ids=["r-empty", "r", "ns", "k"]
)
async def test_bad_fields_are_value_errors(
    platform: Platform, data_dir: Path, fields: dict[str, Any]
) -> None:
    with pytest.raises(ValueError, match="event"):
        await platform.events.publish("x.y", None, **fields)
    assert raw(data_dir) == b""


@pytest.mark.parametrize("data", [{1, 2}, dt.datetime.now(dt.UTC), object()])
async def test_non_json_data_is_a_type_error(platform: Platform, data_dir: Path, data: Any) -> None:
    with pytest.raises(TypeError, match=r"my\.event"):
        await platform.events.publish("my.event", data)
    assert raw(data_dir) == b""


async def test_ids_increase_across_services(platform: Platform, data_dir: Path) -> None:
    ids = [await platform.events.publish("a")]
    await platform.kv.put("ns", "k", 1)
    await platform.db.insert_many("c", [{}, {}])
    await platform.storage.put("s", b"x")
    await platform.queue.send("q", 1)
    ids.append(await platform.events.publish("b"))
    results = await asyncio.gather(
        platform.events.publish("c"), platform.kv.put("ns", "k2", 2), platform.events.publish("d")
    )
    ids += [results[0], results[2]]
    events = read_events(data_dir)
    assert [e["id"] for e in events] == list(range(1, 11))
    assert [e["t"] for e in events] == [
        "a",
        "kv.put",
        "db.document.created",
        "db.document.created",
        "storage.put",
        "queue.sent",
        "b",
        "c",
        "kv.put",
        "d",
    ]
    assert ids == [1, 7, 8, 10]


async def test_ids_increase_across_two_clients(
    platform: Platform, data_dir: Path, clock: FakeClock
) -> None:
    other = open_client(data_dir, clock=clock)
    try:
        for round_ in range(5):
            mine, theirs, _ = await asyncio.gather(
                platform.events.publish("mine", round_),
                other.events.publish("theirs", round_),
                other.kv.put("ns", f"k{round_}", round_),
            )
            assert mine != theirs
        ids = [e["id"] for e in read_events(data_dir)]
        assert ids == list(range(1, 16))
        await asyncio.sleep(0)
        assert [e["id"] for e in await platform.events.recent()] == ids
    finally:
        other.close()


def test_ids_increase_across_processes(data_dir: Path) -> None:
    procs = [spawn("client_writer", str(data_dir), "publish", "150") for _ in range(3)]
    outputs: list[list[int]] = []
    with reaping(*procs):
        for proc in procs:
            text, _ = finish(proc)
            outputs.append([int(line) for line in text.split()])
    events = read_events(data_dir)
    ids = [e["id"] for e in events]
    assert ids == list(range(1, 451))
    for out in outputs:
        assert len(out) == 150
        assert out == sorted(out)
    assert sorted(i for out in outputs for i in out) == ids
    by_id = {e["id"]: e for e in events}
    for out in outputs:
        pids = {by_id[i]["data"]["pid"] for i in out}
        assert len(pids) == 1
        assert [by_id[i]["data"]["i"] for i in out] == list(range(150))


async def test_a_line_no_service_can_read_still_takes_its_id(
    data_dir: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    first = open_client(data_dir, clock=clock)
    try:
        await first.kv.put("ns", "before", 0)
    finally:
        first.close()
    # a hand edit: an event of a service's type whose data that service cannot read
    with (data_dir / "events.jsonl").open("ab") as file:
        file.write(b'{"id":2,"t":"kv.put","r":"kv","ns":"ns","k":"x","data":{},"ts":0}\n')
    second = open_client(data_dir, clock=clock)
    try:
        assert any("events.jsonl:2" in message for message in caplog.messages)
        await second.kv.put("ns", "after", 1)
    finally:
        second.close()
    assert [e["id"] for e in read_events(data_dir)] == [1, 2, 3]
    third = open_client(data_dir, clock=clock)
    try:
        assert await third.kv.get("ns", "after") == 1
        assert await third.kv.get("ns", "before") == 0
        assert await third.kv.get("ns", "x") is None
    finally:
        third.close()
