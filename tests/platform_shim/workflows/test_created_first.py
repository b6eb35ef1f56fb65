"""A run is scheduled once its creation is acknowledged, not when it is applied.

The creation record is applied inside the commit cycle, before the commit: the new run's
activation used to be created there and wait for the next cycle (a fence) before running its
first step body. If the creation's commit failed, the ledger was replayed without the run, yet
that activation went on with its stale state after the fence: a step body ran for a run that
was never created, and its step and status records were written for a run the ledger does not
have. Scheduling from the acknowledged creation also drops that extra cycle from every new run's
path to its first step.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from platform_shim.errors import StoreError
from platform_shim.runtime import open_platform
from platform_shim.store.postgres.log import PostgresLog
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow
from tests.support.postgres import PostgresDatabase

bodies: list[int] = []


@define_workflow({"id": "counted-body"})
async def counted_body(input: Any, step: Any, ctx: Any) -> Any:
    def body() -> int:
        bodies.append(input)
        return int(input)

    return await step.run("only", body, inline=True)


async def _terminate(url: str, pid: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()


async def test_a_run_whose_creation_did_not_commit_runs_no_step(
    postgres_db: PostgresDatabase, clock: FakeClock
) -> None:
    bodies.clear()
    async with open_platform(
        postgres_db.url, workflows=[counted_body], clock=clock, watch=False
    ) as p:
        assert p.worker is not None
        engine = p.worker.engine
        log = engine.log
        assert isinstance(log, PostgresLog)
        assert await (await p.workflows.start("counted-body", 1)).result(timeout=10) == 1

        def doomed() -> tuple[None, Callable[[], None] | None]:
            # Runs inside the cycle that also carries the next run's creation: end the
            # writer's session before that cycle commits.
            conn = log._conn
            assert conn is not None
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                pool.submit(asyncio.run, _terminate(postgres_db.url, conn.get_server_pid()))
            return None, None

        fence = log.submit(doomed)
        with pytest.raises(StoreError, match="log 'runs'"):
            await p.workflows.start("counted-body", 2)
        await asyncio.gather(fence, return_exceptions=True)
        # The next run goes through a new session; the one that was not created never runs.
        assert await (await p.workflows.start("counted-body", 3)).result(timeout=10) == 3
        await p.settle()
        assert bodies == [1, 3]
        assert sorted(run.input for run in await p.workflows.list(limit=10)) == [1, 3]
