"""asyncpg against psycopg 3 on the work the PostgreSQL store does (issue 14's driver choice).

    pip install asyncpg 'psycopg[binary,pool]'
    python -m bench.pg_drivers [--url postgresql://...] [--rounds 3]

Without ``--url`` it starts a throwaway cluster (``tests/support/postgres.py``) with fsync off, so
the figures are the drivers' own cost per round trip, not the disk's. Each figure is the best of
``--rounds``; the machine is shared, so compare the two columns of one run, not runs.

- ``1-row tx/s``: BEGIN; INSERT one JSON step record; COMMIT, serially.
- ``100-row tx/s``: one transaction of 100 INSERTs (``executemany``: asyncpg batches the binds,
  psycopg runs them in pipeline mode).
- ``mixed tx/s``: the step-commit shape: 100 INSERTs, an UPDATE of the run row and a
  ``pg_notify`` in one transaction. psycopg's pipeline mode sends all of it in one round trip;
  asyncpg sends the UPDATE and the NOTIFY as round trips of their own.
- ``unnest tx/s``: the same 100 rows as one INSERT of arrays (``unnest``): one statement, one
  round trip per table whatever the batch size.
- ``COPY rows/s``: 20,000 rows through COPY.
- ``notify ms``: NOTIFY on one connection until the LISTEN on another sees it (median).

Not wired into ``python -m bench``: it measures libraries, not the platform.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator

import orjson

DDL = """
DROP TABLE IF EXISTS bench_steps, bench_runs;
CREATE TABLE bench_runs (run_id text PRIMARY KEY, status text NOT NULL, steps int NOT NULL);
CREATE TABLE bench_steps (run_id text NOT NULL, step int NOT NULL, output jsonb NOT NULL,
                          PRIMARY KEY (run_id, step));
