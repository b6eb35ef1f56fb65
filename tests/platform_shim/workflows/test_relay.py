"""The status relay batches its writes: a run's status changes share one write to the stream,
and the relayed position is written once per interval and when the worker stops, not once per
batch. (Each of those writes is a commit on PostgreSQL: they were most of what a short run
cost besides its own two.) Both on a data folder and on PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from platform_shim.platform import Platform
from platform_shim.runtime import open_platform
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow
from platform_shim.workflows.engine import Engine


@define_workflow({"id": "one-step"})
async def one_step(input: Any, step: Any, ctx: Any) -> Any:
    return await step.run("only", lambda: input, inline=True)


@pytest.fixture(params=["file", "postgres"])
def location(request: pytest.FixtureRequest, data_dir: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_db").url
        return url
    return str(data_dir)


def engine_of(platform: Platform) -> Engine:
    assert platform.worker is not None
    return platform.worker.engine


def statuses(platform: Platform, run_id: str) -> list[str]:
    return [e.t for e in platform.stream.since(0) if e.k == run_id and e.t.startswith("workflow.")]


async def test_a_runs_status_changes_share_one_write_flushed_by_settle(
    location: str, clock: FakeClock
) -> None:
    async with open_platform(location, workflows=[one_step], clock=clock, watch=False) as p:
        relay = engine_of(p).relay
        relay.linger = 3600.0  # nothing leaves the batch but by hurrying it
        handle = await p.workflows.start("one-step", 7)
        assert await handle.result(timeout=10) == 7
        # Was: each change on the stream in the loop turn after it (three writes).
        assert statuses(p, handle.run_id) == []
        await p.settle()
        assert statuses(p, handle.run_id) == [
            "workflow.run.queued",
            "workflow.run.running",
            "workflow.run.completed",
        ]


async def test_the_relayed_position_is_written_once_per_interval_and_at_stop(
    location: str, clock: FakeClock
) -> None:
    async with open_platform(location, workflows=[one_step], clock=clock, watch=False) as p:
        engine = engine_of(p)
        assert p.worker is not None
        dispatch = p.worker.dispatcher
        engine.relay.save_interval = 3600.0
        for i in range(5):
            assert await (await p.workflows.start("one-step", i)).result(timeout=10) == i
        engine.relay.hurry()
        for _ in range(1000):  # the batch's write, then its callback moving the cursor
            if engine.relay.cursor > 0:
                break
            await asyncio.sleep(0.001)
        assert engine.relay.cursor > 0
        # Relayed, but the position is not written yet (was: a record per relayed batch).
        assert dispatch.state.relay == 0
        # A settled worker writes nothing later of its own accord: settling writes it.
        await p.settle()
        relayed = engine.relay.cursor
        assert dispatch.state.relay == relayed
    async with open_platform(location, workflows=[one_step], clock=clock, watch=False) as p:
        assert p.worker is not None
        # The stop wrote it: a restart relays nothing again.
        assert p.worker.dispatcher.state.relay == relayed
        assert engine_of(p).relay.cursor == relayed


tries: list[int] = []


@define_workflow({"id": "second-time", "options": {"retries": 1}})
async def second_time(input: Any, step: Any, ctx: Any) -> Any:
    tries.append(ctx.attempt)
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails")
    return ctx.attempt


async def test_each_event_says_what_the_run_was_when_its_change_was_noted(
    location: str, clock: FakeClock
) -> None:
    async with open_platform(
        location,
        workflows=[second_time],
        clock=clock,
        watch=False,
        retry_backoff=lambda attempt: 0,
    ) as p:
        engine_of(p).relay.linger = 3600.0  # the whole run's changes share one batch
        handle = await p.workflows.start("second-time")
        assert await handle.result(timeout=10) == 2
        await p.settle()
        events = [e.to_dict() for e in p.stream.since(0) if e.k == handle.run_id]
        # Was: every event of a batch took the run as it was when the batch was written.
        assert [(e["t"], e["data"]["attempt"]) for e in events] == [
            ("workflow.run.queued", 1),
            ("workflow.run.running", 1),
            ("workflow.run.queued", 2),
            ("workflow.run.running", 2),
            ("workflow.run.completed", 2),
        ]
        assert events[2]["data"].get("error") is None and events[4]["data"]["output"] == 2
