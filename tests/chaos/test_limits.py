"""The documented limits (README "Guarantees"), each at its boundary.

Step output 4 MiB (default), request body 10 MiB (default), KV namespace and key 1024 bytes,
storage key 1024 bytes, collection name 256 characters, caller-chosen run id 200 characters;
finished runs are kept for the retention (7 days by default) and then pruned by compaction; the
event stream keeps the newest ``event_window`` events (1000 by default) plus what a handler has
not consumed yet.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from host.config import DEFAULT_MAX_BODY, HostConfig
from platform_shim import open_platform
from platform_shim.errors import WorkflowFailed
from platform_shim.runtime import DEFAULT_RUN_RETENTION_MS, WorkerOptions
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow
from platform_shim.workflows.engine import DEFAULT_OUTPUT_LIMIT
from tests.chaos.inproc import inprocess_host, raw_request

MIB = 1024 * 1024


def test_the_defaults_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PLATFORM_MAX_BODY", raising=False)
    assert DEFAULT_OUTPUT_LIMIT == 4 * MIB
    assert WorkerOptions().output_limit == 4 * MIB
    assert DEFAULT_MAX_BODY == 10 * MIB
    assert HostConfig().max_body == 10 * MIB
    assert DEFAULT_RUN_RETENTION_MS == 7 * 24 * 3600 * 1000
    assert WorkerOptions().event_window == 1000
    assert WorkerOptions().durability == "fsync"


@define_workflow({"id": "out", "options": {"retries": 0}})
async def out(input: Any, step: Any, ctx: Any) -> Any:
    await step.run("big", lambda: "x" * (input["n"] - 2))  # a JSON string: n bytes with quotes
    return "ok"


async def test_a_step_output_of_4_mib_passes_and_one_byte_more_fails(data_dir: Path) -> None:
    async with open_platform(data_dir, workflows=[out], watch=False) as platform:
        fits = await platform.workflows.start("out", {"n": 4 * MIB})
        assert await fits.result(timeout=30) == "ok"
        over = await platform.workflows.start("out", {"n": 4 * MIB + 1})
        with pytest.raises(WorkflowFailed) as caught:
            await over.result(timeout=30)
        assert caught.value.run.error is not None
        assert caught.value.run.error["type"] == "StepOutputTooLarge"


PROJECT = """
from platform_shim.workflows import define_workflow


@define_workflow({"id": "echo"})
async def echo(input, step, ctx):
    return input
"""


async def test_body_and_name_limits_over_http(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "workflows").mkdir(parents=True)
    (project / "workflows" / "flows.py").write_text(textwrap.dedent(PROJECT))
    async with inprocess_host(project, tmp_path / "data") as (app, http):
        at_limit = [(b"content-length", str(10 * MIB).encode())]
        over = [(b"content-length", str(10 * MIB + 1).encode())]
        response = await raw_request(app, "PUT", b"/api/kv/ns/big", headers=over, chunks=[b"1"])
        assert response.status == 413, response.body
        body = b'"' + b"x" * (10 * MIB - 2) + b'"'
        response = await raw_request(app, "PUT", b"/api/kv/ns/big", headers=at_limit, chunks=[body])
        assert response.status == 200, response.body[:200]

        def status(response: Any) -> int:
            return int(response.status_code)

        assert status(await http.put(f"/api/kv/{'n' * 1024}/{'k' * 1024}", json=1)) == 200
        assert status(await http.put(f"/api/kv/ns/{'k' * 1025}", json=1)) == 400
        assert status(await http.put(f"/api/kv/{'n' * 1025}/k", json=1)) == 400
        assert status(await http.put(f"/api/storage/{'s' * 1024}", content=b"x")) == 200
        assert status(await http.put(f"/api/storage/{'s' * 1025}", content=b"x")) == 400
        assert status(await http.put(f"/api/db/{'c' * 256}", json={})) == 200
        assert status(await http.put(f"/api/db/{'c' * 257}", json={})) == 400
        start = "/api/workflows/echo/start"
        assert status(await http.post(start, params={"runId": "r" * 200}, json=1)) == 200
        assert status(await http.post(start, params={"runId": "r" * 201}, json=1)) == 400


async def test_retention_prunes_finished_runs_and_the_window_bounds_events(
    data_dir: Path,
) -> None:
    clock = FakeClock()
    hour = 3600 * 1000

    @define_workflow({"id": "quick"})
    async def quick(input: Any, step: Any, ctx: Any) -> Any:
        return await step.run("s", lambda: input)

    @define_workflow({"id": "parked"})
    async def parked(input: Any, step: Any, ctx: Any) -> Any:
        return await step.wait_for_event("w", type="never")

    options = {"run_retention_ms": 24 * hour, "event_window": 5, "watch": False}
    async with open_platform(
        data_dir, workflows=[quick, parked], clock=clock, retry_backoff=lambda a: 0, **options
    ) as platform:
        old = await platform.workflows.start("quick", 1)
        await old.result(timeout=5)
        waiting = await platform.workflows.start("parked")
        clock.advance("23h")
        recent = await platform.workflows.start("quick", 2)
        await recent.result(timeout=5)
        for i in range(30):
            await platform.events.publish("limits.tick", {"i": i})
        await platform.settle()
        clock.advance("2h")  # old ended 25 h ago, recent 2 h ago
        # The worker's maintenance pass (on its clock) prunes the old run: no size threshold
        # has to be crossed, and no one has to ask.
        await platform.settle()
        ids = {run.run_id for run in await platform.workflows.list(limit=100)}
        assert ids == {waiting.run_id, recent.run_id}
        assert await platform.workflows.handle(old.run_id).status() is None
        worker = platform.worker
        assert worker is not None
        report = await worker.compact()
        assert report["runs"]["pruned"] == 0  # nothing left to prune
        assert report["events"]["kept"] <= 5
        lines = (data_dir / "events.jsonl").read_bytes().count(b"\n")
        assert lines <= 5 + 1, lines  # the window, and the checkpoint line
