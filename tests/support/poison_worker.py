"""A worker whose one run has a step body that kills the process (a poison pill).

usage: poison_worker.py DATA_DIR

Starts run ``pill`` of ``poison`` (idempotently: every start of this script names the same
run), whose step ``swallow`` appends a line to ``DATA_DIR/../bodies.log`` and then ends the
process with ``os._exit(17)``, as an OOM kill or a segfault would. Once that run has ended, the
worker proves it still serves: it runs ``healthy`` to completion, prints ``served <status of
pill>`` and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from pathlib import Path
from typing import Any

from platform_shim import open_platform
from platform_shim.workflows import define_workflow

BODIES: Path | None = None


def swallow() -> None:
    assert BODIES is not None
    with BODIES.open("a") as f:
        f.write(f"{os.getpid()}\n")
        f.flush()
        os.fsync(f.fileno())
    os._exit(17)


@define_workflow({"id": "poison", "options": {"retries": 0}})
async def poison(input: Any, step: Any, ctx: Any) -> Any:
    await step.run("before", lambda: 1)
    return await step.run("swallow", swallow)


@define_workflow({"id": "healthy"})
async def healthy(input: Any, step: Any, ctx: Any) -> Any:
    return await step.run("fine", lambda: "fine")


async def main(data: Path) -> None:
    async with open_platform(data, workflows=[poison, healthy], watch=False) as platform:
        pill = await platform.workflows.start("poison", run_id="pill")
        with contextlib.suppress(Exception):  # it ends failed: that is the point
            await pill.result(timeout=30)
        run = await pill.status()
        healthy_run = await platform.workflows.start("healthy")
        assert await healthy_run.result(timeout=30) == "fine"
        assert run is not None
        sys.stdout.write(f"served {run.status.value}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    data_dir = Path(sys.argv[1])
    BODIES = data_dir.parent / "bodies.log"
    asyncio.run(main(data_dir))
