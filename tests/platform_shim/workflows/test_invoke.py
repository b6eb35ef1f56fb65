"""step.invoke: child runs, their failures, timeouts, cancellation, and replay."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from platform_shim.errors import StepTimeout, WorkflowCancelled, WorkflowFailed
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow
from platform_shim.workflows.records import RunStatus, StepKind, StepStatus

from .conftest import Opener

children_started: list[str] = []


@define_workflow({"id": "invoice-builder"})
async def invoice_builder(input: Any, step: Any, ctx: Any) -> Any:
    children_started.append(ctx.run_id)
    return await step.run("build", lambda: {"id": f"inv_{input['orderId']}"})


@define_workflow({"id": "failing-child", "options": {"retries": 0}})
async def failing_child(input: Any, step: Any, ctx: Any) -> None:
    await step.run("boom", lambda: 1 / 0)


@define_workflow({"id": "sleepy-child"})
async def sleepy_child(input: Any, step: Any, ctx: Any) -> str:
    await step.sleep("zz", "2h")
    return "late"


@define_workflow({"id": "parent"})
async def parent(input: Any, step: Any, ctx: Any) -> Any:
    invoice = await step.invoke(
        "generate-invoice",
        input["child"],
        {"orderId": "ord_42"},
        timeout=input.get("timeout", "1h"),
    )
    await step.sleep("after", "1s")
    return invoice


async def test_invoke_returns_the_child_output_and_replay_starts_no_second_child(
    open_worker: Opener, clock: FakeClock
) -> None:
    children_started.clear()
    async with open_worker([parent, invoice_builder]) as platform:
        handle = await platform.workflows.start("parent", {"child": "invoice-builder"})
        await platform.settle()
        clock.advance("1s")
        assert await handle.result(timeout=5) == {"id": "inv_ord_42"}
        assert len(children_started) == 1
        step = (await handle.history())[0]
        assert step.kind is StepKind.INVOKE and step.status is StepStatus.COMPLETED
        child = await platform.workflows.handle(step.child_run_id or "").status()
        assert (
            child is not None
            and child.parent_run_id == handle.run_id
            and child.status is RunStatus.COMPLETED
        )


async def test_a_failed_child_raises_in_the_parent(open_worker: Opener) -> None:
    @define_workflow({"id": "catching-parent"})
    async def catching_parent(input: Any, step: Any, ctx: Any) -> str:
        try:
            await step.invoke("child", "failing-child")
        except WorkflowFailed as exc:
            return f"child failed: {exc.run.status.value} {exc.run.workflow_id}"
        return "no"

    async with open_worker([catching_parent, failing_child]) as platform:
        handle = await platform.workflows.start("catching-parent")
        assert await handle.result(timeout=5) == "child failed: failed failing-child"


async def test_an_uncaught_child_failure_fails_the_parent_attempt(open_worker: Opener) -> None:
    @define_workflow({"id": "strict-parent", "options": {"retries": 1}})
    async def strict_parent(input: Any, step: Any, ctx: Any) -> None:
        await step.invoke("child", "failing-child")

    async with open_worker([strict_parent, failing_child]) as platform:
        handle = await platform.workflows.start("strict-parent")
        with pytest.raises(WorkflowFailed) as caught:
            await handle.result(timeout=5)
        assert caught.value.run.attempt == 2
        assert (
            caught.value.run.error is not None
            and caught.value.run.error["type"] == "WorkflowFailed"
        )
        # Each attempt started its own child.
        children = [r for r in await platform.workflows.list(workflow_id="failing-child")]
        assert len(children) == 2


async def test_a_child_that_outlives_the_timeout_raises_step_timeout(
    open_worker: Opener, clock: FakeClock
) -> None:
    @define_workflow({"id": "impatient", "options": {"retries": 0}})
    async def impatient(input: Any, step: Any, ctx: Any) -> str:
        try:
            await step.invoke("child", "sleepy-child", timeout="1h")
        except StepTimeout:
            return "gave up"
        return "got it"

    async with open_worker([impatient, sleepy_child]) as platform:
        handle = await platform.workflows.start("impatient")
        await platform.settle()
        clock.advance("1h")
        assert await handle.result(timeout=5) == "gave up"


async def test_cancelling_a_parent_cancels_the_child_it_waits_on(open_worker: Opener) -> None:
    async with open_worker([parent, sleepy_child]) as platform:
        handle = await platform.workflows.start("parent", {"child": "sleepy-child"})
        await platform.settle()
        child_id = (await handle.history())[0].child_run_id
        assert child_id is not None
        assert await handle.cancel() is True
        with pytest.raises(WorkflowCancelled):
            await platform.workflows.handle(child_id).result(timeout=5)


async def test_cancelling_the_child_raises_in_the_parent(open_worker: Opener) -> None:
    @define_workflow({"id": "watcher"})
    async def watcher(input: Any, step: Any, ctx: Any) -> str:
        try:
            await step.invoke("child", "sleepy-child")
        except WorkflowCancelled:
            return "child was cancelled"
        return "no"

    async with open_worker([watcher, sleepy_child]) as platform:
        handle = await platform.workflows.start("watcher")
        await platform.settle()
        child_id = (await handle.history())[0].child_run_id
        assert child_id is not None
        assert await platform.workflows.handle(child_id).cancel() is True
        assert await handle.result(timeout=5) == "child was cancelled"


async def test_invoking_an_unknown_workflow_fails_the_attempt(open_worker: Opener) -> None:
    async with open_worker([parent]) as platform:
        handle = await platform.workflows.start("parent", {"child": "ghost"})
        with pytest.raises(WorkflowFailed, match="ghost"):
            await handle.result(timeout=5)
        await asyncio.sleep(0)


async def test_invoke_takes_the_seed_options_dict_as_its_fourth_argument(
    open_worker: Opener, clock: FakeClock
) -> None:
    @define_workflow({"id": "seed-shaped", "options": {"retries": 0}})
    async def seed_shaped(input: Any, step: Any, ctx: Any) -> Any:
        try:
            await step.invoke(
                "arrange-shipment", "sleepy-child", {"orderId": 1}, {"timeout": "90m"}
            )
        except StepTimeout:
            return "timed out"
        return "shipped"

    async with open_worker([seed_shaped, sleepy_child]) as platform:
        handle = await platform.workflows.start("seed-shaped")
        await platform.settle()
        step = (await handle.history())[0]
        assert step.timeout_at == step.started_at + 90 * 60_000
        clock.advance("90m")  # the child sleeps 2 h
        assert await handle.result(timeout=5) == "timed out"


@pytest.mark.parametrize(
    ("options", "message"),
    [({"timeout": "2h", "retries": 3}, "unknown invoke option"), ("soon", "soon")],
)
async def test_invoke_refuses_bad_options_naming_them(
    open_worker: Opener, options: Any, message: str
) -> None:
    @define_workflow({"id": "bad-options", "options": {"retries": 0}})
    async def bad_options(input: Any, step: Any, ctx: Any) -> Any:
        await step.invoke("child", "sleepy-child", None, options)

    async with open_worker([bad_options, sleepy_child]) as platform:
        handle = await platform.workflows.start("bad-options")
        with pytest.raises(WorkflowFailed) as caught:
            await handle.result(timeout=5)
        assert message in caught.value.run.error["message"]  # type: ignore[index]


async def test_a_timed_out_invoke_cancels_its_child_unless_abandoned(
    open_worker: Opener, clock: FakeClock
) -> None:
    @define_workflow({"id": "hasty", "options": {"retries": 0}})
    async def hasty(input: Any, step: Any, ctx: Any) -> str:
        try:
            await step.invoke("child", "sleepy-child", None, {"timeout": "1h", **input})
        except StepTimeout:
            return "gave up"
        return "got it"

    async with open_worker([hasty, sleepy_child]) as platform:
        cancel = await platform.workflows.start("hasty", {})
        abandon = await platform.workflows.start("hasty", {"onParentClose": "abandon"})
        await platform.settle()
        clock.advance("1h")
        assert await cancel.result(timeout=5) == "gave up"
        assert await abandon.result(timeout=5) == "gave up"
        await platform.settle()
        cancelled_child = (await cancel.history())[0].child_run_id
        abandoned_child = (await abandon.history())[0].child_run_id
        child = await platform.workflows.handle(cancelled_child or "").status()
        assert child is not None and child.status is RunStatus.CANCELLED
        kept = await platform.workflows.handle(abandoned_child or "").status()
        assert kept is not None and kept.status is RunStatus.SLEEPING
        clock.advance("1h")
        assert await platform.workflows.handle(abandoned_child or "").result(timeout=5) == "late"


async def test_a_parent_that_fails_cancels_its_running_children(
    open_worker: Opener, clock: FakeClock
) -> None:
    @define_workflow({"id": "doomed", "options": {"retries": 0}})
    async def doomed(input: Any, step: Any, ctx: Any) -> Any:
        async def fail_later() -> None:
            await step.sleep("a-moment", "1s")
            await step.run("boom", lambda: 1 / 0)

        await asyncio.gather(step.invoke("child", "sleepy-child"), fail_later())

    async with open_worker([doomed, sleepy_child]) as platform:
        handle = await platform.workflows.start("doomed")
        await platform.settle()
        clock.advance("1s")
        with pytest.raises(WorkflowFailed):
            await handle.result(timeout=5)
        await platform.settle()
        children = await platform.workflows.list(workflow_id="sleepy-child")
        assert [c.status for c in children] == [RunStatus.CANCELLED]


async def test_a_child_cancelled_by_an_operator_fails_the_parent_without_a_replacement(
    open_worker: Opener,
) -> None:
    @define_workflow({"id": "patient", "options": {"retries": 3}})
    async def patient(input: Any, step: Any, ctx: Any) -> Any:
        return await step.invoke("child", "sleepy-child")

    async with open_worker([patient, sleepy_child]) as platform:
        handle = await platform.workflows.start("patient")
        await platform.settle()
        child_id = (await handle.history())[0].child_run_id
        assert await platform.workflows.handle(child_id or "").cancel() is True
        with pytest.raises(WorkflowFailed) as caught:
            await handle.result(timeout=5)
        error = caught.value.run.error
        assert error is not None and error["type"] == "WorkflowCancelled"
        assert error["step"] == "child"
        assert caught.value.run.attempt == 1  # no retry, so no second child
        await platform.settle()
        assert len(await platform.workflows.list(workflow_id="sleepy-child")) == 1
