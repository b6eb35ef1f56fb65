"""The services' read methods the host's API and dashboard use instead of their state objects:
``kv.get_raw``/``namespace_sizes``, ``database.collection_stats``, ``storage.list(after=)``,
``realtime.history_length``/``subscribe``/``unsubscribe``, ``stream.held``. Each sees
other processes' writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from platform_shim.platform import Platform, open_client
from platform_shim.runtime import open_platform
from platform_shim.services.database import CollectionStats
from platform_shim.services.realtime_state import HistoryConfig
from platform_shim.testing import FakeClock


@pytest.fixture
def other(data_dir: Path, clock: FakeClock, platform: Platform) -> Iterator[Platform]:
    """A second process's platform on the same folder (opened after ``platform``)."""
    client = open_client(data_dir, clock=clock)
    yield client
    client.close()


# ------------------------------------------------------------------------------------- KV


async def test_get_raw_tells_a_stored_null_from_a_missing_key(
    platform: Platform, clock: FakeClock
) -> None:
    kv = platform.kv
    await kv.put("ns", "null", None)
    await kv.put("ns", "doc", {"b": [1, 2], "a": "x"})
    await kv.put("ns", "brief", 1, ttl=5)
    assert await kv.get("ns", "null") is None
    assert await kv.get_raw("ns", "null") == b"null"
    assert await kv.get_raw("ns", "missing") is None
    assert await kv.get_raw("other", "doc") is None
    raw = await kv.get_raw("ns", "doc")
    assert isinstance(raw, bytes) and raw == b'{"b":[1,2],"a":"x"}'
    assert await kv.get_raw("ns", "brief") == b"1"
    clock.advance("5s")
    assert await kv.get_raw("ns", "brief") is None  # expired reads as missing, as get() does
    with pytest.raises(ValueError, match="key must be a non-empty string"):
        await kv.get_raw("ns", "")


async def test_namespace_sizes_counts_keys_per_namespace(
    platform: Platform, other: Platform
) -> None:
    kv = platform.kv
    assert await kv.namespace_sizes() == {}
    for key in ("a", "b", "c"):
        await kv.put("zeta", key, 1)
    await kv.put("alpha", "only", 1)
    await kv.put("gone", "k", 1)
    await kv.delete("gone", "k")  # an emptied namespace is not listed
    await other.kv.put("beta", "from-another-process", 1)
    sizes = await kv.namespace_sizes()
    assert sizes == {"alpha": 1, "beta": 1, "zeta": 3}
    assert list(sizes) == ["alpha", "beta", "zeta"]  # by name
    assert await other.kv.get_raw("zeta", "a") == b"1"


# -------------------------------------------------------------------------------- database


async def test_collection_stats(platform: Platform, other: Platform) -> None:
    db = platform.database
    assert await db.collection_stats() == []
    await db.insert_many("users", [{"name": "ann"}, {"name": "bob"}])
    await db.create_index("users", {"keys": {"name": 1}, "unique": True})
    await db.insert_one("emptied", {"_id": "x"})
    await db.delete_one("emptied", {"_id": "x"})
    await other.database.insert_one("audit", {"what": "from another process"})
    assert await db.collection_stats() == [
        CollectionStats("audit", documents=1, indexes=1),
        CollectionStats("emptied", documents=0, indexes=1),  # still a collection, as before
        CollectionStats("users", documents=2, indexes=2),  # _id_ and name
    ]


# --------------------------------------------------------------------------------- storage


async def test_storage_list_pages_after_a_key(platform: Platform, other: Platform) -> None:
    storage = platform.storage
    for name in ("c", "a", "e", "b", "d"):
        await storage.put(f"docs/{name}.txt", name)
    await other.storage.put("docs/f.txt", "f")
    await storage.put("elsewhere/a.txt", "x")

    async def keys(**options: Any) -> list[str]:
        return [o["key"] for o in await storage.list(**options)]

    assert await keys(prefix="docs/", after="docs/b.txt") == [f"docs/{n}.txt" for n in "cdef"]
    assert await keys(prefix="docs/", after="docs/b.txt", limit=2) == ["docs/c.txt", "docs/d.txt"]
    assert await keys(prefix="docs/", after="docs/bb") == [f"docs/{n}.txt" for n in "cdef"]
    assert await keys(prefix="docs/", after="docs/f.txt") == []
    assert await keys(after="docs/f.txt") == ["elsewhere/a.txt"]
    assert await keys(prefix="docs/", after="") == [f"docs/{n}.txt" for n in "abcdef"]
    [first] = await storage.list("docs/", 1, after="docs/a.txt")
    assert first == {
        "key": "docs/b.txt",
        "size": 1,
        "contentType": "text/plain; charset=utf-8",
        "lastModified": first["lastModified"],
        "metadata": None,
    }
    with pytest.raises(ValueError, match="'after' must be a string"):
        await storage.list(after=5)  # type: ignore[arg-type]


# -------------------------------------------------------------------------------- realtime


async def test_history_length(data_dir: Path, clock: FakeClock) -> None:
    kept = HistoryConfig(("chat:*",), max_messages=3)
    async with open_platform(data_dir, clock=clock, realtime_history=kept) as platform:
        rt = platform.realtime
        assert await rt.history_length("chat:lobby") == 0
        await rt.publish("chat:lobby", 1)
        await rt.publish("cursor", {"x": 1})  # not kept
        assert await rt.history_length("chat:lobby") == 1
        assert await rt.history_length("cursor") == 0
        client = open_client(data_dir, clock=clock)
        try:
            for i in range(4):
                await client.realtime.publish("chat:lobby", i)
            assert await client.realtime.history_length("chat:lobby") == 3  # at most max
        finally:
            client.close()
        assert await rt.history_length("chat:lobby") == 3


async def test_subscribe_and_unsubscribe(platform: Platform) -> None:
    rt = platform.realtime
    first: list[dict[str, Any]] = []
    second: list[dict[str, Any]] = []
    rt.subscribe(first.append)
    rt.subscribe(second.append)
    await rt.publish("room", "hello")
    await rt.presence.join("room", "ann")
    assert [(e["event"], e["data"]) for e in first] == [
        ("message", "hello"),
        ("presence:join", None),
    ]
    assert second == first
    rt.unsubscribe(first.append)
    rt.unsubscribe(first.append)  # not subscribed any more: nothing happens
    await rt.publish("room", "again")
    assert len(first) == 2
    assert [e["data"] for e in second] == ["hello", None, "again"]


# ---------------------------------------------------------------------------------- stream


async def test_held_finds_an_event_by_id(platform: Platform, other: Platform) -> None:
    stream = platform.stream
    first = await platform.events.publish("order.placed", {"n": 1})
    second = await other.events.publish("order.paid", {"n": 1})
    stream.fresh()
    held = stream.held(second)
    assert held is not None and (held.id, held.t) == (second, "order.paid")
    found = stream.held(first)
    assert found is not None and found.t == "order.placed"
    assert stream.held(second + 1) is None
    assert stream.held(0) is None
