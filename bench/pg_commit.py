"""What one PostgreSQL on this machine sustains: durable commits per second (issue 14).

    python -m bench.pg_commit [--url postgresql://...] [--seconds 5] [--clients 1,8]

Without ``--url`` it starts a throwaway cluster with fsync on and ``synchronous_commit`` on (the
defaults: a commit returns once its WAL is on stable storage), from Debian's binaries
(``tests/support/postgres.py``), in a temp folder on the same disk as the data folder store.
For each number of concurrent clients (one asyncpg connection each) it measures:

- ``1 row/tx``: BEGIN; one INSERT of a small JSON step record; COMMIT. The ceiling of a store
  that commits each step on its own.
- ``100 rows/tx``: the same with 100 INSERTs (``executemany``) per transaction: the headroom of
  group commit, which the PostgreSQL store will use (many step records per transaction).

Concurrent clients also share WAL flushes inside PostgreSQL (its own group commit), so commits/s
grows with clients until the disk or the CPU is the limit. Not wired into ``python -m bench``
yet: it measures the database, not the platform.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import orjson

DDL = """
DROP TABLE IF EXISTS bench_commit;
CREATE TABLE bench_commit (
    run_id text NOT NULL, position integer NOT NULL, output jsonb NOT NULL,
    PRIMARY KEY (run_id, position)
);
"""
INSERT = "INSERT INTO bench_commit (run_id, position, output) VALUES ($1, $2, $3::jsonb)"
RECORD = orjson.dumps({"ok": True, "value": {"n": 12345, "name": "step result"}}).decode()


async def client(url: str, name: str, rows_per_tx: int, until: float) -> int:
    """Commit transactions of ``rows_per_tx`` rows until ``until``; returns how many."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        commits = 0
        while time.perf_counter() < until:
            base = commits * rows_per_tx
            async with conn.transaction():
                if rows_per_tx == 1:
                    await conn.execute(INSERT, name, base, RECORD)
                else:
                    await conn.executemany(
                        INSERT, [(name, base + i, RECORD) for i in range(rows_per_tx)]
                    )
            commits += 1
        return commits
    finally:
        await conn.close()


async def measure(url: str, clients: int, rows_per_tx: int, seconds: float) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(DDL)
        settings = {
            name: await conn.fetchval(f"SHOW {name}")
            for name in ("fsync", "synchronous_commit", "wal_sync_method")
        }
    finally:
        await conn.close()
    start = time.perf_counter()
    until = start + seconds
    counts = await asyncio.gather(
        *(client(url, f"c{i}-{rows_per_tx}", rows_per_tx, until) for i in range(clients))
    )
    elapsed = time.perf_counter() - start
    commits = sum(counts)
    return {
        "clients": clients,
        "rows_per_tx": rows_per_tx,
        "commits_per_s": commits / elapsed,
        "rows_per_s": commits * rows_per_tx / elapsed,
        **settings,
    }


@contextlib.contextmanager
def server_url(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from tests.support.postgres import PostgresServer

    with PostgresServer(durable=True) as server:
        yield server.url()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_commit")
    parser.add_argument("--url", help="a PostgreSQL URL (default: a throwaway durable cluster)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--clients", default="1,8", help="comma-separated client counts")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    with server_url(args.url) as url:
        results = [
            asyncio.run(measure(url, clients, rows, args.seconds))
            for rows in (1, 100)
            for clients in counts
        ]
    if args.json:
        for result in results:
            print(orjson.dumps(result).decode())
        return
    first = results[0]
    print(
        f"fsync={first['fsync']} synchronous_commit={first['synchronous_commit']}"
        f" wal_sync_method={first['wal_sync_method']}, {args.seconds:g} s each"
    )
    print(f"{'rows/tx':>8}{'clients':>9}{'commits/s':>12}{'rows/s':>12}")
    for r in results:
        print(
            f"{r['rows_per_tx']:>8}{r['clients']:>9}{r['commits_per_s']:>12,.0f}"
            f"{r['rows_per_s']:>12,.0f}"
        )


if __name__ == "__main__":
    main()
