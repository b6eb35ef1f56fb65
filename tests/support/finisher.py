"""A worker whose runs keep finishing while it compacts: the archive's crash test kills it.

usage: finisher.py DATA_DIR SEED

Runs ``relay`` (three ``step.run`` steps) 16 at a time and, every 0.2 s, compacts the folder
(so finished runs move from ``runs.jsonl`` to the archive while others end). Stdout, one line
each, after the awaited call returned: ``ready``, then ``done <run id> <n>`` once ``result()``
of the run with input ``n`` returned (its end is acknowledged: it must stay readable).
"""

from __future__ import annotations

import asyncio
import random
import sys
from typing import Any

from platform_shim import open_platform
from platform_shim.workflows import define_workflow


@define_workflow({"id": "relay"})
async def relay(input: Any, step: Any, ctx: Any) -> Any:
    a = await step.run("a", lambda: input)
    b = await step.run("b", lambda: a + 1)
    c = await step.run("c", lambda: b * 2)
    return {"n": input, "c": c}


async def one(platform: Any, n: int) -> None:
    handle = await platform.workflows.start("relay", n)
    assert await handle.result() == {"n": n, "c": (n + 1) * 2}
    sys.stdout.write(f"done {handle.run_id} {n}\n")
    sys.stdout.flush()


async def main(data_dir: str, seed: str) -> None:
    rng = random.Random(seed)
    # A small compaction threshold: each start compacts too.
    async with open_platform(
        data_dir, workflows=[relay], compact_bytes=4096, watch=False
    ) as platform:
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        base = rng.randrange(1, 1 << 30)
        running: set[asyncio.Task[None]] = set()
        n = 0
        loop = asyncio.get_running_loop()
        next_compaction = loop.time() + 0.2
        while True:
            while len(running) < 16:
                n += 1
                task = asyncio.ensure_future(one(platform, base + n))
                running.add(task)
                task.add_done_callback(running.discard)
            await asyncio.sleep(rng.uniform(0, 0.01))
            if loop.time() > next_compaction:
                await platform.worker.compact()  # type: ignore[union-attr]
                next_compaction = loop.time() + 0.2


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
