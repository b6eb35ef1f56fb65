"""``python -m bench.pg_stages``: where a 1-step run's time goes on PostgreSQL, stage by stage.

    python -m bench.pg_stages                 # a throwaway durable cluster of its own
    python -m bench.pg_stages --url URL       # a database of a running server (fsync on!)
    python -m bench.pg_stages --samples 300 --quiet-background

Runs ``bench-steps`` with one step, ``start`` -> ``result()`` in sequence (as scenario b) and
``bench.peers``), and timestamps each stage of every run: the creation's commit (the statement
sent, its answer), the activation, the run's end submitted, the final commit, the waiters
released. It prints the median time of each stage from ``start``, how many runs had it, the
median of a bare durable ``INSERT`` commit on the same server measured just before (the floor
of each of the two commits), the process CPU per run, and the statements each connection role
sent per run. Stages that only some runs have (``enter``: the log's lock taken again after its
lease lapsed; ``release``; the background logs ``events`` and ``dispatch``) show what shares
the machine with the runs. ``--quiet-background`` holds the status relay, the archive and the
relay's position back (what a run costs with nothing else going on). The timestamps come from
wrapping the store's and engine's methods in this process only; nothing is changed for others.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.flows import ALL

marks: list[tuple[str, float]] = []


def _mark(name: str) -> None:
    marks.append((name, time.perf_counter()))


def _timed(cls: Any, method: str, label: str, *, per_log: bool) -> None:
    original = getattr(cls, method)

    @functools.wraps(original)
    async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        suffix = f" {self.name}" if per_log else ""
        _mark(f"{label}>{suffix}")
        try:
            return await original(self, *args, **kwargs)
        finally:
            _mark(f"{label}<{suffix}")

    setattr(cls, method, wrapper)


def _noted(module: Any, name: str, label: str) -> None:
    original: Callable[..., Any] = getattr(module, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _mark(label)
        return original(*args, **kwargs)

    setattr(module, name, wrapper)


def instrument() -> None:
    from platform_shim.store.postgres.log import PostgresLog
    from platform_shim.workflows import ending, engine

    _timed(PostgresLog, "_leave", "commit", per_log=True)
    _timed(PostgresLog, "_enter", "enter", per_log=True)
    _timed(PostgresLog, "_release", "release", per_log=True)
    _timed(engine.Engine, "_activate", "activation", per_log=False)
    _noted(ending, "terminate", "end submitted")
    _noted(ending, "_after_terminal", "end durable: waiters released")
    engine.ending.terminate = ending.terminate  # type: ignore[attr-defined]


async def bare_commit_ms(url: str, samples: int) -> float:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_probe (x bytea)")
        times = []
        for _ in range(samples):
            t0 = time.perf_counter()
            await conn.execute("INSERT INTO bench_probe VALUES ('x')")
            times.append((time.perf_counter() - t0) * 1000)
        return statistics.median(times)
    finally:
        await conn.close()


async def measure(url: str, samples: int, warmup: int, quiet: bool) -> list[str]:
    from platform_shim.runtime import open_platform
    from platform_shim.store.postgres.store import PostgresStore

    floor = await bare_commit_ms(url, samples)
    out: list[str] = []
    async with open_platform(url, workflows=ALL) as p:
        assert p.worker is not None and isinstance(p.store, PostgresStore)
        engine = p.worker.engine
        if quiet:
            engine.relay.linger = engine.archive.linger = engine.relay.save_interval = 3600.0
        for _ in range(warmup):
            await (await p.workflows.start("bench-steps", {"n": 1})).result()
        before = dict(p.store.statements)
        stages: dict[str, list[float]] = {}
        totals: list[float] = []
        cpu = time.process_time()
        for _ in range(samples):
            marks.clear()
            t0 = time.perf_counter()
            handle = await p.workflows.start("bench-steps", {"n": 1})
            _mark("start() returned")
            await handle.result()
            _mark("result() returned")
            totals.append((time.perf_counter() - t0) * 1000)
            seen: dict[str, int] = {}
            for name, at in marks:
                n = seen[name] = seen.get(name, 0) + 1
                stages.setdefault(name if n == 1 else f"{name} #{n}", []).append((at - t0) * 1000)
        cpu = time.process_time() - cpu
        await p.store.bridge.call(asyncio.sleep(0))
        sent = {
            role: (count - before.get(role, 0)) / samples
            for role, count in p.store.statements.items()
        }
    out.append(f"1-step start -> result() p50: {statistics.median(totals):.3f} ms ({samples} runs)")
    out.append(f"bare durable INSERT commit on the same server, p50: {floor:.3f} ms")
    out.append(f"process CPU per run (all threads): {cpu * 1000 / samples:.3f} ms")
    out.append("statements per run: " + ", ".join(f"{r} {n:.2f}" for r, n in sorted(sent.items())))
    out.append(f"{'stage':<40} {'runs':>5} {'p50 at (ms from start)':>24}")
    for name, times in sorted(stages.items(), key=lambda kv: statistics.median(kv[1])):
        out.append(f"{name:<40} {len(times):>5} {statistics.median(times):>24.3f}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pg_stages")
    parser.add_argument("--url", help="a PostgreSQL server (any database of it); default: own")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--quiet-background", action="store_true")
    args = parser.parse_args(argv)
    instrument()
    server = None
    if args.url is None:
        from tests.support.postgres import PostgresServer

        server = PostgresServer(durable=True).start()
        base = server.url()
    else:
        base = args.url
    name = "stages_" + uuid.uuid4().hex[:8]
    url = base.rsplit("/", 1)[0] + "/" + name
    try:
        asyncio.run(_admin(base, f"CREATE DATABASE {name}"))
        try:
            lines = asyncio.run(measure(url, args.samples, args.warmup, args.quiet_background))
        finally:
            asyncio.run(_admin(base, f"DROP DATABASE {name} WITH (FORCE)"))
    finally:
        if server is not None:
            server.stop()
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


async def _admin(base: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(base)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.exit(main())
