"""Rerun from a step: earlier steps replay from the original's records, later ones run again."""

from __future__ import annotations

from typing import Any

import pytest

from platform_shim.errors import UnknownRun
from platform_shim.platform import open_client
from platform_shim.workflows import define_workflow
from platform_shim.workflows.records import StepStatus

from .conftest import Opener

bodies: list[str] = []


@define_workflow({"id": "pipeline"})
async def pipeline(input: Any, step: Any, ctx: Any) -> Any:
    a = await step.run("extract", lambda: bodies.append("extract") or f"data-{input}")
    b = await step.run("transform", lambda: bodies.append("transform") or a.upper())
    c = await step.run("load", lambda: bodies.append("load") or f"loaded {b}")
    return c


async def test_rerun_from_a_step_reuses_what_came_before(open_worker: Opener) -> None:
    bodies.clear()
    async with open_worker([pipeline]) as platform:
        first = await platform.workflows.start("pipeline", "x")
        assert await first.result(timeout=5) == "loaded DATA-X"
        again = await platform.workflows.rerun(first.run_id, "transform")
        assert again.run_id != first.run_id
        assert await again.result(timeout=5) == "loaded DATA-X"
        assert bodies == ["extract", "transform", "load", "transform", "load"]
        history = await again.history()
        assert [(s.name, s.status) for s in history] == [
            ("extract", StepStatus.COMPLETED),
            ("transform", StepStatus.COMPLETED),
            ("load", StepStatus.COMPLETED),
        ]
        run = await again.status()
        assert run is not None and run.input == "x"
        with pytest.raises(ValueError, match="no step 'nope'"):
            await platform.workflows.rerun(first.run_id, "nope")
        with pytest.raises(UnknownRun):
            await platform.workflows.rerun("missing", "extract")


async def test_a_rerun_requested_by_a_client_runs_in_the_worker(
    open_worker: Opener, data_dir: Any, clock: Any
) -> None:
    bodies.clear()
    async with open_worker([pipeline]) as platform:
        first = await platform.workflows.start("pipeline", "y")
        await first.result(timeout=5)
        client = open_client(data_dir, clock=clock)
        try:
            handle = await client.workflows.rerun(first.run_id, "load")
        finally:
            client.close()
        platform.worker.refresh()  # type: ignore[union-attr]
        assert await platform.workflows.handle(handle.run_id).result(timeout=5) == "loaded DATA-Y"
        assert bodies == ["extract", "transform", "load", "load"]
