"""What a document write costs: the folder store against PostgreSQL (issue 14 item 6).

    python -m bench.docs_writes [--n 300] [--url postgresql://...]

On each store, in one process: the median time of ``insert_one`` (a generated ``_id``) and of
``update_one`` by ``_id`` (``$inc``), each ``--n`` times one after another, on a collection
without and then with a unique index; and ``--n`` x 4 ``insert_one`` gathered at once
(documents per second, group commit). On PostgreSQL a write is planned from rows read first
(an update: one read; with a unique index, one more to look the keys up) and checked by the
database in its commit (``store/postgres/docrules.py``). Without ``--url`` a throwaway
PostgreSQL cluster (fsync on) is started from Debian's binaries. Not wired into
``python -m bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.docs_memory import postgres


def measure(store: str, n: int) -> dict[str, float]:
    from platform_shim.platform import Platform
    from platform_shim.store import open_store

    platform = Platform(open_store(store))

    async def go() -> dict[str, float]:
        db = platform.database
        out: dict[str, float] = {}
        for label, collection in (("plain", "plain"), ("unique", "keyed")):
            if label == "unique":
                await db.create_index(collection, {"keys": {"e": 1}, "unique": True})
            inserts: list[float] = []
            ids: list[str] = []
            for i in range(n):
                began = time.perf_counter()
                ids.append(await db.insert_one(collection, {"e": i}))
                inserts.append(time.perf_counter() - began)
            updates: list[float] = []
            for doc_id in ids:
                began = time.perf_counter()
                await db.update_one(collection, {"_id": doc_id}, {"$inc": {"e": 10 * n}})
                updates.append(time.perf_counter() - began)
            out[f"insert {label}"] = statistics.median(inserts) * 1000
            out[f"update {label}"] = statistics.median(updates) * 1000
        began = time.perf_counter()
        await asyncio.gather(*(db.insert_one("many", {"n": i}) for i in range(4 * n)))
        out["gathered"] = 4 * n / (time.perf_counter() - began)
        return out

    try:
        return asyncio.run(go())
    finally:
        platform.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.docs_writes")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--url", default=None)
    args = parser.parse_args(argv)
    rows: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as folder:
        rows.append(("folder", measure(str(Path(folder) / "data"), args.n)))
    with postgres(args.url) as url:
        rows.append(("postgresql", measure(url, args.n)))
    print(f"median ms of {args.n} sequential writes; gathered: {4 * args.n} inserts at once")
    print("store       | insert | update | insert, unique idx | update, unique idx | gathered/s")
    for name, r in rows:
        print(
            f"{name:<11} | {r['insert plain']:6.2f} | {r['update plain']:6.2f}"
            f" | {r['insert unique']:18.2f} | {r['update unique']:18.2f} | {r['gathered']:.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
