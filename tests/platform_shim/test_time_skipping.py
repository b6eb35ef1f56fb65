"""``FakeClock.auto_advance``: time skips to the next timer whenever the worker is idle with a
run parked, and only then."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from platform_shim.runtime import open_platform
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow

DAY = 86_400_000


@define_workflow({"id": "patient"})
async def patient(input: Any, step: Any, ctx: Any) -> Any:
    await step.sleep("a-day", "24h")
    reply = await step.wait_for_event("reply", type="reply", timeout="7d")
    return {"replied": reply is not None}


async def test_a_parked_run_is_skipped_to_its_end(data_dir: Path, clock: FakeClock) -> None:
    async with open_platform(data_dir, workflows=[patient], clock=clock, watch=False) as platform:
        start = clock.now_ms()
        clock.auto_advance = True
        handle = await platform.workflows.start("patient")
        assert await handle.result(timeout=30) == {"replied": False}
        # Exactly the run's own timers: the day's sleep, then the week's wait.
        assert clock.now_ms() == start + 8 * DAY
        history = await handle.history()
        assert [(s.name, s.status.value) for s in history] == [
            ("a-day", "completed"),
            ("reply", "completed"),
        ]


async def test_no_run_parked_no_skipping(data_dir: Path, clock: FakeClock) -> None:
    async with open_platform(data_dir, clock=clock, watch=False) as platform:
        await platform.kv.put("ns", "k", 1, ttl=3600)  # a timer (the TTL sweep) but no run
        clock.auto_advance = True
        start = clock.now_ms()
        for _ in range(20):
            await asyncio.sleep(0.005)
        await platform.settle()
        assert clock.now_ms() == start
        assert await platform.kv.get("ns", "k") == 1


async def test_turned_off_it_stops(data_dir: Path, clock: FakeClock) -> None:
    async with open_platform(data_dir, workflows=[patient], clock=clock, watch=False) as platform:
        clock.auto_advance = True
        clock.auto_advance = False
        start = clock.now_ms()
        handle = await platform.workflows.start("patient")
        await platform.settle()
        for _ in range(20):
            await asyncio.sleep(0.005)
        assert clock.now_ms() == start
        assert (await handle.status()).status == "sleeping"  # type: ignore[union-attr]
