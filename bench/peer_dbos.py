"""The peer: DBOS Transact with a SQLite system database, doing a) and b) with the same shape.

``pip install -e '.[bench]'`` brings it in. Each job is a fresh process with a fresh SQLite file
(DBOS is a process-wide singleton), DBOS's defaults otherwise: the harness sets no pragma, so
SQLite runs with DBOS's own settings (``BEGIN IMMEDIATE``, busy timeout, the default rollback
journal and ``synchronous=FULL``: every commit is fsync'd). Workflows are started with
``DBOS.start_workflow_async`` and awaited with ``handle.get_result()``, as ours are with
``start`` / ``result()``.
"""

from __future__ import annotations

import sqlite3
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.common import median, percentile, time_runs

Args = dict[str, Any]


def _setup(data: str) -> Any:
    import logging

    from dbos import DBOS

    db_path = Path(data) / "dbos_sys.sqlite"
    config: Any = {
        "name": "bench-peer",
        "system_database_url": f"sqlite:///{db_path}",
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


def _describe(data: str) -> dict[str, Any]:
    db_path = Path(data) / "dbos_sys.sqlite"
    info: dict[str, Any] = {"dbos_version": version("dbos"), "sqlite": sqlite3.sqlite_version}
    with sqlite3.connect(db_path) as conn:
        info["journal_mode"] = conn.execute("PRAGMA journal_mode").fetchone()[0]
    return info


async def _runs_x_steps(dbos: Any, workflow: Any, runs: int, steps: int) -> float:
    return await time_runs(
        lambda: dbos.start_workflow_async(workflow, steps), lambda h: h.get_result(), runs, steps
    )


async def throughput(args: Args) -> dict[str, Any]:
    dbos, workflow = _setup(args["data"])
    try:
        runs, steps = args["runs"], args["steps"]
        await _runs_x_steps(dbos, workflow, max(1, runs // 10), steps)  # warm-up
        elapsed = await _runs_x_steps(dbos, workflow, runs, steps)
    finally:
        dbos.destroy()
    return {
        "wall_s": elapsed,
        "steps_per_s": runs * steps / elapsed,
        **_describe(args["data"]),
    }


async def latency(args: Args) -> dict[str, Any]:
    dbos, workflow = _setup(args["data"])
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
        **_describe(args["data"]),
    }


def probe(args: Args) -> dict[str, Any]:
    """Whether DBOS imports here (and which version)."""
    import dbos  # noqa: F401

    return {"dbos_version": version("dbos")}


JOBS = {"dbos_throughput": throughput, "dbos_latency": latency, "dbos_probe": probe}
