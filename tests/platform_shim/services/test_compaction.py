"""Compaction of the event stream: nothing live is lost, and a crash at any point loses nothing."""

from __future__ import annotations

import asyncio
import copy
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from platform_shim.errors import DuplicateKey
from platform_shim.platform import Platform, open_client
from platform_shim.services import kvsnapshot
from platform_shim.services.compaction import compact_stream
from platform_shim.testing import FakeClock
from tests.support.compactor import blob
from tests.support.eventlog import read_events
from tests.support.procs import spawn
from tests.support.reap import read_line, reaping


async def compact(platform: Platform) -> Any:
    return await compact_stream(platform.store, platform.stream, storage=platform.storage_state)


async def state_of(platform: Platform) -> dict[str, Any]:
    """Everything a user can read back, for comparing two platforms."""
    await asyncio.sleep(0)
    kv: dict[str, Any] = {}
    for ns in ("plain", "ttl", "gone"):
        listed = await platform.kv.list(ns)
        kv[ns] = [
            (k["name"], k["expiration"], await platform.kv.get(ns, k["name"]))
            for k in listed["keys"]
        ]
    db = {
        coll: (await platform.db.find(coll), await platform.db.list_indexes(coll))
        for coll in ("users", "empty")
    }
    objects = await platform.storage.list()
    storage = [(o, await platform.storage.get(o["key"])) for o in objects]
    return {
        "kv": kv,
        "db": db,
        "storage": storage,
        "queue": orjson.loads(orjson.dumps(platform.queue_state.queues)),
    }


async def fill(platform: Platform, clock: FakeClock) -> None:
    # lots of history over a small live state, so compaction has something to drop
    for round_ in range(3):
        await asyncio.gather(*(platform.kv.put("plain", f"k{i}", [round_, i]) for i in range(400)))
    await platform.kv.put("ttl", "soon", "short", ttl=5)
    await platform.kv.put("ttl", "later", {"long": True}, ttl=3600)
    await platform.kv.put("gone", "x", 1)
    await platform.kv.delete("gone", "x")
    await platform.kv.delete("plain", "k3")
    await platform.db.create_index("users", {"keys": {"email": 1}, "unique": True})
    await platform.db.create_index("users", {"keys": {"org": 1, "age": -1}, "name": "org_age"})
    await platform.db.create_index("users", {"keys": {"tmp": 1}})
    await platform.db.drop_index("users", "tmp_1")
    await platform.db.insert_many(
        "users", [{"_id": f"u{i}", "email": f"{i}@x", "org": i % 3, "age": i} for i in range(50)]
    )
    await platform.db.update_many("users", {"org": 1}, {"$inc": {"age": 100}})
    await platform.db.delete_many("users", {"org": 2})
    await platform.db.insert_one("empty", {"_id": "e"})
    await platform.db.delete_one("empty", {"_id": "e"})
    await platform.storage.put("a/one.txt", "one", {"owner": "u1"})
    await platform.storage.put("a/two.bin", b"\x00two")
    await platform.storage.put("a/two.bin", b"\x00two, again", {"contentType": "x/y"})
    await platform.storage.put("gone", b"deleted")
    await platform.storage.delete("gone")
    await platform.queue.send("jobs", {"n": 1})
    await platform.queue.send("jobs", {"n": 2}, delay="1h")
    await platform.queue.send("other", None)
    clock.advance("10s")  # "ttl/soon" has expired, unswept


