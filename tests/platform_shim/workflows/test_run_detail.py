"""``platform.workflows.run_detail``: what a run's public record leaves out (its rerun origin,
its failed attempts' tracebacks), read the same through the worker's engine and a client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from platform_shim.platform import open_client
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow
from platform_shim.workflows.operator_detail import RunDetail

from .conftest import Opener

charges: list[int] = []


def _charge() -> str:
    charges.append(1)
    if len(charges) == 1:  # only the very first charge fails: a rerun then has no failure
        raise ConnectionError("card network down")
    return "charged"


@define_workflow({"id": "wobbly", "options": {"retries": 1}})
async def wobbly(input: Any, step: Any, ctx: Any) -> Any:
    await step.run("load", lambda: 1)
    return await step.run("charge", _charge)


async def test_worker_and_client_read_the_same_detail(
    open_worker: Opener, data_dir: Path, clock: FakeClock
) -> None:
    charges.clear()
    async with open_worker([wobbly]) as platform:
        first = await platform.workflows.start("wobbly")
        assert await first.result(timeout=5) == "charged"
        again = await platform.workflows.rerun(first.run_id, "charge")
        await again.result(timeout=5)

        detail = await platform.workflows.run_detail(first.run_id)
        assert detail is not None and detail.rerun_of is None
        [failure] = detail.failures
        assert (failure["attempt"], failure["type"], failure["step"]) == (
            1,
            "ConnectionError",
            "charge",
        )
        assert "card network down" in failure["trace"]
        rerun = await platform.workflows.run_detail(again.run_id)
        assert rerun == RunDetail({"runId": first.run_id, "fromStep": "charge"}, [])
        assert await platform.workflows.run_detail("no-such-run") is None

        client = open_client(data_dir, clock=clock)
        try:
            assert await client.workflows.run_detail(first.run_id) == detail
            assert await client.workflows.run_detail(again.run_id) == rerun
            assert await client.workflows.run_detail("no-such-run") is None
        finally:
            client.close()


async def test_a_detail_is_a_copy(open_worker: Opener) -> None:
    charges.clear()
    async with open_worker([wobbly]) as platform:
        first = await platform.workflows.start("wobbly")
        await first.result(timeout=5)
        again = await platform.workflows.rerun(first.run_id, "charge")
        await again.result(timeout=5)
        for run_id in (first.run_id, again.run_id):
            detail = await platform.workflows.run_detail(run_id)
            assert detail is not None
            for failure in detail.failures:
                failure["trace"] = "changed by a reader"
            detail.failures.clear()
            if detail.rerun_of is not None:
                detail.rerun_of["runId"] = "changed by a reader"
        kept = await platform.workflows.run_detail(first.run_id)
        assert kept is not None and [f["attempt"] for f in kept.failures] == [1]
        assert "card network down" in kept.failures[0]["trace"]
        rerun = await platform.workflows.run_detail(again.run_id)
        assert rerun is not None and rerun.rerun_of == {"runId": first.run_id, "fromStep": "charge"}
