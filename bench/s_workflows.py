"""Our side of scenarios a) to e): each job opens the platform with its defaults (durability
``fsync``, group commit, the watcher on) on a fresh data folder and measures one workload."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.common import median, percentile, profiled, time_runs
from bench.flows import ALL, MARKS
from platform_shim import open_platform

Args = dict[str, Any]


async def _until_status(handle: Any, status: str, poll: float = 0.002) -> None:
    """Poll ``handle.status()`` (which waits for the ledger to be durable) until ``status``."""
    while True:
        run = await handle.status()
        if run is not None and run.status.value == status:
            return
        await asyncio.sleep(poll)


async def _runs_x_steps(
    platform: Any, runs: int, steps: int, workflow: str = "bench-steps"
) -> float:
    """Start ``runs`` runs of ``steps`` steps at once, wait for every result; wall seconds."""
    workflows = platform.workflows
    return await time_runs(
        lambda: workflows.start(workflow, {"n": steps}), lambda h: h.result(), runs, steps
    )


async def throughput(args: Args) -> dict[str, Any]:
    """a) and d): ``runs`` concurrent runs x ``steps`` steps, after a warm-up round."""
    runs, steps = args["runs"], args["steps"]
    async with open_platform(
        args["data"], workflows=ALL, durability=args.get("durability", "fsync")
    ) as p:
        workflow = args.get("workflow", "bench-steps")
        await _runs_x_steps(p, max(1, runs // 10), steps, workflow)  # warm-up
        with profiled(args.get("profile")):
            cpu = time.process_time()
            elapsed = await _runs_x_steps(p, runs, steps, workflow)
            cpu = time.process_time() - cpu
    return {
        "wall_s": elapsed,
        "cpu_s": cpu,
        "steps_per_s": runs * steps / elapsed,
        "runs": runs,
        "steps": steps,
    }


async def latency(args: Args) -> dict[str, Any]:
    """b): sequential 1-step runs, ``start`` -> ``result()``, after ``warmup`` of them."""
    samples: list[float] = []
    async with open_platform(
        args["data"], workflows=ALL, durability=args.get("durability", "fsync")
    ) as p:
        workflows = p.workflows
        workflow = args.get("workflow", "bench-steps")
        for _ in range(args["warmup"]):
            await (await workflows.start(workflow, {"n": 1})).result()
        cpu = time.process_time()
        with profiled(args.get("profile")):
            for _ in range(args["samples"]):
                t0 = time.perf_counter()
                handle = await workflows.start(workflow, {"n": 1})
                await handle.result()
                samples.append((time.perf_counter() - t0) * 1000)
        cpu = time.process_time() - cpu
    return {
        "samples_ms": samples,
        "p50_ms": median(samples),
        "p99_ms": percentile(samples, 99),
        "cpu_ms_per_run": cpu * 1000 / len(samples),
    }


async def resume(args: Args) -> dict[str, Any]:
    """c): runs parked on ``wait_for_event``; for each, in turn: ``send_event`` and time (1) the
    step after the wait starting to run, (2) ``handle.result()`` returning."""
    n, warmup = args["samples"], args["warmup"]
    to_step: list[float] = []
    to_result: list[float] = []
    send_call: list[float] = []
    async with open_platform(args["data"], workflows=ALL) as p:
        workflows = p.workflows
        handles = [await workflows.start("bench-wait", {"k": i}) for i in range(n + warmup)]
        for handle in handles:
            await _until_status(handle, "waiting_event")
        for i, handle in enumerate(handles):
            t0 = time.perf_counter()
            resumed = await workflows.send_event("bench.go", {"k": i})
            t1 = time.perf_counter()
            await handle.result()
            t2 = time.perf_counter()
            if resumed != 1:
                raise AssertionError(f"send_event resumed {resumed} runs, expected 1")
            if i < warmup:
                continue
            to_step.append((MARKS[handle.run_id] - t0) * 1000)
            send_call.append((t1 - t0) * 1000)
            to_result.append((t2 - t0) * 1000)
    return {
        "to_step_ms": to_step,
        "to_result_ms": to_result,
        "send_call_ms": send_call,
        "parked_while_measuring": n,
    }


async def long_run(args: Args) -> dict[str, Any]:
    """e): for each size n, one run of n steps (start -> result), ``history()`` on it (median of
    ``history_repeats`` calls), and the replay of n recorded steps when a run of n steps that
    parked on an event at its end is resumed (``send_event`` -> ``result()``)."""
    out: dict[str, Any] = {"sizes": []}
    async with open_platform(args["data"], workflows=ALL) as p:
        workflows = p.workflows
        await (await workflows.start("bench-long", {"n": 50})).result()  # warm-up
        for n in args["sizes"]:
            profile = args.get("profile") if n == max(args["sizes"]) else None
            with profiled(profile):
                t0 = time.perf_counter()
                handle = await workflows.start("bench-long", {"n": n})
                await handle.result()
                total = time.perf_counter() - t0
            times = []
            history: list[Any] = []
            for _ in range(args["history_repeats"]):
                t0 = time.perf_counter()
                history = await handle.history()
                times.append(time.perf_counter() - t0)
            if len(history) != n:
                raise AssertionError(f"history has {len(history)} steps, expected {n}")
            row: dict[str, Any] = {"n": n, "total_s": total, "history_s": median(times)}
            if args.get("replay", True):
                parked = await workflows.start("bench-long", {"n": n, "wait": True})
                await _until_status(parked, "waiting_event", poll=0.01)
                t0 = time.perf_counter()
                await workflows.send_event("bench.resume", {"runId": parked.run_id})
                await parked.result()
                row["replay_s"] = time.perf_counter() - t0
            out["sizes"].append(row)
    return out


JOBS = {
    "throughput": throughput,
    "latency": latency,
    "resume": resume,
    "long_run": long_run,
}
