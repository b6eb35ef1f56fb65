"""Appends records forever from many concurrent writers, printing each acknowledged one.

usage: appender.py LOCATION TAG   (a data folder or a postgresql:// URL)
"""

from __future__ import annotations

import asyncio
import random
import sys
from typing import Any

import orjson

from platform_shim.store import open_store


class Sink:
    def apply(self, record: dict[str, Any], line: bytes) -> None:
        pass

    def reset(self) -> None:
        pass


async def main(data_dir: str, tag: str) -> None:
    store = open_store(data_dir)
    log = store.open_log("crash", Sink())
    counter = 0
    print("ready", flush=True)

    async def writer() -> None:
        nonlocal counter
        rng = random.Random()
        while True:
            counter += 1
            key = f"{tag}-{counter}"
            pad = "x" * rng.choice((10, 100, 5000, 70000))
            line = orjson.dumps({"key": key, "pad": pad})
            await log.submit(lambda line=line: (line, None))
            sys.stdout.write(key + "\n")
            sys.stdout.flush()

    await asyncio.gather(*(writer() for _ in range(20)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
