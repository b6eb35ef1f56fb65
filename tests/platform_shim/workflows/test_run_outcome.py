"""What a finished run says about its steps: which step an error is blamed on, and what became
of the steps a run left open when it ended."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from platform_shim.errors import WorkflowCancelled, WorkflowFailed
from platform_shim.platform import open_client
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow
from platform_shim.workflows.records import StepStatus

from .conftest import Opener


@define_workflow({"id": "lookup", "options": {"retries": 0}})
async def lookup(input: Any, step: Any, ctx: Any) -> Any:
    order = await step.run("load-order", lambda: None)  # not found: the step itself succeeds
    if order is None:
        raise LookupError(f"no order {input['orderId']!r}")  # outside any step
    return order


@define_workflow({"id": "charging", "options": {"retries": 0}})
async def charging(input: Any, step: Any, ctx: Any) -> Any:
    await step.run("load-order", lambda: {"total": 5})

    def decline() -> None:
        raise RuntimeError("card declined")

    return await step.run("charge", decline)


@define_workflow({"id": "parked"})
async def parked(input: Any, step: Any, ctx: Any) -> Any:
    await step.run("submit", lambda: 1)
    await step.wait_for_event("approval", type="order.approved", timeout="14d")
    await step.sleep("cool-off", "1d")


async def test_an_error_raised_after_a_step_returned_names_no_step(open_worker: Opener) -> None:
    async with open_worker([lookup]) as platform:
        handle = await platform.workflows.start("lookup", {"orderId": "ord_missing"})
        with pytest.raises(WorkflowFailed) as caught:
            await handle.result(timeout=5)
        error = caught.value.run.error
        assert error is not None
        assert error["type"] == "LookupError"
        assert "step" not in error  # load-order completed; it is not the culprit
        [step] = await handle.history()
        assert (step.name, step.status) == ("load-order", StepStatus.COMPLETED)


async def test_an_error_raised_inside_a_step_still_names_it(open_worker: Opener) -> None:
    async with open_worker([charging]) as platform:
        handle = await platform.workflows.start("charging")
        with pytest.raises(WorkflowFailed) as caught:
            await handle.result(timeout=5)
        assert caught.value.run.error is not None
        assert caught.value.run.error["step"] == "charge"


async def test_a_cancelled_run_leaves_no_step_pending(open_worker: Opener) -> None:
    async with open_worker([parked]) as platform:
        handle = await platform.workflows.start("parked")
        await platform.settle()
        waiting = await handle.history()
        assert [s.status for s in waiting] == [StepStatus.COMPLETED, StepStatus.PENDING]
        assert await handle.cancel() is True
        with pytest.raises(WorkflowCancelled):
            await handle.result(timeout=5)
        after = await handle.history()
        assert [(s.name, s.status) for s in after] == [
            ("submit", StepStatus.COMPLETED),
            ("approval", StepStatus.ABANDONED),
        ]
        assert after[1].to_dict()["status"] == "abandoned"


async def test_a_timed_out_run_abandons_its_open_step_for_readers_in_other_processes_too(
    open_worker: Opener, clock: FakeClock, data_dir: Path
) -> None:
    @define_workflow({"id": "slow", "options": {"retries": 0, "timeoutSecs": 60}})
    async def slow(input: Any, step: Any, ctx: Any) -> Any:
        await step.sleep("forever", "7d")

    async with open_worker([slow]) as platform:
        handle = await platform.workflows.start("slow")
        await platform.settle()
        clock.advance("2m")
        with pytest.raises(WorkflowFailed):
            await handle.result(timeout=5)
        [step] = await handle.history()
        assert step.status is StepStatus.ABANDONED
        client = open_client(data_dir, clock=clock)
        [seen] = await client.workflows.handle(handle.run_id).history()
        assert seen.status is StepStatus.ABANDONED


def _flaky_charge(attempt: int) -> None:
    raise ConnectionError(f"card network down (attempt {attempt})")


@define_workflow({"id": "flaky", "options": {"retries": 2}})
async def flaky(input: Any, step: Any, ctx: Any) -> Any:
    await step.run("load", lambda: 1)
    if ctx.attempt == 2:
        raise KeyError("outside any step")
    await step.run("charge", lambda: _flaky_charge(ctx.attempt))


async def test_each_failed_attempt_keeps_its_traceback_beside_the_public_error(
    open_worker: Opener, data_dir: Path
) -> None:
    async with open_worker([flaky]) as platform:
        handle = await platform.workflows.start("flaky")
        with pytest.raises(WorkflowFailed) as caught:
            await handle.result(timeout=5)
        run = caught.value.run
        assert run.error == {
            "type": "ConnectionError",
            "message": "card network down (attempt 3)",
            "step": "charge",
        }
        assert "trace" not in str(run.to_dict())  # the public form carries no traceback
        assert platform.worker is not None
        state = platform.worker.engine.run_state(handle.run_id)
        assert state is not None and state.failures is not None
        failures = state.failures
        await platform.worker.compact()  # compaction keeps only the latest status record

    assert [(f["attempt"], f["type"], f.get("step")) for f in failures] == [
        (1, "ConnectionError", "charge"),
        (2, "KeyError", None),
        (3, "ConnectionError", "charge"),
    ]
    first = failures[0]["trace"]
    # The user's frames, from the handler down to the raise; none of the platform's.
    assert __file__ in first
    assert "_flaky_charge" in first and 'raise ConnectionError(f"card network' in first
    assert "workflows/steps.py" not in first and "workflows/engine.py" not in first
    assert "StepFailed" not in first
    assert first.index("in flaky") < first.index("in <lambda>") < first.index("in _flaky_charge")
    assert first.rstrip().endswith("ConnectionError: card network down (attempt 1)")
    assert "raise KeyError" in failures[1]["trace"]

    # Durable: a restarted worker (on the compacted ledger) still has every attempt.
    async with open_worker([flaky]) as platform:
        assert platform.worker is not None
        again = platform.worker.engine.run_state(handle.run_id)
        assert again is not None and again.failures == failures
