"""A client platform in its own process, for multi-process tests.

usage:
  client_writer.py DATA_DIR write TAG COUNT [GO_FILE]
      waits until GO_FILE exists (so several writers start together), then puts KV keys
      ``mp/TAG-i`` and inserts documents ``{"_id": "TAG-i"}`` into ``mp``, 16 at a time;
      prints ``kv KEY`` / ``db ID`` only after the awaited write returned, then ``done``.
  client_writer.py DATA_DIR echo
      prints ``ready``; waits for KV ``ping/req`` and the document ``pings/p1`` written by
      another process; answers with KV ``ping/resp`` and the document ``pongs/p1``; ``done``.
  client_writer.py DATA_DIR publish COUNT
      publishes COUNT custom events ``test.tick`` and prints each id.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from platform_shim.platform import Platform, open_client


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def write(platform: Platform, tag: str, count: int, go_file: str | None) -> None:
    if go_file is not None:
        say("ready")
        deadline = time.monotonic() + 30
        go = Path(go_file)
        while not go.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("no go")
            await asyncio.sleep(0.002)
    todo = iter(range(count))

    async def worker() -> None:
        for i in todo:
            key = f"{tag}-{i}"
            await platform.kv.put("mp", key, {"tag": tag, "i": i})
            say(f"kv {key}")
            doc_id = await platform.db.insert_one("mp", {"_id": key, "tag": tag, "i": i})
            say(f"db {doc_id}")

    await asyncio.gather(*(worker() for _ in range(16)))
    say("done")


async def echo(platform: Platform) -> None:
    say("ready")
    deadline = time.monotonic() + 20
    request: Any = None
    doc: Any = None
    while request is None or doc is None:
        if time.monotonic() > deadline:
            raise TimeoutError("no ping")
        await asyncio.sleep(0.005)
        request = await platform.kv.get("ping", "req")
        doc = await platform.db.find_one("pings", {"id": "p1"})
    await platform.kv.put("ping", "resp", {"got": request, "doc": doc})
    await platform.db.insert_one("pongs", {"_id": "p1", "reply_to": doc["_id"]})
    say("done")


async def publish(platform: Platform, count: int) -> None:
    for i in range(count):
        eid = await platform.events.publish("test.tick", {"i": i, "pid": os.getpid()})
        say(str(eid))


async def main(argv: list[str]) -> None:
    data_dir, op, *args = argv
    platform = open_client(data_dir)
    try:
        if op == "write":
            await write(platform, args[0], int(args[1]), args[2] if len(args) > 2 else None)
        elif op == "echo":
            await echo(platform)
        elif op == "publish":
            await publish(platform, int(args[0]))
        else:
            raise SystemExit(f"unknown op {op!r}")
    finally:
        platform.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
