"""Workflow code behaves as Python promises: cleanup blocks run when the code around them ends
(not at every park), wake-ups are not lost while a run unwinds, parallel steps record exactly
once, and sync bodies do not stall the loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from platform_shim.errors import WorkflowFailed
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow
from platform_shim.workflows.records import RunStatus, StepStatus

from .conftest import Opener

calls: list[str] = []


@define_workflow({"id": "lease"})
async def lease(input: Any, step: Any, ctx: Any) -> Any:
    await step.run("acquire-lease", lambda: calls.append("acquire") or "lease-1")
    try:
        await step.sleep("hold", "1h")
        await step.run("use-lease", lambda: calls.append("use") or "used")
    finally:
        await step.run("release-lease", lambda: calls.append("release") or "released")
    return "ok"


@pytest.mark.parametrize("max_suspended", [2000, 0], ids=["suspended", "unwound-at-park"])
async def test_finally_runs_when_the_code_around_it_ends_not_at_a_park(
    open_worker: Opener, clock: FakeClock, max_suspended: int
) -> None:
    calls.clear()
    async with open_worker([lease], max_suspended=max_suspended) as platform:
        handle = await platform.workflows.start("lease")
        await platform.settle()
        # Parked on "hold": the lease is not released (nor recorded released) while it waits.
        assert [s.name for s in await handle.history()] == ["acquire-lease", "hold"]
        assert calls == ["acquire"]
        clock.advance("1h")
        assert await handle.result(timeout=5) == "ok"
    assert [s.name for s in await handle.history()] == [
        "acquire-lease",
        "hold",
        "use-lease",
        "release-lease",
    ]
    assert calls == ["acquire", "use", "release"]


class SlowClient:
    """An async context manager whose exit awaits (closing a connection, say)."""

    async def __aenter__(self) -> SlowClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.sleep(0.2)


@define_workflow({"id": "slow-exit"})
async def slow_exit(input: Any, step: Any, ctx: Any) -> Any:
    async with SlowClient():
        got = await step.wait_for_event("reply", type="slow.reply")
    return got


async def test_a_wake_up_while_the_run_unwinds_is_not_lost(open_worker: Opener) -> None:
    # Unwound at its park (no suspended activations kept): while __aexit__ awaits, the event
    # arrives and finishes the wait; the activation ends after that and must look again.
    async with open_worker([slow_exit], max_suspended=0) as platform:
        handle = await platform.workflows.start("slow-exit")
        for _ in range(500):
            run = await handle.status()
            if run is not None and run.status is RunStatus.WAITING_EVENT:
                break
            await asyncio.sleep(0.005)
        assert await platform.workflows.send_event("slow.reply", {"ok": 1}) == 1
        assert await handle.result(timeout=10) == {"ok": 1}


charges: list[str] = []


@define_workflow({"id": "gathered"})
async def gathered(input: Any, step: Any, ctx: Any) -> Any:
    charge, _, reply = await asyncio.gather(
        step.run("charge", lambda: charges.append(input) or f"ch_{input}"),
        step.sleep("cool-off", "1s"),
        step.wait_for_event("approve", type="approval", match={"order": input}),
    )
    return {"charge": charge, "reply": reply}


@pytest.mark.parametrize("max_suspended", [2000, 0], ids=["suspended", "unwound-at-park"])
async def test_gathered_steps_record_once_and_park_together(
    open_worker: Opener, clock: FakeClock, max_suspended: int
) -> None:
    charges.clear()
    async with open_worker([gathered], max_suspended=max_suspended) as platform:
        handle = await platform.workflows.start("gathered", "o1")
        await platform.settle()
        run = await handle.status()
        assert run is not None and run.status is RunStatus.WAITING_EVENT
        clock.advance("1s")
        await platform.settle()
        assert await platform.workflows.send_event("approval", {"order": "o2"}) == 0
        assert await platform.workflows.send_event("approval", {"order": "o1"}) == 1
        assert await handle.result(timeout=5) == {"charge": "ch_o1", "reply": {"order": "o1"}}
    assert charges == ["o1"]  # the card is charged once
    history = await handle.history()
    assert sorted(s.name for s in history) == ["approve", "charge", "cool-off"]
    assert all(s.status is StepStatus.COMPLETED for s in history)


@define_workflow({"id": "two-waits"})
async def two_waits(input: Any, step: Any, ctx: Any) -> Any:
    async with asyncio.TaskGroup() as group:
        a = group.create_task(step.wait_for_event("a", type="pick", match={"slot": "a"}))
        b = group.create_task(step.wait_for_event("b", type="pick", match={"slot": "b"}))
    return [a.result(), b.result()]


async def test_a_task_group_of_waits_each_gets_its_own_event(open_worker: Opener) -> None:
    async with open_worker([two_waits]) as platform:
        handle = await platform.workflows.start("two-waits")
        await platform.settle()
        assert await platform.workflows.send_event("pick", {"slot": "b", "n": 2}) == 1
        assert await platform.workflows.send_event("pick", {"slot": "a", "n": 1}) == 1
        assert await handle.result(timeout=5) == [{"slot": "a", "n": 1}, {"slot": "b", "n": 2}]


async def test_a_sync_step_body_runs_off_the_event_loop(open_worker: Opener) -> None:
    release = threading.Event()

    @define_workflow({"id": "blocking"})
    async def blocking(input: Any, step: Any, ctx: Any) -> Any:
        # Blocks its thread until the loop sets the event: on the loop it would deadlock (and
        # give up after 5 s, returning False).
        return await step.run("block", lambda: release.wait(5))

    async with open_worker([blocking]) as platform:
        handle = await platform.workflows.start("blocking")
        asyncio.get_running_loop().call_later(0.05, release.set)
        assert await handle.result(timeout=10) is True

    @define_workflow({"id": "inline"})
    async def inline(input: Any, step: Any, ctx: Any) -> Any:
        return await step.run("where", lambda: threading.current_thread().name, inline=True)

    async with open_worker([inline]) as platform:
        handle = await platform.workflows.start("inline")
        assert await handle.result(timeout=5) == threading.current_thread().name


async def test_a_body_that_swallows_cancellation_records_nothing_after_the_cancel(
    open_worker: Opener,
) -> None:
    entered = asyncio.Event()

    async def stubborn() -> str:
        entered.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "ignored the cancel"
        return "slept"

    @define_workflow({"id": "stubborn"})
    async def stubborn_flow(input: Any, step: Any, ctx: Any) -> Any:
        return await step.run("stubborn", stubborn)

    async with open_worker([stubborn_flow]) as platform:
        handle = await platform.workflows.start("stubborn")
        await asyncio.wait_for(entered.wait(), 5)
        assert await handle.cancel() is True
        await platform.settle()
        run = await handle.status()
        assert run is not None and run.status is RunStatus.CANCELLED
        assert await handle.history() == []


async def test_an_error_between_steps_names_no_step(open_worker: Opener) -> None:
    @define_workflow({"id": "between", "options": {"retries": 0}})
    async def between(input: Any, step: Any, ctx: Any) -> Any:
        order = await step.run("load-order", lambda: None)
        return order["total"]  # TypeError outside any step

    async with open_worker([between]) as platform:
        with pytest.raises(WorkflowFailed) as caught:
            await (await platform.workflows.start("between")).result(timeout=5)
        error = caught.value.run.error
        assert error is not None and error["type"] == "TypeError" and "step" not in error


async def test_a_step_name_that_cannot_be_encoded_is_refused_at_the_call(
    open_worker: Opener,
) -> None:
    @define_workflow({"id": "surrogate", "options": {"retries": 0}})
    async def surrogate(input: Any, step: Any, ctx: Any) -> Any:
        return await step.run("file-\udcff", lambda: 1)

    async with open_worker([surrogate]) as platform:
        with pytest.raises(WorkflowFailed) as caught:
            await (await platform.workflows.start("surrogate")).result(timeout=5)
        assert "cannot be encoded" in caught.value.run.error["message"]  # type: ignore[index]
