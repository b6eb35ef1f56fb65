"""Scenario g): KV and database operations, at both durabilities where it makes a difference.

Reads (``kv.get``, ``database.find``) never touch the disk, so durability cannot change them;
they are measured on a platform opened with the durability given, like everything else.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

from bench.common import folder_bytes, median, percentile, profiled, rss_bytes
from bench.flows import ALL
from platform_shim import open_platform
from platform_shim.runtime import Worker, WorkerOptions
from platform_shim.workflows import WorkflowRegistry

Args = dict[str, Any]
NS = "bench"


def _value(i: int) -> dict[str, Any]:
    return {"i": i, "name": f"user {i}", "tags": ["a", "b"], "active": True}


async def _put_keys(kv: Any, writers: int, keys: int, prefix: str = "k") -> float:
    """``writers`` tasks putting ``keys`` distinct keys between them; wall seconds."""

    async def writer(w: int) -> None:
        for i in range(w, keys, writers):
            await kv.put(NS, f"{prefix}{i:08d}", _value(i))

    t0 = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    return time.perf_counter() - t0


async def kv_fill(args: Args) -> dict[str, Any]:
    async with open_platform(args["data"], workflows=ALL, durability="flush") as p:
        elapsed = await _put_keys(p.kv, args.get("writers", 200), args["keys"])
    data = Path(args["data"])
    return {"fill_s": elapsed, "bytes": folder_bytes(data)}


async def kv_get(args: Args) -> dict[str, Any]:
    """``reads`` random ``kv.get`` calls, median of ``passes``, once per durability."""
    keys, reads = args["keys"], args["reads"]
    rng = random.Random(1)
    names = [f"k{rng.randrange(keys):08d}" for _ in range(reads)]
    out: dict[str, Any] = {}
    for durability in args["durabilities"]:
        async with open_platform(args["data"], workflows=ALL, durability=durability) as p:
            kv = p.kv
            if await kv.get(NS, names[0]) is None:
                raise AssertionError("the folder has no keys; run kv_fill first")
            passes = []
            for _ in range(args.get("passes", 3)):
                t0 = time.perf_counter()
                for name in names:
                    await kv.get(NS, name)
                passes.append(time.perf_counter() - t0)
        best = median(passes)
        out[durability] = {
            "ops_per_s": reads / best,
            "us_per_op": best / reads * 1e6,
            "passes_s": passes,
        }
    return out


async def kv_put(args: Args) -> dict[str, Any]:
    writers, keys = args["writers"], args["keys"]
    async with open_platform(args["data"], workflows=ALL, durability=args["durability"]) as p:
        await _put_keys(p.kv, writers, max(writers, keys // 10), prefix="warm")
        elapsed = await _put_keys(p.kv, writers, keys)
    return {"ops_per_s": keys / elapsed, "wall_s": elapsed, "writers": writers}


async def reopen(args: Args) -> dict[str, Any]:
    """Open a worker on a folder (KV-heavy); time to serve and the key count it sees."""
    options = WorkerOptions(**args.get("options", {}))
    with profiled(args.get("profile")):
        c0, t0 = time.process_time(), time.perf_counter()
        worker = Worker(args["data"], registry=WorkflowRegistry(ALL), options=options)
        worker.open()
        t1 = time.perf_counter()
        await worker.begin()
        c2, t2 = time.process_time(), time.perf_counter()
    # The service's count, not its fold's: on PostgreSQL the fold holds no key.
    keys = (await worker.platform.kv.namespace_sizes()).get(NS, 0)
    rss = rss_bytes()
    await worker.stop()
    return {
        "open_s": t1 - t0,
        "begin_s": t2 - t1,
        "serve_s": t2 - t0,
        "serve_cpu_s": c2 - c0,
        "keys": keys,
        "rss": rss,
    }


async def db_find(args: Args) -> dict[str, Any]:
    """Insert ``docs`` documents, index ``email``; time equality finds on ``email`` (indexed)
    and on ``code`` (same values, no index)."""
    n = args["docs"]
    async with open_platform(args["data"], workflows=ALL, durability="flush") as p:
        db = p.database
        batch = 1000
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            await db.insert_many(
                "users",
                [
                    {
                        "_id": f"u{i}",
                        "email": f"user{i}@example.com",
                        "code": f"user{i}@example.com",
                        "n": i,
                    }
                    for i in range(start, min(n, start + batch))
                ],
            )
        fill_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        await db.create_index("users", {"keys": {"email": 1}, "unique": True})
        index_s = time.perf_counter() - t0
    out: dict[str, Any] = {"fill_s": fill_s, "index_s": index_s}
    # Reopen with the measured durability: the finds run on a freshly loaded state.
    async with open_platform(args["data"], workflows=ALL, durability=args["durability"]) as p:
        db = p.database
        rng = random.Random(2)
        for field, lookups in (("email", args["indexed_lookups"]), ("code", args["scan_lookups"])):
            times = []
            for _ in range(lookups):
                value = f"user{rng.randrange(n)}@example.com"
                t0 = time.perf_counter()
                found = await db.find("users", {field: value})
                times.append((time.perf_counter() - t0) * 1000)
                if len(found) != 1:
                    raise AssertionError(f"find {field}={value} gave {len(found)} documents")
            out[field] = {
                "p50_ms": median(times),
                "p99_ms": percentile(times, 99),
                "lookups": lookups,
            }
    return out


async def db_insert(args: Args) -> dict[str, Any]:
    """``writers`` concurrent tasks doing ``insert_one``; documents per second."""
    writers, docs = args["writers"], args["docs"]
    async with open_platform(args["data"], workflows=ALL, durability=args["durability"]) as p:
        db = p.database

        async def writer(w: int, prefix: str, count: int) -> None:
            for i in range(w, count, writers):
                await db.insert_one("orders", {"_id": f"{prefix}{i}", "n": i, "items": ["x", "y"]})

        await asyncio.gather(*(writer(w, "warm", max(writers, docs // 10)) for w in range(writers)))
        t0 = time.perf_counter()
        await asyncio.gather(*(writer(w, "o", docs) for w in range(writers)))
        elapsed = time.perf_counter() - t0
    return {"ops_per_s": docs / elapsed, "wall_s": elapsed}


JOBS = {
    "kv_fill": kv_fill,
    "kv_get": kv_get,
    "kv_put": kv_put,
    "kv_reopen": reopen,
    "db_find": db_find,
    "db_insert": db_insert,
}
