"""Run lifecycle: starts, handles, listing, retries, timeouts, cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from platform_shim.errors import UnknownRun, UnknownWorkflow, WorkflowCancelled, WorkflowFailed
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow
from platform_shim.workflows.records import RunStatus, StepStatus

from .conftest import Opener


@define_workflow({"id": "echo"})
async def echo(input: Any, step: Any, ctx: Any) -> Any:
    return await step.run("echo", lambda: input)


@define_workflow({"id": "napper"})
async def napper(input: Any, step: Any, ctx: Any) -> str:
    await step.sleep("nap", "1h")
    return "rested"


async def test_start_returns_a_handle_and_result_the_output(open_worker: Opener) -> None:
    async with open_worker([echo]) as platform:
        handle = await platform.workflows.start("echo", {"x": [1, 2]})
        assert await handle.result(timeout=5) == {"x": [1, 2]}
        run = await handle.status()
        assert run is not None
        assert (
            run.status is RunStatus.COMPLETED and run.output == {"x": [1, 2]} and run.error is None
        )
        assert (
            run.attempt == 1 and run.completed_at is not None and run.created_at <= run.updated_at
        )
        wire = run.to_dict()
        assert set(wire) == {
            "runId",
            "workflowId",
            "status",
            "input",
            "output",
            "error",
            "attempt",
            "createdAt",
            "updatedAt",
            "completedAt",
            "parentRunId",
        }
        assert wire["status"] == "completed" and wire["workflowId"] == "echo"


async def test_unknown_workflow_lists_the_known_ids(open_worker: Opener) -> None:
    async with open_worker([echo, napper]) as platform:
        with pytest.raises(UnknownWorkflow) as caught:
            await platform.workflows.start("nope")
        assert caught.value.known == ["echo", "napper"]
        assert "echo, napper" in str(caught.value)


async def test_a_caller_chosen_run_id_makes_start_idempotent(open_worker: Opener) -> None:
    calls = 0

    @define_workflow({"id": "counted"})
    async def counted(input: Any, step: Any, ctx: Any) -> int:
        nonlocal calls
        calls += 1
        return int(input)

    async with open_worker([counted]) as platform:
        first = await platform.workflows.start("counted", 1, run_id="order-42")
        second = await platform.workflows.start("counted", 2, run_id="order-42")
        assert first.run_id == second.run_id == "order-42"
        assert await second.result(timeout=5) == 1
        assert calls == 1
        with pytest.raises(ValueError, match="run id"):
            await platform.workflows.start("counted", 3, run_id="a/b")


async def test_non_json_input_is_refused_before_anything_is_written(open_worker: Opener) -> None:
    async with open_worker([echo]) as platform:
        with pytest.raises(TypeError, match="input of workflow 'echo'"):
            await platform.workflows.start("echo", {"when": object()})
        assert await platform.workflows.list() == []


async def test_handle_to_an_existing_run_and_to_none(open_worker: Opener) -> None:
    async with open_worker([echo]) as platform:
        started = await platform.workflows.start("echo", 7)
        await started.result(timeout=5)
        again = platform.workflows.handle(started.run_id)
        assert (await again.status()).output == 7  # type: ignore[union-attr]
        missing = platform.workflows.handle("no-such-run")
        assert await missing.status() is None
        assert await missing.history() == []
        assert await missing.cancel() is False
        with pytest.raises(UnknownRun):
            await missing.result(timeout=1)


async def test_list_is_newest_first_and_filters(open_worker: Opener, clock: FakeClock) -> None:
    async with open_worker([echo, napper]) as platform:
        a = await platform.workflows.start("echo", 1)
        clock.advance(1)
        b = await platform.workflows.start("napper")
        clock.advance(1)
        c = await platform.workflows.start("echo", 2)
        await platform.settle()
        assert [r.run_id for r in await platform.workflows.list()] == [c.run_id, b.run_id, a.run_id]
        assert [r.run_id for r in await platform.workflows.list(workflow_id="echo")] == [
            c.run_id,
            a.run_id,
        ]
        assert [r.run_id for r in await platform.workflows.list(status="sleeping")] == [b.run_id]
        assert [
            r.run_id for r in await platform.workflows.list(status=RunStatus.COMPLETED, limit=1)
        ] == [c.run_id]
        with pytest.raises(ValueError, match="unknown run status"):
            await platform.workflows.list(status="done")


async def test_result_times_out_without_ending_the_run(open_worker: Opener) -> None:
    async with open_worker([napper]) as platform:
        handle = await platform.workflows.start("napper")
        with pytest.raises(TimeoutError):
            await handle.result(timeout=0.05)
        assert (await handle.status()).status is RunStatus.SLEEPING  # type: ignore[union-attr]


async def test_retries_replay_from_the_first_incomplete_step(open_worker: Opener) -> None:
    bodies: list[str] = []
    attempts: list[int] = []

    def charge() -> str:
        bodies.append("charge")
        return "ch_1"

    def ship() -> str:
        bodies.append(f"ship{len(attempts)}")
        if len(attempts) < 3:
            raise ConnectionError("carrier down")
        return "trk_1"

    @define_workflow({"id": "retrying", "options": {"retries": 3}})
    async def retrying(input: Any, step: Any, ctx: Any) -> Any:
        attempts.append(ctx.attempt)
        charge_id = await step.run("charge", charge)
        tracking = await step.run("ship", ship)
        return [charge_id, tracking]

    async with open_worker([retrying]) as platform:
        handle = await platform.workflows.start("retrying")
        assert await handle.result(timeout=5) == ["ch_1", "trk_1"]
        assert attempts == [1, 2, 3]
        assert bodies == ["charge", "ship1", "ship2", "ship3"]
        run = await handle.status()
        assert run is not None and run.attempt == 3 and run.error is None
        ship_step = (await handle.history())[1]
        assert ship_step.status is StepStatus.COMPLETED and ship_step.attempt == 3


async def test_the_last_failure_ends_the_run_failed_with_the_step_named(
    open_worker: Opener,
) -> None:
    @define_workflow({"id": "doomed", "options": {"retries": 2}})
    async def doomed(input: Any, step: Any, ctx: Any) -> None:
        await step.run("explode", lambda: 1 / 0)

    async with open_worker([doomed]) as platform:
        handle = await platform.workflows.start("doomed")
        with pytest.raises(WorkflowFailed) as caught:
            await handle.result(timeout=5)
        run = caught.value.run
        assert run.status is RunStatus.FAILED and run.attempt == 3
        assert run.error == {
            "type": "ZeroDivisionError",
            "message": "division by zero",
            "step": "explode",
        }
        failed = await handle.history()
        assert failed[0].status is StepStatus.FAILED and failed[0].error is not None


async def test_retry_backoff_waits_on_the_clock(open_worker: Opener, clock: FakeClock) -> None:
    attempts: list[int] = []

    @define_workflow({"id": "backoff", "options": {"retries": 2}})
    async def backoff(input: Any, step: Any, ctx: Any) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError("not yet")
        return "ok"

    async with open_worker([backoff], retry_backoff=lambda attempt: 1000 * attempt) as platform:
        handle = await platform.workflows.start("backoff")
        await platform.settle()
        assert attempts == [1]
        run = await handle.status()
        assert run is not None and run.status is RunStatus.QUEUED and run.attempt == 2
        assert run.error is not None and run.error["message"] == "not yet"
        clock.advance(999)
        await platform.settle()
        assert attempts == [1]
        clock.advance(1)
        await platform.settle()
        assert attempts == [1, 2]
        clock.advance(2000)
        assert await handle.result(timeout=5) == "ok"


async def test_timeout_fails_a_parked_run(open_worker: Opener, clock: FakeClock) -> None:
    @define_workflow({"id": "slowpoke", "options": {"timeoutSecs": 60}})
    async def slowpoke(input: Any, step: Any, ctx: Any) -> None:
        await step.sleep("long", "7d")

    async with open_worker([slowpoke]) as platform:
        handle = await platform.workflows.start("slowpoke")
        await platform.settle()
        clock.advance("59s")
        await platform.settle()
        assert (await handle.status()).status is RunStatus.SLEEPING  # type: ignore[union-attr]
        clock.advance("1s")
        with pytest.raises(WorkflowFailed) as caught:
            await handle.result(timeout=5)
        assert (
            caught.value.run.error is not None
            and caught.value.run.error["type"] == "WorkflowTimeout"
        )


async def test_timeout_stops_a_running_run(open_worker: Opener, clock: FakeClock) -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    @define_workflow({"id": "stuck", "options": {"timeoutSecs": 5}})
    async def stuck(input: Any, step: Any, ctx: Any) -> None:
        await step.run("hang", forever)

    async with open_worker([stuck]) as platform:
        handle = await platform.workflows.start("stuck")
        await started.wait()
        clock.advance("5s")
        with pytest.raises(WorkflowFailed, match="failed"):
            await handle.result(timeout=5)
        assert await handle.history() == []  # the hung step never finished


async def test_cancel_a_parked_run(open_worker: Opener) -> None:
    async with open_worker([napper]) as platform:
        handle = await platform.workflows.start("napper")
        await platform.settle()
        assert await handle.cancel() is True
        assert await handle.cancel() is False
        with pytest.raises(WorkflowCancelled) as caught:
            await handle.result(timeout=5)
        assert caught.value.run.status is RunStatus.CANCELLED


async def test_cancel_a_running_run_at_its_next_await(open_worker: Opener) -> None:
    started = asyncio.Event()
    after: list[str] = []

    async def blocker() -> None:
        started.set()
        await asyncio.Event().wait()

    @define_workflow({"id": "busy"})
    async def busy(input: Any, step: Any, ctx: Any) -> None:
        await step.run("block", blocker)
        after.append("went on")

    async with open_worker([busy]) as platform:
        handle = await platform.workflows.start("busy")
        await started.wait()
        assert await handle.cancel() is True
        with pytest.raises(WorkflowCancelled):
            await handle.result(timeout=5)
        await platform.settle()
        assert after == []


async def test_a_handler_that_swallows_cancellation_still_stops(open_worker: Opener) -> None:
    started = asyncio.Event()

    @define_workflow({"id": "stubborn"})
    async def stubborn(input: Any, step: Any, ctx: Any) -> str:
        try:
            started.set()
            await asyncio.Event().wait()
        except BaseException:
            pass
        await step.run("after", lambda: "should not run")
        return "finished"

    async with open_worker([stubborn]) as platform:
        handle = await platform.workflows.start("stubborn")
        await started.wait()
        await handle.cancel()
        with pytest.raises(WorkflowCancelled):
            await handle.result(timeout=5)
        await platform.settle()
        assert await handle.history() == []


async def test_a_run_id_of_another_workflow_is_a_conflict_even_when_started_concurrently(
    open_worker: Opener, data_dir: Any, clock: FakeClock
) -> None:
    from platform_shim.errors import RunIdConflict
    from platform_shim.platform import open_client

    async with open_worker([echo, napper]) as platform:
        # Both starts are in flight at once: neither has been written when the other checks.
        results = await asyncio.gather(
            platform.workflows.start("echo", {"n": 1}, run_id="x"),
            platform.workflows.start("napper", {"n": 2}, run_id="x"),
            return_exceptions=True,
        )
        conflicts = [r for r in results if isinstance(r, RunIdConflict)]
        handles = [r for r in results if not isinstance(r, BaseException)]
        assert len(conflicts) == 1 and len(handles) == 1, results
        assert "echo" in str(conflicts[0]) and "napper" in str(conflicts[0])
        run = await platform.workflows.handle("x").status()
        assert run is not None and run.workflow_id == "echo"
        # The same workflow again is an idempotent start.
        again = await platform.workflows.start("echo", {"n": 3}, run_id="x")
        assert again.run_id == "x"
        with pytest.raises(RunIdConflict):
            await platform.workflows.start("napper", run_id="x")

        client = open_client(data_dir, clock=clock)
        try:
            pair = await asyncio.gather(
                client.workflows.start("echo", run_id="y"),
                client.workflows.start("napper", run_id="y"),
                return_exceptions=True,
            )
            assert sum(isinstance(r, RunIdConflict) for r in pair) == 1, pair
            with pytest.raises(RunIdConflict):
                await client.workflows.start("napper", run_id="x")
        finally:
            client.close()


async def test_a_deadline_passed_while_no_worker_ran_applies_before_any_body_runs(
    open_worker: Opener, clock: FakeClock
) -> None:
    bodies: list[int] = []

    async def hang() -> None:
        bodies.append(1)
        await asyncio.Event().wait()

    @define_workflow({"id": "bounded", "options": {"timeoutSecs": 10}})
    async def bounded(input: Any, step: Any, ctx: Any) -> Any:
        await step.run("hang", hang)

    async with open_worker([bounded]) as platform:
        handle = await platform.workflows.start("bounded")
        for _ in range(200):
            if bodies:
                break
            await asyncio.sleep(0.01)
    clock.advance("20s")  # the worker is down past the run's deadline
    async with open_worker([bounded]) as platform:
        run = await platform.workflows.handle(handle.run_id).status()
        await platform.settle()
        run = await platform.workflows.handle(handle.run_id).status()
        assert run is not None and run.status is RunStatus.FAILED
        assert run.error is not None and run.error["type"] == "WorkflowTimeout"
    assert bodies == [1]  # the body did not start again
