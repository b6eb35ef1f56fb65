"""Four real processes writing to one data folder at once: nothing lost, nothing interleaved."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

from platform_shim.platform import open_client
from tests.support.eventlog import EVENT_KEYS, raw, read_events
from tests.support.procs import spawn
from tests.support.reap import finish, read_line, reaping

WRITERS = 4
EACH = 300


def test_four_processes_writing_concurrently(data_dir: Path, tmp_path: Path) -> None:
    data_dir.mkdir()
    go = tmp_path / "go"
    tags = [f"w{n}" for n in range(WRITERS)]
    procs = [
        spawn("client_writer", str(data_dir), "write", tag, str(EACH), str(go)) for tag in tags
    ]
    acked_kv: set[str] = set()
    acked_db: set[str] = set()
    with reaping(*procs):
        for proc in procs:
            assert read_line(proc) == "ready\n"
        go.touch()  # every writer is loaded: they start together
        for proc in procs:
            out, _ = finish(proc)
            lines = out.split("\n")
            assert lines[-2:] == ["done", ""]
            for line in lines[:-2]:
                kind, key = line.split(" ")
                (acked_kv if kind == "kv" else acked_db).add(key)
    expected = {f"{tag}-{i}" for tag in tags for i in range(EACH)}
    assert acked_kv == expected
    assert acked_db == expected

    # every line is a whole event; ids strictly increase, without gaps or duplicates
    content = raw(data_dir)
    assert content.count(b"\n") == 2 * WRITERS * EACH
    events = read_events(data_dir)
    assert all(set(event) == EVENT_KEYS for event in events)
    ids = [event["id"] for event in events]
    assert ids == list(range(1, len(events) + 1))
    # each writer's own writes were in flight together: the stream interleaves the processes
    runs = sum(1 for a, b in itertools.pairwise(events) if a["k"][:2] != b["k"][:2])
    assert runs > WRITERS

    async def check() -> None:
        reloaded = open_client(data_dir)
        try:
            for key in expected:
                tag, i = key.split("-")
                assert await reloaded.kv.get("mp", key) == {"tag": tag, "i": int(i)}
            docs = await reloaded.db.find("mp")
            assert sorted(doc["_id"] for doc in docs) == sorted(expected)
            assert await reloaded.db.count("mp", {"tag": "w2"}) == EACH
            listed = await reloaded.kv.list("mp", limit=1000)
            assert listed["list_complete"] is False
        finally:
            reloaded.close()

    asyncio.run(check())
