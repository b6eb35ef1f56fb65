"""Writes to every service while compacting the stream over and over, until killed.

usage: compactor.py DATA_DIR TAG MODE
  MODE "run": run until the parent sends SIGKILL;
  MODE "snapN:K" (N = 1..4): die by SIGKILL right after the N-th snapshot file of the K-th
      compaction is in place (so some snapshots are new and the rest, and the stream, old);
  MODE "rename:K": die in ``before_rename`` of the K-th compaction (every snapshot new, the
      new stream written and fsync'd but not yet renamed over the old one).

Three writer tasks, each on its own keys, do one awaited write at a time and print
``do <json>`` before and ``ok <task>`` after it, so the parent knows which writes were
acknowledged and which one per task may or may not have happened.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any

import orjson

from platform_shim.platform import Platform
from platform_shim.services.compaction import compact_stream
from platform_shim.store.filestore import FileStore

TASKS = 3


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def blob(tag: str, seq: int) -> bytes:
    return f"{tag}:{seq}:".encode() * (1 + seq % 7)


async def writer(platform: Platform, tag: str, task: int, doc_ids: list[str]) -> None:
    rng = random.Random(f"{tag}/{task}")
    seq = 0
    while True:
        seq += 1
        kind = rng.choice(
            ["kv", "kv", "kvttl", "kvdel", "ins", "ins", "upd", "del", "st", "stdel", "q"]
        )
        key = f"t{task}-{rng.randrange(12)}"
        op: dict[str, Any] = {"task": task, "kind": kind, "seq": seq}
        mine = [i for i in doc_ids if i.startswith(f"t{task}-")]
        if kind in ("upd", "del") and mine:
            op["id"] = rng.choice(mine)
        elif kind in ("upd", "del"):
            kind = op["kind"] = "ins"
        if kind == "ins":
            op["id"] = f"t{task}-{tag}-{seq}"
        if kind in ("kv", "kvttl", "kvdel", "st", "stdel"):
            op["key"] = key
        say("do " + orjson.dumps(op).decode())
        value = {"tag": tag, "seq": seq}
        if kind == "kv":
            await platform.kv.put("crash", key, value)
        elif kind == "kvttl":
            await platform.kv.put("crash", key, value, ttl=3600)
        elif kind == "kvdel":
            await platform.kv.delete("crash", key)
        elif kind == "ins":
            await platform.db.insert_one(
                "docs", {"_id": op["id"], "n": seq, "email": f"{op['id']}@x"}
            )
            doc_ids.append(op["id"])
        elif kind == "upd":
            await platform.db.update_one("docs", {"_id": op["id"]}, {"$set": {"n": seq}})
        elif kind == "del":
            await platform.db.delete_one("docs", {"_id": op["id"]})
            doc_ids.remove(op["id"])
        elif kind == "st":
            await platform.storage.put(f"obj/{key}", blob(tag, seq), {"tag": tag, "seq": seq})
        elif kind == "stdel":
            await platform.storage.delete(f"obj/{key}")
        elif kind == "q":
            await platform.queue.send("crashq", {"tag": tag, "seq": seq})
        say(f"ok {task}")


def arm(platform: Platform, mode: str) -> Callable[[], None] | None:
    """Install the self-kill of ``mode``; return the ``before_rename`` hook to use."""
    if mode == "run":
        return None
    point, _, nth = mode.partition(":")
    target = int(nth)
    compactions = [0]
    if point == "rename":

        def hook() -> None:
            compactions[0] += 1
            if compactions[0] == target:
                die()

        return hook
    after = int(point.removeprefix("snap"))
    store: Any = platform.store
    write_snapshot = store.write_snapshot
    written = [0]

    def killing_write(name: str, lines: Iterable[bytes]) -> None:
        write_snapshot(name, lines)
        written[0] += 1
        # four snapshots per compaction (kv, db, storage, queue)
        if written[0] == (target - 1) * 4 + after:
            die()

    store.write_snapshot = killing_write
    return None


async def main(data_dir: str, tag: str, mode: str) -> None:
    # A small window: compaction really drops the events its snapshots cover.
    platform = Platform(FileStore(data_dir), event_window=8)
    try:
        await platform.db.create_index("docs", {"keys": {"email": 1}, "unique": True})
        doc_ids = [doc["_id"] for doc in await platform.db.find("docs", projection={"_id": 1})]
        hook = arm(platform, mode)
        say("ready")
        tasks = [asyncio.ensure_future(writer(platform, tag, t, doc_ids)) for t in range(TASKS)]
        rng = random.Random(tag)
        while True:
            await asyncio.sleep(rng.uniform(0.003, 0.02))
            await compact_stream(
                platform.store, platform.stream, storage=platform.storage_state, before_rename=hook
            )
            say("compacted")
            for task in tasks:
                if task.done():
                    task.result()  # a writer failed: let the parent see why
    finally:
        platform.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
