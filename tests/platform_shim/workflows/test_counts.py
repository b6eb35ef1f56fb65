"""Counts of runs by status, for all workflows or one, from the worker and from a client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from platform_shim.errors import WorkflowFailed
from platform_shim.platform import open_client
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow

from .conftest import Opener


@define_workflow({"id": "ok"})
async def ok(input: Any, step: Any, ctx: Any) -> Any:
    return await step.run("one", lambda: 1)


@define_workflow({"id": "bad", "options": {"retries": 0}})
async def bad(input: Any, step: Any, ctx: Any) -> Any:
    raise RuntimeError("no")


@define_workflow({"id": "nap"})
async def nap(input: Any, step: Any, ctx: Any) -> Any:
    await step.sleep("z", "1h")


async def test_counts_by_workflow_follow_every_status_change(
    open_worker: Opener, clock: FakeClock, data_dir: Path
) -> None:
    async with open_worker([ok, bad, nap]) as platform:
        workflows = platform.workflows
        for _ in range(3):
            await (await workflows.start("ok")).result(timeout=5)
        with pytest.raises(WorkflowFailed):
            await (await workflows.start("bad")).result(timeout=5)
        sleeper = await workflows.start("nap")
        await platform.settle()
        assert await workflows.counts() == {
            **dict.fromkeys(
                ["queued", "running", "sleeping", "waiting_event", "completed", "failed"], 0
            ),
            "cancelled": 0,
            "completed": 3,
            "failed": 1,
            "sleeping": 1,
        }
        ok_counts = await workflows.counts("ok")
        assert (ok_counts["completed"], sum(ok_counts.values())) == (3, 3)
        assert (await workflows.counts("bad"))["failed"] == 1
        assert (await workflows.counts("nap"))["sleeping"] == 1
        assert set((await workflows.counts("nobody")).values()) == {0}
        await sleeper.cancel()
        await platform.settle()
        nap_counts = await workflows.counts("nap")
        assert (nap_counts["sleeping"], nap_counts["cancelled"]) == (0, 1)
        client = open_client(data_dir, clock=clock)
        assert await client.workflows.counts("nap") == nap_counts
        assert await client.workflows.counts("ok") == ok_counts
