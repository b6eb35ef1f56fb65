"""Scenario f): a folder with many parked (sleeping) runs; how long a restart takes until the
worker serves, and what a parked run costs in memory.

The folder is filled through the engine's own API (``workflows.start`` of ``bench-sleeper``,
thousands at a time, durability ``flush`` to fill fast: the files are the same either way).
The restart is measured in a fresh process: ``Worker.open()`` (lock, load the logs) plus
``Worker.begin()`` (recovery: re-arm every timer), with the default options unless the parent
passes others (``compact_bytes``, to keep an uncompacted folder uncompacted at start).
"""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.common import REPO, folder_bytes, jsonl_sizes, profiled, rss_bytes
from bench.flows import ALL
from platform_shim import open_platform
from platform_shim.runtime import Worker, WorkerOptions
from platform_shim.workflows import WorkflowRegistry

Args = dict[str, Any]


def _short(filename: str) -> str:
    """A source path relative to the repository (or to site-packages)."""
    path = Path(filename)
    if path.is_relative_to(REPO):
        return str(path.relative_to(REPO))
    return filename.split("site-packages/")[-1]


async def fill(args: Args) -> dict[str, Any]:
    n, batch = args["n"], args.get("batch", 2000)
    t0 = time.perf_counter()
    async with open_platform(args["data"], workflows=ALL, durability="flush") as p:
        workflows = p.workflows
        for start in range(0, n, batch):
            await asyncio.gather(
                *(
                    workflows.start("bench-sleeper", {"user": f"u{i:07d}"})
                    for i in range(start, min(n, start + batch))
                )
            )
            # Let this batch park before starting the next, so the loop never holds n tasks.
            await p.settle(timeout=600)
        counts = await workflows.counts()
    elapsed = time.perf_counter() - t0
    data = Path(args["data"])
    if counts.get("sleeping") != n:
        raise AssertionError(f"expected {n} sleeping runs, found {counts}")
    return {
        "fill_s": elapsed,
        "counts": counts,
        "bytes": folder_bytes(data),
        "files": jsonl_sizes(data),
    }


async def restart(args: Args) -> dict[str, Any]:
    """Open a worker on the folder; report the time to serve, RSS, and (with ``tracemalloc``)
    the bytes Python allocated for the worker's state."""
    options = WorkerOptions(**args.get("options", {}))
    registry = WorkflowRegistry(ALL)
    baseline_rss = rss_bytes()
    if args.get("tracemalloc"):
        tracemalloc.start()
    with profiled(args.get("profile")):
        c0, t0 = time.process_time(), time.perf_counter()
        worker = Worker(args["data"], registry=registry, options=options)
        worker.open()
        c1, t1 = time.process_time(), time.perf_counter()
        await worker.begin()
        c2, t2 = time.process_time(), time.perf_counter()
    ready_wall = time.time()
    await asyncio.sleep(0.05)  # let what begin() scheduled run (a real host serves meanwhile)
    out: dict[str, Any] = {
        "open_s": t1 - t0,
        "begin_s": t2 - t1,
        "serve_s": t2 - t0,
        "open_cpu_s": c1 - c0,
        "begin_cpu_s": c2 - c1,
        "serve_cpu_s": c2 - c0,
        "ready_wall": ready_wall,
    }
    counts = await worker.platform.workflows.counts()
    out["counts"] = counts
    if args.get("tracemalloc"):
        snapshot = tracemalloc.take_snapshot()
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out["traced_bytes"] = current
        out["traced_peak"] = peak
        out["traced_top"] = [
            {
                "file": _short(stat.traceback[0].filename),
                "line": stat.traceback[0].lineno,
                "bytes": stat.size,
            }
            for stat in snapshot.statistics("lineno")[:12]
        ]
    out["rss"] = rss_bytes()
    out["rss_before_open"] = baseline_rss
    t3 = time.perf_counter()
    await worker.stop()
    out["stop_s"] = time.perf_counter() - t3
    return out


JOBS = {"parked_fill": fill, "parked_restart": restart}