async def test_compaction_keeps_every_live_value(
    platform: Platform, data_dir: Path, clock: FakeClock
) -> None:
    await fill(platform, clock)
    before = await state_of(platform)
    assert [name for name, _, _ in before["kv"]["ttl"]] == ["later"]
    assert len(before["db"]["users"][0]) == 34
    events_before = len(read_events(data_dir))
    size_before = (data_dir / "events.jsonl").stat().st_size

    report = await compact(platform)

    assert report.checkpoint == events_before
    assert report.events_kept <= platform.stream.window
    assert (data_dir / "events.jsonl").stat().st_size < size_before
    for name in ("kv", "db", "storage", "queue"):
        assert (data_dir / f"{name}.jsonl").exists()
    assert await state_of(platform) == before
    reopened = open_client(data_dir, clock=clock)
    try:
        assert await state_of(reopened) == before
        # the snapshot's unique index is enforced, its dropped index is gone
        with pytest.raises(DuplicateKey):
            await reopened.db.insert_one("users", {"email": "0@x"})
        # ids carry on after the checkpoint
        eid = await reopened.events.publish("after.compaction")
        assert eid == events_before + 1
        # the key that expired before compaction is still announced, once
        reopened.kv.start_sweeper()
        clock.advance(0)
        for _ in range(5):
            await asyncio.sleep(0)
        await reopened.stream.log.barrier()
        expired = [e for e in read_events(data_dir) if e["t"] == "kv.expired"]
        assert [(e["ns"], e["k"]) for e in expired] == [("ttl", "soon")]
        reopened.kv.stop_sweeper()
    finally:
        reopened.close()
    # compacting a compacted stream changes nothing either
    await asyncio.sleep(0)
    await compact(platform)
    again = open_client(data_dir, clock=clock)
    try:
        assert await state_of(again) == await state_of(platform)
    finally:
        again.close()


async def test_a_client_open_during_compaction_catches_up(
    platform: Platform, data_dir: Path, clock: FakeClock
) -> None:
    other = open_client(data_dir, clock=clock)
    try:
        await fill(platform, clock)
        await asyncio.sleep(0)
        expected = await state_of(platform)
        assert await state_of(other) == expected
        await compact(platform)
        await other.kv.put("plain", "from-other", 1)  # appends to the new file
        await asyncio.sleep(0)
        assert await platform.kv.get("plain", "from-other") == 1
        await other.kv.delete("plain", "from-other")
        await asyncio.sleep(0)
        assert await state_of(platform) == expected
        assert await state_of(other) == expected
        ids = [e["id"] for e in read_events(data_dir)]
        assert ids == sorted(set(ids))
    finally:
        other.close()


async def test_the_loop_serves_while_compaction_serializes(
    platform: Platform, data_dir: Path, clock: FakeClock
) -> None:
    await fill(platform, clock)
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:  # compaction's serialize step, on its thread, held by the test
        entered.set()
        assert release.wait(60), "the test never released the serializer"

    compacting = asyncio.ensure_future(
        compact_stream(
            platform.store, platform.stream, storage=platform.storage_state, serializing=hold
        )
    )
    assert await asyncio.to_thread(entered.wait, 60)
    # The serializer is blocked; the loop still runs callbacks and acknowledges durable writes.
    ran = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(ran.set_result, True)
    assert await ran
    await platform.kv.put("plain", "during", "written while compacting")
    await platform.db.insert_one("users", {"_id": "late", "email": "late@x", "org": 9, "age": 1})
    await platform.queue.send("jobs", {"n": "late"})
    assert not compacting.done()
    release.set()
    report = await compacting
    during = [e for e in read_events(data_dir) if e["k"] == "during"]
    assert len(during) == 1 and during[0]["id"] > report.checkpoint  # kept after the snapshot
    expected = await state_of(platform)
    assert ("during", None, "written while compacting") in expected["kv"]["plain"]
    reopened = open_client(data_dir, clock=clock)
    try:
        assert await state_of(reopened) == expected
        assert await reopened.db.find_one("users", {"_id": "late"}) is not None
    finally:
        reopened.close()