"""
RECORD = orjson.dumps({"ok": True, "value": {"n": 12345, "name": "step result", "tags": [1, 2]}})
UNNEST_A = (
    "INSERT INTO bench_steps (run_id, step, output)"
    " SELECT * FROM unnest($1::text[], $2::int[], $3::jsonb[])"
)
UNNEST_P = (
    "INSERT INTO bench_steps (run_id, step, output)"
    " SELECT * FROM unnest(%s::text[], %s::int[], %s::jsonb[])"
)
SERIAL = 1000
BATCHES = 40
COPY_ROWS = 20_000
NOTIFIES = 200


def rows(prefix: str, count: int) -> list[tuple[str, int, str]]:
    return [(prefix, i, RECORD.decode()) for i in range(count)]


async def best(rounds: int, fn: Callable[[int], Awaitable[float]]) -> float:
    return max([await fn(r) for r in range(rounds)])


# --------------------------------------------------------------------------- asyncpg


async def bench_asyncpg(url: str, rounds: int) -> dict[str, float]:
    import asyncpg

    conn = await asyncpg.connect(url)
    listener = await asyncpg.connect(url)
    await conn.execute(DDL)
    insert = "INSERT INTO bench_steps (run_id, step, output) VALUES ($1, $2, $3::jsonb)"

    async def serial(r: int) -> float:
        start = time.perf_counter()
        for i in range(SERIAL):
            async with conn.transaction():
                await conn.execute(insert, f"a-serial-{r}", i, RECORD.decode())
        return SERIAL / (time.perf_counter() - start)

    async def batch(r: int) -> float:
        start = time.perf_counter()
        for b in range(BATCHES):
            async with conn.transaction():
                await conn.executemany(insert, rows(f"a-batch-{r}-{b}", 100))
        return BATCHES / (time.perf_counter() - start)

    async def mixed(r: int) -> float:
        start = time.perf_counter()
        for b in range(BATCHES):
            run = f"a-mixed-{r}-{b}"
            async with conn.transaction():
                await conn.execute("INSERT INTO bench_runs VALUES ($1, 'running', 0)", run)
                await conn.executemany(insert, rows(run, 100))
                await conn.execute("UPDATE bench_runs SET steps = 100 WHERE run_id = $1", run)
                await conn.execute("SELECT pg_notify('bench', $1)", run)
        return BATCHES / (time.perf_counter() - start)

    async def arrays(r: int) -> float:
        start = time.perf_counter()
        for b in range(BATCHES):
            run = f"a-unnest-{r}-{b}"
            async with conn.transaction():
                await conn.execute(UNNEST_A, [run] * 100, list(range(100)), [RECORD.decode()] * 100)
        return BATCHES / (time.perf_counter() - start)

    async def copy(r: int) -> float:
        records = rows(f"a-copy-{r}", COPY_ROWS)
        start = time.perf_counter()
        await conn.copy_records_to_table(
            "bench_steps",
            records=[(a, b, c) for a, b, c in records],
            columns=["run_id", "step", "output"],
        )
        return COPY_ROWS / (time.perf_counter() - start)

    async def notify(r: int) -> float:
        seen: asyncio.Queue[str] = asyncio.Queue()
        await listener.add_listener("bench_n", lambda *a: seen.put_nowait(a[3]))
        times = []
        for i in range(NOTIFIES):
            start = time.perf_counter()
            await conn.execute(f"NOTIFY bench_n, '{i}'")
            await seen.get()
            times.append(time.perf_counter() - start)
        await listener.remove_listener("bench_n", lambda *a: None)
        return -statistics.median(times) * 1000  # negated: best() takes the max

    out = {
        "1-row tx/s": await best(rounds, serial),
        "100-row tx/s": await best(rounds, batch),
        "mixed tx/s": await best(rounds, mixed),
        "unnest tx/s": await best(rounds, arrays),
        "COPY rows/s": await best(rounds, copy),
        "notify ms": -(await best(rounds, notify)),
    }
    await conn.close()
    await listener.close()
    return out


# --------------------------------------------------------------------------- psycopg


async def bench_psycopg(url: str, rounds: int) -> dict[str, float]:
    import psycopg

    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    listener = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await conn.execute(DDL)
    insert = "INSERT INTO bench_steps (run_id, step, output) VALUES (%s, %s, %s::jsonb)"

    async def serial(r: int) -> float:
        start = time.perf_counter()
        for i in range(SERIAL):
            async with conn.transaction():
                await conn.execute(insert, (f"p-serial-{r}", i, RECORD.decode()))
        return SERIAL / (time.perf_counter() - start)

    async def batch(r: int) -> float:
        start = time.perf_counter()
        for b in range(BATCHES):
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(insert, rows(f"p-batch-{r}-{b}", 100))
        return BATCHES / (time.perf_counter() - start)

    async def mixed(r: int) -> float:
        start = time.perf_counter()
        for b in range(BATCHES):
            run = f"p-mixed-{r}-{b}"
            async with conn.pipeline(), conn.transaction():
                await conn.execute("INSERT INTO bench_runs VALUES (%s, 'running', 0)", (run,))
                async with conn.cursor() as cur:
                    await cur.executemany(insert, rows(run, 100))
                await conn.execute("UPDATE bench_runs SET steps = 100 WHERE run_id = %s", (run,))
                await conn.execute("SELECT pg_notify('bench', %s)", (run,))
        return BATCHES / (time.perf_counter() - start)

    async def arrays(r: int) -> float:
        start = time.perf_counter()
        for b in range(BATCHES):
            run = f"p-unnest-{r}-{b}"
            async with conn.transaction():
                await conn.execute(
                    UNNEST_P, ([run] * 100, list(range(100)), [RECORD.decode()] * 100)
                )
        return BATCHES / (time.perf_counter() - start)

    async def copy(r: int) -> float:
        records = rows(f"p-copy-{r}", COPY_ROWS)
        start = time.perf_counter()
        async with (
            conn.cursor() as cur,
            cur.copy("COPY bench_steps (run_id, step, output) FROM STDIN") as cp,
        ):
            for record in records:
                await cp.write_row(record)
        return COPY_ROWS / (time.perf_counter() - start)

    async def notify(r: int) -> float:
        await listener.execute("LISTEN bench_n")
        times = []
        gen = listener.notifies()
        for i in range(NOTIFIES):
            start = time.perf_counter()
            await conn.execute(f"NOTIFY bench_n, '{i}'")
            await anext(gen)
            times.append(time.perf_counter() - start)
        await gen.aclose()
        await listener.execute("UNLISTEN bench_n")
        return -statistics.median(times) * 1000

    out = {
        "1-row tx/s": await best(rounds, serial),
        "100-row tx/s": await best(rounds, batch),
        "mixed tx/s": await best(rounds, mixed),
        "unnest tx/s": await best(rounds, arrays),
        "COPY rows/s": await best(rounds, copy),
        "notify ms": -(await best(rounds, notify)),
    }
    await conn.close()
    await listener.close()
    return out


@contextlib.contextmanager
def server_url(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    from tests.support.postgres import PostgresServer

    with PostgresServer(durable=False) as server:
        yield server.url()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_drivers")
    parser.add_argument("--url", help="a PostgreSQL URL (default: a throwaway cluster)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with server_url(args.url) as url:
        a = asyncio.run(bench_asyncpg(url, args.rounds))
        p = asyncio.run(bench_psycopg(url, args.rounds))
    print(f"{'':14}{'asyncpg':>12}{'psycopg 3':>12}")
    for key in a:
        print(f"{key:14}{a[key]:>12,.1f}{p[key]:>12,.1f}")


if __name__ == "__main__":
    main()
