"""Background loops are supervised: a crash is logged and the loop starts again."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from platform_shim import open_platform
from platform_shim.background import supervise
from platform_shim.events import on_kv_change
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow
from platform_shim.workflows.records import RunStatus
from platform_shim.workflows.waiting import Waiting
from tests.support.waiting import wait_until_async


async def test_supervise_restarts_a_crashed_loop_and_logs_each_crash(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[int] = []

    async def loop() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError(f"crash {len(calls)}")

    log = logging.getLogger("test.supervise")
    with caplog.at_level(logging.ERROR, logger="test.supervise"):
        await asyncio.wait_for(supervise("the loop", loop, log, first_pause=0.001), 5)
    assert len(calls) == 3
    crashes = [r for r in caplog.records if "the loop crashed" in r.getMessage()]
    assert len(crashes) == 2 and all(r.exc_info for r in crashes)


async def test_a_handler_consumer_that_crashes_is_restarted(
    data_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    @on_kv_change({"namespace": "sup"})
    async def handler(event: Any, ctx: Any) -> None:
        seen.append(event["key"])

    async with open_platform(data_dir, handlers=[handler], clock=clock, watch=False) as platform:
        dispatcher = platform.worker.dispatcher  # type: ignore[union-attr]
        real_save = dispatcher.save_cursor
        crashed: list[int] = []

        def save_cursor(key: str, cursor: int) -> None:
            if not crashed:  # fault injection: the consumer loop's bookkeeping raises once
                crashed.append(cursor)
                raise RuntimeError("injected")
            real_save(key, cursor)

        monkeypatch.setattr(dispatcher, "save_cursor", save_cursor)
        await platform.kv.put("sup", "a", 1)
        await wait_until_async(lambda: crashed, what="the consumer's bookkeeping to raise")
        await platform.kv.put("sup", "b", 2)
        await wait_until_async(lambda: "b" in seen, what="the restarted consumer to see 'b'")


@define_workflow({"id": "sup-sleeper"})
async def sup_sleeper(input: Any, step: Any, ctx: Any) -> Any:
    await step.sleep("nap", "1h")
    return input


async def test_one_run_that_cannot_be_recovered_stops_no_other(
    data_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_platform(data_dir, workflows=[sup_sleeper], clock=clock, watch=False) as p:
        bad = await p.workflows.start("sup-sleeper", "bad", run_id="bad")
        good = await p.workflows.start("sup-sleeper", "good", run_id="good")
        await p.settle()
    real_park = Waiting.park

    def park(self: Waiting, run: Any, step: Any) -> Any:
        if run.run_id == "bad":
            raise RuntimeError("injected recovery failure")
        return real_park(self, run, step)

    monkeypatch.setattr(Waiting, "park", park)
    async with open_platform(data_dir, workflows=[sup_sleeper], clock=clock, watch=False) as p:
        clock.advance("1h")
        assert await p.workflows.handle(good.run_id).result(timeout=5) == "good"
        run = await p.workflows.handle(bad.run_id).status()
        assert run is not None and run.status is RunStatus.FAILED
        assert "could not be recovered" in run.error["message"]  # type: ignore[index]
