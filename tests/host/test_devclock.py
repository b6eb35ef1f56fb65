"""The dev host's skippable clock and ``POST /api/dev/clock``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from host.app import create_app
from host.config import HostConfig
from host.devclock import SkippableClock
from tests.support.waiting import wait_until_async

WORKFLOW = """from platform_shim.workflows import define_workflow


@define_workflow({"id": "napper"})
async def napper(input, step, ctx):
    await step.sleep("nap", "24h")
    return "rested"
"""


async def test_advancing_fires_what_came_due_and_nothing_else() -> None:
    clock = SkippableClock()
    fired: list[str] = []
    start = clock.now_ms()
    clock.call_at(start + 3_600_000, lambda: fired.append("1h"))
    clock.call_at(start + 86_400_000, lambda: fired.append("24h"))
    cancelled = clock.call_at(start + 60_000, lambda: fired.append("cancelled"))
    cancelled.cancel()
    clock.advance(2 * 3_600_000)
    await wait_until_async(lambda: fired, what="the timer that came due to fire")
    assert fired == ["1h"]
    assert clock.now_ms() >= start + 2 * 3_600_000
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)


async def _client(tmp_path: Path, *, dev: bool) -> tuple[httpx.AsyncClient, object]:
    project = tmp_path / "project"
    (project / "workflows").mkdir(parents=True, exist_ok=True)
    (project / "workflows" / "napper.py").write_text(WORKFLOW)
    app = create_app(HostConfig(project_dir=project, data_dir=tmp_path / "data", dev=dev))
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
    ), app


async def test_skipping_ahead_wakes_a_sleeping_run(tmp_path: Path) -> None:
    client, app = await _client(tmp_path, dev=True)
    async with client, app.router.lifespan_context(app):  # type: ignore[attr-defined]
        run_id = (await client.post("/api/workflows/napper/start", json={})).json()["runId"]

        async def status(wanted: str) -> dict[str, Any] | None:
            run: dict[str, Any] = (await client.get(f"/api/workflows/runs/{run_id}")).json()
            return run if run["status"] == wanted else None

        await wait_until_async(lambda: status("sleeping"), what="the run to sleep")
        moved = await client.post("/api/dev/clock", json={"advance": "24h"})
        assert moved.status_code == 200 and moved.json()["offsetMs"] == 86_400_000
        run = await wait_until_async(lambda: status("completed"), what="the run to wake")
        assert run["output"] == "rested"
        bad = await client.post("/api/dev/clock", json={"advance": "soon"})
        assert bad.status_code == 400 and "soon" in bad.json()["detail"]


async def test_the_clock_cannot_be_moved_outside_dev(tmp_path: Path) -> None:
    client, app = await _client(tmp_path, dev=False)
    async with client, app.router.lifespan_context(app):  # type: ignore[attr-defined]
        answer = await client.post("/api/dev/clock", json={"advance": "24h"})
        assert answer.status_code == 404