@pytest.mark.parametrize("restarts", [0, 2])
async def test_a_kv_snapshot_copied_over_many_loop_turns_loads_the_same_state(
    platform: Platform,
    data_dir: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    restarts: int,
) -> None:
    # Tiny chunks: the copy takes dozens of loop turns, and every kind of KV write lands
    # between them (new keys and deletes restart a namespace's copy; after ``restarts`` the
    # rest is copied in one go).
    monkeypatch.setattr(kvsnapshot, "CHUNK", 4)
    monkeypatch.setattr(kvsnapshot, "RESTARTS", restarts)
    await asyncio.gather(*(platform.kv.put("plain", f"k{i:03d}", i) for i in range(200)))
    await asyncio.gather(*(platform.kv.put("ttl", f"t{i}", i, ttl=60 + i) for i in range(30)))
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        entered.set()
        assert release.wait(60)

    compacting = asyncio.ensure_future(
        compact_stream(platform.store, platform.stream, serializing=hold)
    )
    await asyncio.sleep(0)  # the compaction takes the state; its copy starts
    rng = random.Random(restarts)
    writes = []
    for n in range(40):  # one write applied per loop turn, between the copy's chunks
        i = rng.randrange(220)
        choice = n % 4
        if choice == 0:
            write = platform.kv.put("plain", f"k{i:03d}", ["new", n])
        elif choice == 1:
            write = platform.kv.delete("plain", f"k{i:03d}")
        elif choice == 2:
            write = platform.kv.put("ttl", f"t{i % 30}", ["re", n], ttl=1 + n % 3)
        else:
            write = platform.kv.put(f"ns{n % 3}", f"fresh{n}", n)
        writes.append(asyncio.ensure_future(write))
        await asyncio.sleep(0)
    await asyncio.gather(*writes)
    assert await asyncio.to_thread(entered.wait, 60)
    release.set()
    await compacting
    clock.advance("10s")  # some TTLs put during the copy have passed: they read as missing
    expected = {ns: (await platform.kv.list(ns))["keys"] for ns in ("plain", "ttl", "ns0", "ns1")}
    values = {
        ns: [await platform.kv.get(ns, k["name"]) for k in keys] for ns, keys in expected.items()
    }
    reopened = open_client(data_dir, clock=clock)
    try:
        for ns, keys in expected.items():
            assert (await reopened.kv.list(ns))["keys"] == keys, ns
            assert [await reopened.kv.get(ns, k["name"]) for k in keys] == values[ns], ns
        assert reopened.kv_state.spaces == platform.kv_state.spaces
    finally:
        reopened.close()


async def test_unreferenced_old_blobs_are_collected(platform: Platform, data_dir: Path) -> None:
    await platform.storage.put("keep", b"kept bytes")
    await platform.storage.put("replaced", b"old bytes")
    await platform.storage.put("replaced", b"new bytes")
    await platform.storage.put("deleted", b"deleted bytes")
    await platform.storage.delete("deleted")
    await platform.storage.put("young-orphan-key", b"young orphan")
    await platform.storage.delete("young-orphan-key")
    blobs = {p.read_bytes(): p for p in (data_dir / "blobs").rglob("*") if p.is_file()}
    assert len(blobs) == 5
    old = time.time() - 2 * 3600
    for data, path in blobs.items():
        if data != b"young orphan":
            os.utime(path, (old, old))
    report = await compact(platform)
    assert report.blobs_removed == 2
    left = sorted(p.read_bytes() for p in (data_dir / "blobs").rglob("*") if p.is_file())
    assert left == [b"kept bytes", b"new bytes", b"young orphan"]
    assert await platform.storage.get("keep") == b"kept bytes"
    assert await platform.storage.get("replaced") == b"new bytes"


# ------------------------------------------------------------------------ crash test


class Model:
    """What the compactor acknowledged, folded the way the services fold it."""

    def __init__(self) -> None:
        self.kv: dict[str, Any] = {}
        self.docs: dict[str, int] = {}
        self.objects: dict[str, list[Any]] = {}
        self.queue: set[tuple[str, int]] = set()

    def key_of(self, op: dict[str, Any]) -> tuple[str, str]:
        kind = op["kind"]
        if kind.startswith("kv"):
            return "kv", op["key"]
        if kind in ("ins", "upd", "del"):
            return "docs", op["id"]
        if kind.startswith("st"):
            return "objects", f"obj/{op['key']}"
        return "queue", str(op["seq"])

    def apply(self, op: dict[str, Any], tag: str) -> None:
        kind, seq = op["kind"], op["seq"]
        if kind in ("kv", "kvttl"):
            self.kv[op["key"]] = {"tag": tag, "seq": seq}
        elif kind == "kvdel":
            self.kv.pop(op["key"], None)
        elif kind == "ins":
            self.docs[op["id"]] = seq
        elif kind == "upd":
            if op["id"] in self.docs:
                self.docs[op["id"]] = seq
        elif kind == "del":
            self.docs.pop(op["id"], None)
        elif kind == "st":
            self.objects[f"obj/{op['key']}"] = [tag, seq]
        elif kind == "stdel":
            self.objects.pop(f"obj/{op['key']}", None)
        elif kind == "q":
            self.queue.add((tag, seq))

    def get(self, where: str, key: str) -> Any:
        if where == "queue":
            return None
        return getattr(self, where).get(key)


