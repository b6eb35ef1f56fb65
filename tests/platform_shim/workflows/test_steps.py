"""The step API through the public surface: run, sleep, sleep_until, replay, naming rules."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from platform_shim.errors import DuplicateStepName, NonDeterminismError, WorkflowFailed
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow
from platform_shim.workflows.records import RunStatus, StepKind, StepStatus

from .conftest import Opener


async def test_run_records_results_and_replay_does_not_call_fn_again(
    open_worker: Opener, clock: FakeClock
) -> None:
    calls: list[str] = []

    async def fetch() -> dict[str, int]:
        calls.append("fetch")
        return {"n": 1}

    def awaitable_from_sync() -> Any:
        calls.append("lazy")

        async def later() -> str:
            return "later"

        return later()

    @define_workflow({"id": "wf"})
    async def wf(input: Any, step: Any, ctx: Any) -> Any:
        a = await step.run("async-fn", fetch)
        b = await step.run("sync-fn", lambda: calls.append("sync") or 2)
        c = await step.run("returns-awaitable", awaitable_from_sync)
        d = await step.run("none", lambda: None)
        await step.sleep("pause", "1h")
        return {"a": a, "b": b, "c": c, "d": d}

    async with open_worker([wf]) as platform:
        handle = await platform.workflows.start("wf")
        await platform.settle()
        assert calls == ["fetch", "sync", "lazy"]
        status = await handle.status()
        assert status is not None and status.status is RunStatus.SLEEPING
        clock.advance("1h")
        assert await handle.result(timeout=5) == {"a": {"n": 1}, "b": 2, "c": "later", "d": None}
        assert calls == ["fetch", "sync", "lazy"], "a completed step ran again on replay"
        history = await handle.history()
        assert [(s.name, s.kind, s.status) for s in history] == [
            ("async-fn", StepKind.RUN, StepStatus.COMPLETED),
            ("sync-fn", StepKind.RUN, StepStatus.COMPLETED),
            ("returns-awaitable", StepKind.RUN, StepStatus.COMPLETED),
            ("none", StepKind.RUN, StepStatus.COMPLETED),
            ("pause", StepKind.SLEEP, StepStatus.COMPLETED),
        ]
        assert history[4].wake_at == history[4].started_at + 3_600_000


async def test_a_week_long_sleep_takes_no_time(open_worker: Opener, clock: FakeClock) -> None:
    @define_workflow({"id": "weekly"})
    async def weekly(input: Any, step: Any, ctx: Any) -> str:
        await step.sleep("week", "7d")
        await step.sleep("ms", 500)
        await step.sleep("delta", timedelta(seconds=30))
        return "done"

    async with open_worker([weekly]) as platform:
        handle = await platform.workflows.start("weekly")
        await platform.settle()
        clock.advance("6d")
        await platform.settle()
        assert (await handle.status()).status is RunStatus.SLEEPING  # type: ignore[union-attr]
        clock.advance("1d")
        await platform.settle()
        clock.advance(500)
        await platform.settle()
        clock.advance("30s")
        assert await handle.result(timeout=5) == "done"


async def test_sleep_until_past_returns_at_once_and_future_parks(
    open_worker: Opener, clock: FakeClock
) -> None:
    now = clock.now_ms()

    @define_workflow({"id": "until"})
    async def until(input: Any, step: Any, ctx: Any) -> str:
        await step.sleep_until("past", now - 1000)
        await step.sleep_until("future", datetime.fromtimestamp((now + 60_000) / 1000, UTC))
        return "woke"

    async with open_worker([until]) as platform:
        handle = await platform.workflows.start("until")
        await platform.settle()
        history = await handle.history()
        assert [(s.name, s.status) for s in history] == [
            ("past", StepStatus.COMPLETED),
            ("future", StepStatus.PENDING),
        ]
        clock.advance("1m")
        assert await handle.result(timeout=5) == "woke"


@pytest.mark.parametrize("bad", ["5w", -1, "soon", True, None])
async def test_bad_durations_fail_the_attempt_naming_the_value(
    open_worker: Opener, bad: Any
) -> None:
    @define_workflow({"id": "bad", "options": {"retries": 0}})
    async def bad_sleep(input: Any, step: Any, ctx: Any) -> None:
        await step.sleep("nap", bad)

    async with open_worker([bad_sleep]) as platform:
        handle = await platform.workflows.start("bad")
        with pytest.raises(WorkflowFailed) as caught:
            await handle.result(timeout=5)
        assert caught.value.run.error is not None
        assert repr(bad) in caught.value.run.error["message"]
        assert caught.value.run.error["step"] == "nap"


async def test_naive_datetime_is_refused(open_worker: Opener) -> None:
    @define_workflow({"id": "naive", "options": {"retries": 0}})
    async def naive(input: Any, step: Any, ctx: Any) -> None:
        await step.sleep_until("when", datetime(2030, 1, 1))

    async with open_worker([naive]) as platform:
        with pytest.raises(WorkflowFailed, match="aware datetime"):
            await (await platform.workflows.start("naive")).result(timeout=5)


async def test_duplicate_step_name_fails_without_retry(open_worker: Opener) -> None:
    attempts: list[int] = []

    @define_workflow({"id": "dup", "options": {"retries": 5}})
    async def dup(input: Any, step: Any, ctx: Any) -> None:
        attempts.append(ctx.attempt)
        await step.run("same", lambda: 1)
        await step.run("same", lambda: 2)

    async with open_worker([dup]) as platform:
        handle = await platform.workflows.start("dup")
        with pytest.raises(WorkflowFailed) as caught:
            await handle.result(timeout=5)
        assert caught.value.run.error == {
            "type": "DuplicateStepName",
            "message": str(DuplicateStepName(handle.run_id, "same")),
            "step": "same",
        }
        assert attempts == [1]


async def test_a_changed_step_kind_on_replay_is_non_determinism(
    open_worker: Opener, clock: FakeClock, data_dir: Path
) -> None:
    @define_workflow({"id": "shifty", "options": {"retries": 5}})
    async def before(input: Any, step: Any, ctx: Any) -> None:
        await step.sleep("gap", "1h")

    async with open_worker([before]) as platform:
        handle = await platform.workflows.start("shifty")
        await platform.settle()
        run_id = handle.run_id

    @define_workflow({"id": "shifty", "options": {"retries": 5}})
    async def after(input: Any, step: Any, ctx: Any) -> None:
        await step.run("gap", lambda: 1)

    async with open_worker([after]) as platform:
        clock.advance("1h")
        with pytest.raises(WorkflowFailed) as caught:
            await platform.workflows.handle(run_id).result(timeout=5)
        error = caught.value.run.error
        assert error is not None and error["type"] == "NonDeterminismError"
        assert str(NonDeterminismError(run_id, "gap", "sleep", "run")) == error["message"]
        assert caught.value.run.attempt == 1


async def test_non_json_step_output_fails_naming_the_step(open_worker: Opener) -> None:
    @define_workflow({"id": "setty", "options": {"retries": 0}})
    async def setty(input: Any, step: Any, ctx: Any) -> None:
        await step.run("make-set", lambda: {1, 2})

    async with open_worker([setty]) as platform:
        handle = await platform.workflows.start("setty")
        with pytest.raises(WorkflowFailed) as caught:
            await handle.result(timeout=5)
        assert caught.value.run.error is not None
        assert caught.value.run.error["type"] == "TypeError"
        assert "make-set" in caught.value.run.error["message"]
        assert caught.value.run.error["step"] == "make-set"
        # The refused output is recorded as the step's failure, so the history says why.
        [failed] = await handle.history()
        assert failed.name == "make-set" and failed.status is StepStatus.FAILED
        assert failed.error is not None and failed.error["type"] == "TypeError"


async def test_step_output_over_the_limit_fails_that_step(open_worker: Opener) -> None:
    @define_workflow({"id": "big", "options": {"retries": 0}})
    async def big(input: Any, step: Any, ctx: Any) -> None:
        await step.run("huge", lambda: "x" * 2000)

    async with open_worker([big], output_limit=1000) as platform:
        with pytest.raises(WorkflowFailed) as caught:
            await (await platform.workflows.start("big")).result(timeout=5)
        error = caught.value.run.error
        assert (
            error is not None
            and error["type"] == "StepOutputTooLarge"
            and "huge" in error["message"]
        )


@pytest.mark.slow
async def test_ten_thousand_steps_run_and_replay(open_worker: Opener, clock: FakeClock) -> None:
    runs = 0

    @define_workflow({"id": "long"})
    async def long(input: Any, step: Any, ctx: Any) -> int:
        nonlocal runs
        total = 0
        for i in range(10_000):
            total += await step.run(f"s{i}", lambda i=i: i)
        runs += 1
        await step.sleep("rest", "1s")
        return total

    # No suspended activations kept: the run is unwound at its sleep and replays on waking.
    async with open_worker([long], max_suspended=0) as platform:
        handle = await platform.workflows.start("long")
        await platform.settle(timeout=300)  # 10,000 sequential fsyncs on a shared machine
        clock.advance("1s")
        assert await handle.result(timeout=60) == sum(range(10_000))
        assert runs == 2  # once to the sleep, once replayed from the ledger
        assert len(await handle.history()) == 10_001


async def test_code_outside_steps_reruns_on_every_replay(
    open_worker: Opener, clock: FakeClock
) -> None:
    passes: list[int] = []

    @define_workflow({"id": "replays"})
    async def replays(input: Any, step: Any, ctx: Any) -> int:
        passes.append(1)
        await step.sleep("one", "1s")
        await step.sleep("two", "1s")
        return len(passes)

    # A run unwound at each park (no suspended activations kept) replays from the top.
    async with open_worker([replays], max_suspended=0) as platform:
        handle = await platform.workflows.start("replays")
        await platform.settle()
        clock.advance("1s")
        await platform.settle()
        clock.advance("1s")
        assert await handle.result(timeout=5) == 3


async def test_a_suspended_run_continues_where_it_parked(
    open_worker: Opener, clock: FakeClock
) -> None:
    passes: list[int] = []

    @define_workflow({"id": "continues"})
    async def continues(input: Any, step: Any, ctx: Any) -> int:
        passes.append(1)
        await step.sleep("one", "1s")
        await step.sleep("two", "1s")
        return len(passes)

    async with open_worker([continues]) as platform:
        handle = await platform.workflows.start("continues")
        await platform.settle()
        clock.advance("1s")
        await platform.settle()
        clock.advance("1s")
        assert await handle.result(timeout=5) == 1  # never replayed


async def test_a_caught_step_failure_replays_the_same_way(
    open_worker: Opener, clock: FakeClock
) -> None:
    bodies = 0

    def flaky() -> None:
        nonlocal bodies
        bodies += 1
        raise RuntimeError("card declined")

    @define_workflow({"id": "catcher"})
    async def catcher(input: Any, step: Any, ctx: Any) -> str:
        try:
            await step.run("charge", flaky)
        except Exception as exc:
            outcome = f"caught {exc}"
        await step.sleep("wait", "1s")
        return outcome

    async with open_worker([catcher]) as platform:
        handle = await platform.workflows.start("catcher")
        await platform.settle()
        clock.advance("1s")
        result = await handle.result(timeout=5)
        assert "card declined" in result
        assert bodies == 1


async def test_steps_see_the_platform_services(open_worker: Opener) -> None:
    @define_workflow({"id": "services"})
    async def services(input: Any, step: Any, ctx: Any) -> Any:
        await step.run("put", lambda: ctx.kv.put("ns", "k", {"v": ctx.attempt}))
        doc_id = await step.run(
            "insert", lambda: ctx.database.insert_one("users", {"email": input["email"]})
        )
        user = await step.run("fetch", lambda: ctx.database.find_one("users", {"_id": doc_id}))
        return {
            "run": ctx.run_id == ctx.platform.workflows.handle(ctx.run_id).run_id,
            "wf": ctx.workflow_id,
            "user": user["email"],
        }

    async with open_worker([services]) as platform:
        handle = await platform.workflows.start("services", {"email": "a@b.c"})
        assert await handle.result(timeout=5) == {"run": True, "wf": "services", "user": "a@b.c"}
        assert await platform.kv.get("ns", "k") == {"v": 1}


async def test_parked_runs_hold_no_task(open_worker: Opener) -> None:
    @define_workflow({"id": "parker"})
    async def parker(input: Any, step: Any, ctx: Any) -> None:
        await step.wait_for_event("never", type="nothing")

    # Suspended activations are a bounded cache: past it, parked runs hold no task.
    async with open_worker([parker], max_suspended=10) as platform:
        handles = await asyncio.gather(*(platform.workflows.start("parker") for _ in range(50)))
        await platform.settle()
        assert platform.worker is not None
        assert platform.worker.engine.active_count() <= 10
        for handle in handles:
            assert (await handle.status()).status is RunStatus.WAITING_EVENT  # type: ignore[union-attr]
    async with open_worker([parker], max_suspended=0) as platform:
        await platform.settle()
        assert platform.worker is not None
        assert platform.worker.engine.active_count() == 0  # recovered parked runs: no task at all
