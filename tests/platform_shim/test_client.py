"""Client platforms on one data folder see each other's writes: in one process and across two."""

from __future__ import annotations

import asyncio
from pathlib import Path

from platform_shim.platform import Platform, open_client
from platform_shim.testing import FakeClock
from tests.support.eventlog import read_events
from tests.support.procs import spawn
from tests.support.reap import finish, read_line, reaping
from tests.support.waiting import wait_until_async


async def test_second_client_in_the_same_process(
    platform: Platform, data_dir: Path, clock: FakeClock
) -> None:
    other = open_client(data_dir, clock=clock)
    try:
        await platform.kv.put("ns", "from-first", {"n": 1})
        doc_id = await platform.db.insert_one("users", {"name": "Ada"})
        await asyncio.sleep(0)
        assert await other.kv.get("ns", "from-first") == {"n": 1}
        assert await other.db.find_one("users", {"id": doc_id}) == {
            "_id": doc_id,
            "id": doc_id,
            "name": "Ada",
        }
        await other.kv.put("ns", "from-second", 2)
        await other.db.update_one("users", {"_id": doc_id}, {"$set": {"name": "Ada L."}})
        await other.kv.delete("ns", "from-first")
        await other.storage.put("f", b"bytes")
        await asyncio.sleep(0)
        assert await platform.kv.get("ns", "from-second") == 2
        assert await platform.kv.get("ns", "from-first") is None
        assert [k["name"] for k in (await platform.kv.list("ns"))["keys"]] == ["from-second"]
        assert (await platform.db.find_one("users", {"_id": doc_id}) or {})["name"] == "Ada L."
        assert await platform.storage.get("f") == b"bytes"
        # the first client's next write follows the second's in the stream
        await platform.kv.put("ns", "last", 3)
        ids = [e["id"] for e in read_events(data_dir)]
        assert ids == list(range(1, len(ids) + 1))
    finally:
        other.close()


async def test_client_in_another_process(data_dir: Path) -> None:
    platform = open_client(data_dir)
    proc = spawn("client_writer", str(data_dir), "echo")
    try:
        with reaping(proc):
            assert await asyncio.to_thread(read_line, proc) == "ready\n"
            await platform.db.insert_one("pings", {"_id": "p1", "at": 1})
            await platform.kv.put("ping", "req", {"hello": [1, 2]})
            response = await wait_until_async(
                lambda: platform.kv.get("ping", "resp"), 20, "the other process's reply in KV"
            )
            assert response == {
                "got": {"hello": [1, 2]},
                "doc": {"_id": "p1", "id": "p1", "at": 1},
            }
            pong = await wait_until_async(
                lambda: platform.db.find_one("pongs", {"id": "p1"}), 20, "its pong document"
            )
            assert pong == {"_id": "p1", "id": "p1", "reply_to": "p1"}
            out, _ = await asyncio.to_thread(finish, proc)
            assert out.split() == ["done"]
    finally:
        platform.close()


def test_client_across_two_asyncio_runs(data_dir: Path) -> None:
    platform = open_client(data_dir)
    try:

        async def first() -> None:
            await platform.kv.put("ns", "a", 1)
            await platform.db.insert_one("c", {"_id": "one"})
            assert await platform.kv.get("ns", "a") == 1

        asyncio.run(first())
        # another process writes while no loop runs here
        proc = spawn("client_writer", str(data_dir), "publish", "2")
        with reaping(proc):
            finish(proc)

        async def second() -> None:
            assert await platform.kv.get("ns", "a") == 1
            recent = await platform.events.recent()
            assert [e["t"] for e in recent][-2:] == ["test.tick", "test.tick"]
            await asyncio.gather(
                platform.kv.put("ns", "b", 2), platform.db.insert_one("c", {"_id": "two"})
            )
            assert [d["_id"] for d in await platform.db.find("c")] == ["one", "two"]
            await platform.stream.log.barrier()

        asyncio.run(second())
    finally:
        platform.close()
    events = read_events(data_dir)
    assert [e["id"] for e in events] == [1, 2, 3, 4, 5, 6]
    reopened = open_client(data_dir)
    try:

        async def check() -> None:
            assert await reopened.kv.get("ns", "b") == 2
            assert await reopened.db.count("c") == 2

        asyncio.run(check())
    finally:
        reopened.close()