def parse_output(out: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The acknowledged ops in order, and the ops in flight when the process died."""
    done: list[dict[str, Any]] = []
    pending: dict[int, dict[str, Any]] = {}
    for line in out.split("\n")[:-1]:  # the last piece may be a line cut by the kill
        if line.startswith("do "):
            op = orjson.loads(line[3:])
            pending[op["task"]] = op
        elif line.startswith("ok "):
            done.append(pending.pop(int(line[3:])))
    return done, list(pending.values())


async def observe(client: Platform) -> dict[str, Any]:
    listed = await client.kv.list("crash")
    assert listed["list_complete"]
    kv = {k["name"]: await client.kv.get("crash", k["name"]) for k in listed["keys"]}
    docs = {d["_id"]: d for d in await client.db.find("docs")}
    objects: dict[str, Any] = {}
    for meta in await client.storage.list(prefix="obj/"):
        tag, seq = meta["metadata"]["tag"], meta["metadata"]["seq"]
        objects[meta["key"]] = [tag, seq]
        assert await client.storage.get(meta["key"]) == blob(tag, seq), meta["key"]
    queue = {
        (m["payload"]["tag"], m["payload"]["seq"])
        for m in client.queue_state.queues.get("crashq", {}).values()
    }
    indexes = [i["name"] for i in await client.db.list_indexes("docs")]
    return {"kv": kv, "docs": docs, "objects": objects, "queue": queue, "indexes": indexes}


def check_reopen(data_dir: Path, model: Model, tag: str, in_flight: list[dict[str, Any]]) -> None:
    async def run() -> None:
        client = open_client(data_dir)
        try:
            seen = await observe(client)
        finally:
            client.close()
        assert seen["indexes"] == ["_id_", "email_1"]
        for doc_id, doc in seen["docs"].items():
            assert doc["email"] == f"{doc_id}@x"
        # each write in flight at the kill happened or did not; the model takes what did
        for op in in_flight:
            where, key = model.key_of(op)
            if where == "queue":
                if (tag, op["seq"]) in seen["queue"]:
                    model.queue.add((tag, op["seq"]))
                continue
            actual = seen[where].get(key)
            if where == "docs" and actual is not None:
                actual = actual["n"]
            after = copy.deepcopy(model)
            after.apply(op, tag)
            assert actual in (model.get(where, key), after.get(where, key)), op
            if actual is None:
                getattr(model, where).pop(key, None)
            else:
                getattr(model, where)[key] = actual
        assert seen["kv"] == model.kv
        assert {i: d["n"] for i, d in seen["docs"].items()} == model.docs
        assert seen["objects"] == model.objects
        assert seen["queue"] == model.queue

    asyncio.run(run())


def check_stream(data_dir: Path) -> None:
    ids = []
    for line in (data_dir / "events.jsonl").read_bytes().split(b"\n")[:-1]:
        ids.append(orjson.loads(line)["id"])
    assert ids == sorted(set(ids)), "event ids out of order or repeated"


@pytest.mark.chaos
@pytest.mark.slow
def test_compaction_survives_sigkill_at_any_moment(data_dir: Path) -> None:
    rng = random.Random(99)
    modes = ["snap1:2", "snap2:3", "snap3:1", "snap4:4", "rename:2", "rename:5"]
    modes += ["run"] * 5
    rng.shuffle(modes)
    model = Model()
    acknowledged = 0
    compactions = 0
    for cycle, mode in enumerate(modes):
        tag = f"c{cycle}"
        proc = spawn("compactor", str(data_dir), tag, mode)
        with reaping(proc):
            assert read_line(proc) == "ready\n"
            if mode == "run":
                time.sleep(rng.uniform(0.1, 0.5))
                proc.send_signal(signal.SIGKILL)
            out, err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL, err
        done, in_flight = parse_output(out)
        compactions += out.count("compacted\n")
        for op in done:
            model.apply(op, tag)
        acknowledged += len(done)
        check_stream(data_dir)
        check_reopen(data_dir, model, tag, in_flight)
    assert acknowledged > 150
    assert compactions > 15
