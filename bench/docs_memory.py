"""A host's memory with N stored documents: the folder store against PostgreSQL (issue 14).

    python -m bench.docs_memory [--docs 20000] [--url postgresql://...]

For each store, one child process opens a ``Platform`` on an empty store, inserts ``--docs``
documents (``insert_many``, 500 a call, ~150 bytes each) and reports its resident set size
(VmRSS) before and after; a second child then opens the same store fresh (as a host starting
on it) and reports its RSS and the median time of a selective, sorted ``find`` (after one to warm up), then the same after ``create_index`` on ``group``. Without ``--url`` a
throwaway PostgreSQL cluster is started from Debian's binaries (``tests/support/postgres.py``).
Not wired into ``python -m bench``: it measures a host's footprint, not a workload's speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BATCH = 500


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def child(store: str, docs: int, fill: bool) -> dict[str, Any]:
    from platform_shim.platform import Platform
    from platform_shim.store import open_store

    start = rss_kib()
    platform = Platform(open_store(store))
    opened = rss_kib()

    async def go() -> tuple[float, float]:
        db = platform.database
        if fill:
            for first in range(0, docs, BATCH):
                await db.insert_many(
                    "items",
                    [
                        {"n": n, "group": n % 100, "name": f"item {n}", "tags": ["a", "b", n % 7]}
                        for n in range(first, min(first + BATCH, docs))
                    ],
                )
            return 0.0, 0.0  # the reopened host measures
        plain = await timed_find(db)
        await db.create_index("items", {"keys": {"group": 1}, "name": "by_group"})
        return plain, await timed_find(db)

    async def timed_find(db: Any) -> float:
        times: list[float] = []
        for _ in range(11):
            began = time.perf_counter()
            found = await db.find("items", {"group": 7, "n": {"$gte": docs // 2}}, sort={"n": -1})
            times.append((time.perf_counter() - began) * 1000)
            assert len(found) == len([n for n in range(docs // 2, docs) if n % 100 == 7])
        return statistics.median(times[1:])  # the first pays for warming up (a connection)

    find_ms, indexed_ms = asyncio.run(go())
    result = {
        "start": start,
        "opened": opened,
        "after": rss_kib(),
        "find_ms": find_ms,
        "indexed_ms": indexed_ms,
    }
    platform.close()
    return result


def run_child(store: str, docs: int, fill: bool) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.docs_memory", "--child", store, "--docs", str(docs)]
        + (["--fill"] if fill else []),
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from tests.support.postgres import PostgresServer

    with PostgresServer(durable=True) as server:
        yield server.create_database().url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.docs_memory")
    parser.add_argument("--docs", type=int, default=20000)
    parser.add_argument("--url", default=None)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--fill", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.docs, args.fill)))
        return 0
    rows: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as folder:
        data = str(Path(folder) / "data")
        rows.append(("folder", run_child(data, args.docs, True), run_child(data, args.docs, False)))
    with postgres(args.url) as url:
        rows.append(
            ("postgresql", run_child(url, args.docs, True), run_child(url, args.docs, False))
        )
    print(
        f"{args.docs} documents; RSS in MiB (VmRSS), find: median of 10 of one selective, sorted query"
    )
    print("store       | empty host | after inserts | reopened host | find (ms) | indexed (ms)")
    for name, filled, reopened in rows:
        print(
            f"{name:<11} | {filled['opened'] / 1024:10.1f} | {filled['after'] / 1024:13.1f}"
            f" | {reopened['opened'] / 1024:13.1f} | {reopened['find_ms']:9.1f}"
            f" | {reopened['indexed_ms']:.1f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
