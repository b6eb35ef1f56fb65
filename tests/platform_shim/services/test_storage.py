"""Object storage through ``platform.storage``: bytes, metadata, listing, keys, blobs, events."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from platform_shim.platform import Platform, open_client
from platform_shim.testing import FakeClock
from tests.support.eventlog import EVENT_KEYS, of_type, raw


def blob_files(data_dir: Path) -> list[Path]:
    blobs = data_dir / "blobs"
    return sorted(p for p in blobs.rglob("*") if p.is_file()) if blobs.exists() else []


async def test_put_get_bytes_and_str(platform: Platform) -> None:
    await platform.storage.put("files/a.bin", b"\x00\x01\xff")
    await platform.storage.put("files/b.txt", "héllo")
    await platform.storage.put("files/c", bytearray(b"ba"))
    await platform.storage.put("files/d", memoryview(b"mv"))
    assert await platform.storage.get("files/a.bin") == b"\x00\x01\xff"
    assert await platform.storage.get("files/b.txt") == "héllo".encode()
    assert await platform.storage.get("files/c") == b"ba"
    assert await platform.storage.get("files/d") == b"mv"
    assert await platform.storage.get("files/missing") is None
    assert await platform.storage.get_metadata("files/missing") is None
    await platform.storage.put("empty", b"")
    assert await platform.storage.get("empty") == b""


async def test_large_object_round_trips(platform: Platform) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB: read off the loop
    await platform.storage.put("big", data)
    assert await platform.storage.get("big") == data
    assert (await platform.storage.get_metadata("big") or {})["size"] == len(data)


async def test_metadata(platform: Platform, clock: FakeClock) -> None:
    await platform.storage.put("a.bin", b"1234")
    assert await platform.storage.get_metadata("a.bin") == {
        "size": 4,
        "contentType": "application/octet-stream",
        "lastModified": clock.now_ms(),
        "metadata": None,
    }
    clock.advance("1m")
    await platform.storage.put("é.txt", "é")
    meta = await platform.storage.get_metadata("é.txt")
    assert meta is not None
    assert meta["size"] == 2  # bytes, not characters
    assert meta["contentType"] == "text/plain; charset=utf-8"
    assert meta["lastModified"] == clock.now_ms()
    user = {"contentType": "image/png", "owner": "u_1", "tags": ["a"]}
    await platform.storage.put("img.png", b"\x89PNG", user)
    meta = await platform.storage.get_metadata("img.png")
    assert meta is not None
    assert meta["contentType"] == "image/png"
    assert meta["metadata"] == user
    meta["metadata"]["owner"] = "mutated"
    user["owner"] = "mutated too"
    assert (await platform.storage.get_metadata("img.png") or {})["metadata"]["owner"] == "u_1"


async def test_bad_data_or_metadata_writes_nothing(platform: Platform, data_dir: Path) -> None:
    with pytest.raises(TypeError, match="k1"):
        await platform.storage.put("k1", 123)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="k2"):
        await platform.storage.put("k2", b"x", {"when": {1, 2}})
    with pytest.raises(TypeError, match="k3"):
        await platform.storage.put("k3", b"x", {"contentType": 5})
    with pytest.raises(TypeError, match="k4"):
        await platform.storage.put("k4", b"x", ["not", "an", "object"])  # type: ignore[arg-type]
    assert raw(data_dir) == b""
    assert blob_files(data_dir) == []
    assert await platform.storage.list() == []


async def test_overwrite_replaces_bytes_and_metadata(platform: Platform, clock: FakeClock) -> None:
    await platform.storage.put("k", b"old", {"contentType": "text/csv", "v": 1})
    clock.advance("5s")
    await platform.storage.put("k", b"newer")
    assert await platform.storage.get("k") == b"newer"
    assert await platform.storage.get_metadata("k") == {
        "size": 5,
        "contentType": "application/octet-stream",
        "lastModified": clock.now_ms(),
        "metadata": None,
    }
    assert [o["key"] for o in await platform.storage.list()] == ["k"]


async def test_list_in_key_order_with_prefix_and_limit(
    platform: Platform, clock: FakeClock
) -> None:
    for key in ["b/2", "a", "b/10", "b/1", "c", "ba", "B"]:
        await platform.storage.put(key, key)
    listed = await platform.storage.list()
    assert [o["key"] for o in listed] == ["B", "a", "b/1", "b/10", "b/2", "ba", "c"]
    assert listed[0] == {
        "key": "B",
        "size": 1,
        "contentType": "text/plain; charset=utf-8",
        "lastModified": clock.now_ms(),
        "metadata": None,
    }
    assert [o["key"] for o in await platform.storage.list(prefix="b/")] == ["b/1", "b/10", "b/2"]
    assert [o["key"] for o in await platform.storage.list(prefix="b", limit=2)] == ["b/1", "b/10"]
    assert [o["key"] for o in await platform.storage.list(limit=1)] == ["B"]
    assert await platform.storage.list(prefix="zzz") == []
    with pytest.raises(ValueError, match="limit"):
        await platform.storage.list(limit=-1)
    with pytest.raises(ValueError, match="prefix"):
        await platform.storage.list(prefix=3)  # type: ignore[arg-type]


async def test_delete(platform: Platform, data_dir: Path) -> None:
    await platform.storage.put("a/b", b"x")
    await platform.storage.put("a/c", b"y")
    await platform.storage.delete("a/b")
    assert await platform.storage.get("a/b") is None
    assert await platform.storage.get_metadata("a/b") is None
    assert [o["key"] for o in await platform.storage.list()] == ["a/c"]
    before = raw(data_dir)
    await platform.storage.delete("a/b")
    await platform.storage.delete("never")
    assert raw(data_dir) == before
    (deleted,) = of_type(data_dir, "storage.delete")
    assert set(deleted) == EVENT_KEYS
    assert (deleted["r"], deleted["ns"], deleted["k"]) == ("storage", None, "a/b")


async def test_put_is_one_event(platform: Platform, data_dir: Path, clock: FakeClock) -> None:
    await platform.storage.put("docs/r.txt", "report", {"owner": "u"})
    (put,) = of_type(data_dir, "storage.put")
    assert set(put) == EVENT_KEYS
    assert (put["r"], put["k"], put["ts"]) == ("storage", "docs/r.txt", clock.now_ms())
    assert put["data"]["size"] == 6
    assert put["data"]["contentType"] == "text/plain; charset=utf-8"
    assert put["data"]["metadata"] == {"owner": "u"}


HOSTILE = [
    "../x",
    "a/../../b",
    "/etc/passwd",
    "a\\b",
    "a\x00b",
    "a//b",
    "C:foo",
    "c:\\windows",
    ".",
    "..",
    "a/./b",
    "a/",
    "",
    "x" * 1025,
]


@pytest.mark.parametrize("key", HOSTILE)
async def test_hostile_keys_are_refused(platform: Platform, data_dir: Path, key: str) -> None:
    with pytest.raises(ValueError, match="storage key"):
        await platform.storage.put(key, b"pwned")
    with pytest.raises(ValueError, match="storage key"):
        await platform.storage.get(key)
    with pytest.raises(ValueError, match="storage key"):
        await platform.storage.get_metadata(key)
    with pytest.raises(ValueError, match="storage key"):
        await platform.storage.delete(key)
    assert raw(data_dir) == b""
    assert blob_files(data_dir) == []
    assert not (data_dir.parent / "x").exists()
    assert not (data_dir.parent / "b").exists()


@pytest.mark.parametrize("key", [None, 5, b"bytes"])
async def test_non_string_keys_are_refused(platform: Platform, key: Any) -> None:
    with pytest.raises(ValueError, match="storage key"):
        await platform.storage.put(key, b"x")


async def test_blobs_are_content_addressed(platform: Platform, data_dir: Path) -> None:
    payload = b"the same bytes" * 100
    await platform.storage.put("one", payload)
    await platform.storage.put("two", payload)
    await platform.storage.put("nested/three", payload.decode())
    files = blob_files(data_dir)
    digest = hashlib.sha256(payload).hexdigest()
    assert [f.name for f in files] == [digest]
    assert files[0].read_bytes() == payload
    await platform.storage.put("other", b"different")
    assert len(blob_files(data_dir)) == 2
    # deleting one key keeps the bytes the others still name
    await platform.storage.delete("one")
    assert await platform.storage.get("two") == payload


async def test_objects_survive_a_reopen(
    platform: Platform, data_dir: Path, clock: FakeClock
) -> None:
    await platform.storage.put("a", b"1", {"contentType": "x/y"})
    await platform.storage.put("b", b"2")
    await platform.storage.delete("b")
    reopened = open_client(data_dir, clock=clock)
    try:
        assert await reopened.storage.get("a") == b"1"
        assert await reopened.storage.get("b") is None
        assert await reopened.storage.list() == await platform.storage.list()
    finally:
        reopened.close()
