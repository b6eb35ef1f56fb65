"""Scenario p): finished runs on disk: paging runs among 200,000, and what finished runs cost
in memory.

- **pages**: a folder of N runs (``bench.dashboard_scale.fill``: 97 % completed, 2 % failed,
  0.5 % cancelled, 0.5 % parked; two workflows), opened and compacted once by a worker (the
  steady state: finished runs moved out of the ledger), then opened by a fresh process
  (``Worker.open()`` + ``begin()``) that times ``await platform.workflows.list(...)``, the call
  behind ``GET /api/workflows/runs`` and the dashboard's run pages, for each filter.
- **memory**: in a fresh process on an empty folder, N one-step runs (``bench-steps``) are run to
  their end through the API, 500 at a time; RSS after a warm-up and at the end, per finished run.
  Then a fresh process opens that folder: its RSS against the same on an empty folder; and the
  same once the folder was compacted (the steady state of a host that runs for days).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import folder_bytes, jsonl_sizes, rss_bytes
from bench.dashboard_scale import fill
from bench.flows import ALL
from platform_shim import open_platform
from platform_shim.runtime import Worker, WorkerOptions
from platform_shim.workflows import WorkflowRegistry

Args = dict[str, Any]


async def runs_prepare(args: Args) -> dict[str, Any]:
    """Fill the folder and let a worker compact it (as a long-running host would have)."""
    data = Path(args["data"])
    t0 = time.perf_counter()
    facts = fill(data, args["n"])
    fill_s = time.perf_counter() - t0
    ids = facts["ids"]
    t0 = time.perf_counter()
    async with open_platform(data, workflows=ALL, watch=False) as platform:
        assert platform.worker is not None
        await platform.worker.compact()
    compact_s = time.perf_counter() - t0
    newest_first = ids[::-1]
    return {
        "fill_s": fill_s,
        "first_open_and_compact_s": compact_s,
        "statuses": facts["statuses"],
        "files": jsonl_sizes(data),
        "bytes": folder_bytes(data),
        "cursor_mid": newest_first[len(ids) // 2],
        "cursor_deep": newest_first[int(len(ids) * 0.75)],
    }


def _variants(args: Args) -> dict[str, dict[str, Any]]:
    mid, deep = args["cursor_mid"], args["cursor_deep"]
    return {
        "first page, no filter": {},
        "status=completed": {"status": "completed"},
        "status=failed": {"status": "failed"},
        "status=running (matches nothing)": {"status": "running"},
        "workflowId=nope (matches nothing)": {"workflow_id": "nope"},
        "workflowId=approval&status=failed": {"workflow_id": "approval", "status": "failed"},
        "deep page (before= at 75 %), no filter": {"before": deep},
        "deep page (before= at 50 %), status=completed": {"before": mid, "status": "completed"},
        "deep page (before= at 50 %), status=cancelled": {"before": mid, "status": "cancelled"},
    }


async def runs_page(args: Args) -> dict[str, Any]:
    """Time each filtered page in a fresh worker on the prepared folder."""
    worker = Worker(
        args["data"],
        registry=WorkflowRegistry(ALL),
        options=WorkerOptions(watch=False),
    )
    t0 = time.perf_counter()
    worker.open()
    await worker.begin()
    open_s = time.perf_counter() - t0
    rss = rss_bytes()
    workflows = worker.platform.workflows
    out: dict[str, Any] = {"open_s": open_s, "rss": rss, "pages": {}}
    try:
        counts = await workflows.counts()
        out["counts"] = counts
        for name, query in _variants(args).items():
            samples = []
            found = 0
            for _ in range(args["repeats"]):
                t0 = time.perf_counter()
                runs = await workflows.list(limit=args["limit"], **query)
                samples.append((time.perf_counter() - t0) * 1000)
                found = len(runs)
            samples.sort()
            out["pages"][name] = {
                "median_ms": statistics.median(samples),
                "p95_ms": samples[int(len(samples) * 0.95) - 1],
                "max_ms": samples[-1],
                "runs": found,
            }
    finally:
        await worker.stop()
    return out


async def runs_finish_rss(args: Args) -> dict[str, Any]:
    """RSS before and after N one-step runs end, in this process."""
    n, batch = args["n"], 500
    async with open_platform(args["data"], workflows=ALL, durability="flush", watch=False) as p:
        workflows = p.workflows

        async def one() -> None:
            handle = await workflows.start("bench-steps", {"n": 1})
            await handle.result()

        for _ in range(2):  # warm-up: imports, caches, the first allocations of every kind
            await asyncio.gather(*(one() for _ in range(batch)))
        await p.settle(timeout=600)
        before = rss_bytes()
        t0 = time.perf_counter()
        for _ in range(0, n, batch):
            await asyncio.gather(*(one() for _ in range(batch)))
        await p.settle(timeout=600)
        elapsed = time.perf_counter() - t0
        after = rss_bytes()
        live = len(p.worker.engine.state.runs)  # type: ignore[union-attr]
    return {
        "rss_before": before,
        "rss_after": after,
        "per_run": (after - before) / n,
        "runs_in_memory": live,
        "runs_per_s": n / elapsed,
        "files": jsonl_sizes(Path(args["data"])),
    }


async def runs_open_rss(args: Args) -> dict[str, Any]:
    """RSS of a fresh worker after it opened the folder (and recovered)."""
    worker = Worker(
        args["data"], registry=WorkflowRegistry(ALL), options=WorkerOptions(watch=False)
    )
    t0 = time.perf_counter()
    worker.open()
    await worker.begin()
    elapsed = time.perf_counter() - t0
    rss = rss_bytes()
    await worker.stop()
    return {"rss": rss, "open_s": elapsed}


async def runs_compact(args: Args) -> dict[str, Any]:
    """Compact the folder (as the host's maintenance or ``python -m host compact`` would)."""
    t0 = time.perf_counter()
    async with open_platform(args["data"], workflows=ALL, watch=False) as platform:
        assert platform.worker is not None
        report = await platform.worker.compact()
    return {"compact_s": time.perf_counter() - t0, "report": report}


JOBS = {
    "runs_compact": runs_compact,
    "runs_prepare": runs_prepare,
    "runs_page": runs_page,
    "runs_finish_rss": runs_finish_rss,
    "runs_open_rss": runs_open_rss,
}
