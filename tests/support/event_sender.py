"""A client process that sends workflow events through the ledger, many at once.

usage: event_sender.py DATA_DIR GO_FILE KEYS_FILE TAG

Prints ``ready`` once loaded, waits until GO_FILE exists (so every sender starts together),
then sends ``stress.go`` with payload ``{"key", "from": TAG}`` for each key of KEYS_FILE (a JSON
list), 8 sends in flight at a time. After each send returned it prints
``sent <json {"payload", "count"}>``; at the end ``done``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import orjson

from platform_shim.platform import open_client

IN_FLIGHT = 8


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(data_dir: str, go_file: str, keys: list[str], tag: str) -> None:
    platform = open_client(data_dir)
    try:
        workflows = platform.workflows
        await workflows.list(limit=1)  # load the ledger before the start signal
        say("ready")
        go = Path(go_file)
        deadline = time.monotonic() + 30
        while not go.exists():
            if time.monotonic() > deadline:
                raise TimeoutError("no go")
            await asyncio.sleep(0.002)
        todo = iter(keys)

        async def sender() -> None:
            for key in todo:
                payload = {"key": key, "from": tag}
                count = await workflows.send_event("stress.go", payload)
                say("sent " + orjson.dumps({"payload": payload, "count": count}).decode())

        await asyncio.gather(*(sender() for _ in range(IN_FLIGHT)))
    finally:
        platform.close()
    say("done")


if __name__ == "__main__":
    data, go_file, keys_file, tag = sys.argv[1:5]
    asyncio.run(main(data, go_file, orjson.loads(Path(keys_file).read_bytes()), tag))
