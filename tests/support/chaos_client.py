"""A client process writing to a data folder a host works on (``open_client``, no HTTP).

usage: chaos_client.py DATA_DIR TAG ROUNDS GO_FILE

Prints ``ready``, waits until GO_FILE exists (so that several clients start at once), then for
each round i: puts KV ``chaos/k:TAG-i`` (a change the chaos project's KV handler bridges to a
workflow), inserts ``{"_id": "TAG-i"}`` into ``items`` (the DB handler's), and starts the
project's ``kid`` workflow under run id ``TAG-i``. Each write is printed (``kv KEY``, ``db ID``,
``start RUN``) only after its awaited call returned; ``done`` at the end.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from platform_shim.platform import Platform, open_client


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def write(platform: Platform, tag: str, rounds: int) -> None:
    for i in range(rounds):
        name = f"{tag}-{i}"
        await platform.kv.put("chaos", f"k:{name}", {"by": tag, "i": i})
        say(f"kv k:{name}")
        await platform.database.insert_one("items", {"_id": name, "by": tag})
        say(f"db {name}")
        await platform.workflows.start("kid", {"by": tag}, run_id=name)
        say(f"start {name}")
    say("done")


def main(data_dir: str, tag: str, rounds: int, go: str) -> None:
    platform = open_client(data_dir)
    try:
        say("ready")
        while not os.path.exists(go):
            time.sleep(0.002)
        asyncio.run(write(platform, tag, rounds))
    finally:
        platform.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
