"""The workflows the scenarios run. Self-contained (it imports only ``platform_shim``), so scenario
f) copies this file into a project's ``workflows/`` folder for ``python -m host serve``.

The shapes mirror the peer's: a step is an ``async def`` returning a small int, as in DBOS's
``@DBOS.step() async def s(i): return i``.
"""

from __future__ import annotations

import functools
import time
from typing import Any

from platform_shim.workflows import define_workflow

# perf_counter() at the moment the step after a wait began, by run id (scenario c).
MARKS: dict[str, float] = {}


async def _value(i: int) -> int:
    return i


@define_workflow({"id": "bench-steps"})
async def bench_steps(input: Any, step: Any, ctx: Any) -> int:
    """``input["n"]`` steps in sequence, each an ``async def`` (it runs on the loop); returns
    their sum."""
    total = 0
    for i in range(input["n"]):
        total += await step.run(f"s{i}", functools.partial(_value, i))
    return total


@define_workflow({"id": "bench-steps-sync"})
async def bench_steps_sync(input: Any, step: Any, ctx: Any) -> int:
    """The same with plain ``def`` bodies, which run in the engine's worker threads (so a
    blocking body stalls nothing): the price of that thread hop."""
    total = 0
    for i in range(input["n"]):
        total += await step.run(f"s{i}", lambda i=i: i)
    return total


@define_workflow({"id": "bench-wait"})
async def bench_wait(input: Any, step: Any, ctx: Any) -> Any:
    """Park on an event matched by ``input["k"]``, then run one step that notes the time."""
    payload = await step.wait_for_event("go", type="bench.go", match={"k": input["k"]})
    run_id = ctx.run_id

    def after() -> int:
        MARKS[run_id] = time.perf_counter()
        return 1

    await step.run("after", after)
    return payload


@define_workflow({"id": "bench-long"})
async def bench_long(input: Any, step: Any, ctx: Any) -> int:
    """``input["n"]`` steps; with ``input["wait"]`` it then parks on an event, so that resuming
    it replays all n recorded steps."""
    total = 0
    for i in range(input["n"]):
        total += await step.run(f"s{i}", functools.partial(_value, i))
    if input.get("wait"):
        await step.wait_for_event("resume", type="bench.resume", match={"runId": ctx.run_id})
    return total


@define_workflow({"id": "bench-sleeper"})
async def bench_sleeper(input: Any, step: Any, ctx: Any) -> None:
    """A typical parked run: one recorded step, then a 30-day durable sleep."""
    await step.run("prepare", lambda: {"user": input["user"], "ok": True})
    await step.sleep("nap", "30d")


ALL = [bench_steps, bench_steps_sync, bench_wait, bench_long, bench_sleeper]
