"""A damaged id or snapshot header costs its own line, never the intact records after it.

The stream refuses an event whose id does not follow the last one it applied (ids must stay
strictly increasing for every consumer). Before the fix, a single line claiming a high id made
every intact line after it "out of order": ten KV puts with the first line's id changed from 1
to 9 read back as k1 and k10 only, and compaction then dropped k2..k9 for good. A snapshot whose
header line was damaged or missing lost its first record (it was read as the header).
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from platform_shim.platform import Platform, open_client
from platform_shim.services.compaction import compact_stream
from platform_shim.testing import FakeClock
from tests.chaos.test_storage_faults import store_warnings


async def ten_puts(data_dir: Path, clock: FakeClock) -> None:
    platform = open_client(data_dir, clock=clock)
    try:
        for i in range(1, 11):
            await platform.kv.put("ns", f"k{i}", i)
    finally:
        platform.close()


def edit_line(path: Path, number: int, claim: object) -> None:
    """Change the id written on line ``number`` to ``claim`` (as JSON text, any size)."""
    lines = path.read_bytes().split(b"\n")
    text = str(claim).encode() if isinstance(claim, int) else orjson.dumps(claim)
    lines[number - 1], count = re.subn(rb'^\{"id":[0-9]+', b'{"id":' + text, lines[number - 1])
    assert count == 1
    path.write_bytes(b"\n".join(lines))


async def keys(platform: Platform) -> list[str]:
    return sorted(
        (k["name"] for k in (await platform.kv.list("ns"))["keys"]), key=lambda k: int(k[1:])
    )


async def test_a_line_claiming_a_high_id_costs_itself_alone(
    data_dir: Path, clock: FakeClock
) -> None:
    await ten_puts(data_dir, clock)
    events = data_dir / "events.jsonl"
    edit_line(events, 1, 9)  # the reproduction
    with store_warnings() as warnings:
        platform = open_client(data_dir, clock=clock)
    try:
        assert await keys(platform) == [f"k{i}" for i in range(2, 11)]
        ids = [event.id for event in platform.stream.events]
        assert ids == list(range(2, 11))
        assert any(w.startswith(f"{events}:1: ") and "out of order" in w for w in warnings), (
            warnings
        )
        # Only the damaged line is reported, not the intact ones after it.
        assert not any(f"{events}:{n}:" in w for w in warnings for n in range(2, 11))
        # The next event follows the highest id kept, and a reload agrees.
        assert await platform.events.publish("after") == 11
        await compact_stream(platform.store, platform.stream, storage=platform.storage_state)
    finally:
        platform.close()
    again = open_client(data_dir, clock=clock)
    try:
        assert await keys(again) == [f"k{i}" for i in range(2, 11)]
        ids = [event.id for event in again.stream.events]
        assert ids == sorted(set(ids)) and ids[-1] == 11
    finally:
        again.close()


# Any claim but the next line's own id (5): two lines claiming one id cannot both be kept, and
# the earlier is (module docstring of platform_shim/store/order.py).
@pytest.mark.parametrize("claim", [10**9, 9, 0, -5, 3, 2, "7", None, 2.0, 2**70])
async def test_any_damaged_id_in_the_middle_loses_no_other_line(
    data_dir: Path, clock: FakeClock, claim: object
) -> None:
    await ten_puts(data_dir, clock)
    edit_line(data_dir / "events.jsonl", 4, claim)
    platform = open_client(data_dir, clock=clock)
    try:
        got = await keys(platform)
        assert set(got) >= {f"k{i}" for i in range(1, 11) if i != 4}
        ids = [event.id for event in platform.stream.events]
        assert ids == sorted(set(ids))
    finally:
        platform.close()


async def test_a_duplicated_line_is_applied_once(data_dir: Path, clock: FakeClock) -> None:
    await ten_puts(data_dir, clock)
    events = data_dir / "events.jsonl"
    lines = events.read_bytes().split(b"\n")
    # A copy of line 3 pasted after line 6, and of the last line at the end.
    lines[6:6] = [lines[2]]
    lines[-1:] = [lines[-2], b""]
    events.write_bytes(b"\n".join(lines))
    with store_warnings() as warnings:
        platform = open_client(data_dir, clock=clock)
    try:
        assert await keys(platform) == [f"k{i}" for i in range(1, 11)]
        assert [event.id for event in platform.stream.events] == list(range(1, 11))
        assert any(f"{events}:7: " in w for w in warnings), warnings
        assert any(f"{events}:12: " in w for w in warnings), warnings
    finally:
        platform.close()


def _header_damage(kind: str, header: bytes) -> list[bytes]:
    return {
        "missing": [],
        "garbled": [header[:7] + b"\xff#" + header[9:]],
        "not a header": [b'{"garbage": true}'],
        "bad checkpoint": [b'{"checkpoint": "12", "format": 1}'],
        "empty line": [b""],
    }[kind]


@pytest.mark.parametrize(
    "kind", ["missing", "garbled", "not a header", "bad checkpoint", "empty line"]
)
async def test_a_damaged_snapshot_header_costs_no_record(
    data_dir: Path, clock: FakeClock, kind: str
) -> None:
    platform = open_client(data_dir, clock=clock)
    try:
        for i in range(1, 6):
            await platform.kv.put("ns", f"k{i}", {"v": i})
            await platform.database.insert_one("docs", {"_id": f"d{i}", "n": i})
        await platform.database.create_index("docs", {"keys": {"n": 1}, "unique": True})
        await compact_stream(platform.store, platform.stream, storage=platform.storage_state)
        # after the snapshot: an overwrite, a delete and a new key, which must win over the
        # snapshot's values even when its checkpoint is lost and held events are replayed
        await platform.kv.put("ns", "k1", {"v": "new"})
        await platform.kv.delete("ns", "k2")
        await platform.kv.put("ns", "k6", {"v": 6})
        await platform.database.update_one("docs", {"_id": "d1"}, {"$set": {"n": 10}})
        await platform.database.delete_one("docs", {"_id": "d2"})
    finally:
        platform.close()
    for name in ("kv", "db"):
        path = data_dir / f"{name}.jsonl"
        lines = path.read_bytes().split(b"\n")
        assert b"checkpoint" in lines[0]
        path.write_bytes(b"\n".join(_header_damage(kind, lines[0]) + lines[1:]))
    with store_warnings() as warnings:
        reopened = open_client(data_dir, clock=clock)
    try:
        assert await keys(reopened) == ["k1", "k3", "k4", "k5", "k6"]
        assert await reopened.kv.get("ns", "k1") == {"v": "new"}
        docs = await reopened.database.find("docs", {}, sort={"_id": 1})
        assert [(d["_id"], d["n"]) for d in docs] == [("d1", 10), ("d3", 3), ("d4", 4), ("d5", 5)]
        # the unique index came through the replay intact
        assert [i["name"] for i in await reopened.database.list_indexes("docs")] != []
        assert await reopened.database.find_one("docs", {"n": 10}) is not None
        if kind != "empty line":
            assert any("kv.jsonl" in w for w in warnings), warnings
            assert any("db.jsonl" in w for w in warnings), warnings
    finally:
        reopened.close()
