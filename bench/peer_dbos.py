"""The peer: DBOS Transact doing a) and b) with the same shape, on SQLite or PostgreSQL.

``pip install -e '.[bench]'`` brings it in (``python -m bench``, SQLite); ``python -m bench.peers``
runs it from a venv of its own (``.venv-dbos``) against PostgreSQL. Each job is a fresh process
(DBOS is a process-wide singleton) on a fresh system database: ``args["url"]`` when given (a
``postgresql://`` URL of an empty database), else a SQLite file in ``args["data"]``. DBOS's
defaults otherwise: the harness sets no pragma and no pool size, so SQLite runs with DBOS's own
settings (``BEGIN IMMEDIATE``, busy timeout, the default rollback journal and
``synchronous=FULL``: every commit is fsync'd) and PostgreSQL with the server's (the bench's
cluster has ``fsync`` and ``synchronous_commit`` on). Workflows are started with
``DBOS.start_workflow_async`` and awaited with ``handle.get_result()``, as ours are with
``start`` / ``result()``. This module imports only the standard library and ``bench.common`` (and
DBOS inside the jobs), so the peer's venv needs nothing of ours installed.
"""

from __future__ import annotations

import sqlite3
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.common import median, percentile, time_runs

Args = dict[str, Any]


def _sqlite_path(args: Args) -> Path:
    return Path(args["data"]) / "dbos_sys.sqlite"


def _setup(args: Args) -> Any:
    import logging

    from dbos import DBOS

    url = args.get("url") or f"sqlite:///{_sqlite_path(args)}"
    config: Any = {
        "name": "bench-peer",
        "system_database_url": url,
        "log_level": "WARNING",
    }
    DBOS(config=config)
    logging.getLogger("dbos").setLevel(logging.WARNING)

    @DBOS.step()
    async def value_step(i: int) -> int:
        return i

    @DBOS.workflow()
    async def steps_workflow(n: int) -> int:
        total = 0
        for i in range(n):
            total += await value_step(i)
        return total

    DBOS.launch()
    return DBOS, steps_workflow


def _describe(args: Args) -> dict[str, Any]:
    if args.get("url"):
        # The server's settings are the harness's to report (it started the cluster).
        return {"dbos_version": version("dbos"), "system_database": "postgresql"}
    info: dict[str, Any] = {"dbos_version": version("dbos"), "sqlite": sqlite3.sqlite_version}
    with sqlite3.connect(_sqlite_path(args)) as conn:
        info["journal_mode"] = conn.execute("PRAGMA journal_mode").fetchone()[0]
    return info


async def _runs_x_steps(dbos: Any, workflow: Any, runs: int, steps: int) -> float:
    return await time_runs(
        lambda: dbos.start_workflow_async(workflow, steps), lambda h: h.get_result(), runs, steps
    )


async def throughput(args: Args) -> dict[str, Any]:
    dbos, workflow = _setup(args)
    try:
        runs, steps = args["runs"], args["steps"]
        await _runs_x_steps(dbos, workflow, max(1, runs // 10), steps)  # warm-up
        elapsed = await _runs_x_steps(dbos, workflow, runs, steps)
    finally:
        dbos.destroy()
    return {
        "wall_s": elapsed,
        "steps_per_s": runs * steps / elapsed,
        **_describe(args),
    }


async def latency(args: Args) -> dict[str, Any]:
    dbos, workflow = _setup(args)
    samples: list[float] = []
    try:
        for _ in range(args["warmup"]):
            await (await dbos.start_workflow_async(workflow, 1)).get_result()
        for _ in range(args["samples"]):
            t0 = time.perf_counter()
            handle = await dbos.start_workflow_async(workflow, 1)
            await handle.get_result()
            samples.append((time.perf_counter() - t0) * 1000)
    finally:
        dbos.destroy()
    return {
        "samples_ms": samples,
        "p50_ms": median(samples),
        "p99_ms": percentile(samples, 99),
        **_describe(args),
    }


def probe(args: Args) -> dict[str, Any]:
    """Whether DBOS imports here (and which version)."""
    import dbos  # noqa: F401

    return {"dbos_version": version("dbos")}


JOBS = {"dbos_throughput": throughput, "dbos_latency": latency, "dbos_probe": probe}


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.peer_dbos URL``: a) and b) of DBOS alone on the system database at URL
    (e.g. an empty PostgreSQL database), each in a fresh process of this interpreter; prints the
    figures as JSON. ``python -m bench.peers`` runs the same jobs beside ours."""
    import argparse
    import json
    import sys

    from bench.common import run_job

    parser = argparse.ArgumentParser(prog="python -m bench.peer_dbos")
    parser.add_argument("url", help="DBOS's system database, e.g. postgresql://user@host:port/db")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--samples", type=int, default=120, help="1-step runs timed")
    parser.add_argument("--warmup", type=int, default=50, help="1-step runs before timing")
    args = parser.parse_args(argv)
    base = {"url": args.url}
    a = run_job("dbos_throughput", {**base, "runs": args.runs, "steps": args.steps}).result
    b = run_job("dbos_latency", {**base, "samples": args.samples, "warmup": args.warmup}).result
    out = {
        "dbos_version": a["dbos_version"],
        "runs": args.runs,
        "steps": args.steps,
        "steps_per_s": a["steps_per_s"],
        "wall_s": a["wall_s"],
        "latency_samples": len(b["samples_ms"]),
        "latency_p50_ms": b["p50_ms"],
        "latency_p99_ms": b["p99_ms"],
    }
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
