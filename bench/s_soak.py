"""Scenario soak): a worker that lives through 30 days of traffic on a fake clock.

One ``open_platform`` worker (workflows, stream handlers and a queue consumer, as a host runs
them) goes through ``days`` simulated days. Each day, in ``slices`` slices with the clock moved
on between them: runs of ``soak-order`` (a step, a ``wait_for_event`` with a 1 h timeout, a
step) are started and answered with ``send_event`` (a tenth are left to time out, and as many
events again match no run); TTL puts on a rotating set of session keys (the sweeper expires
them); queue messages, one in twenty poison (dead-lettered after 3 attempts); and the KV
handler is replaced by a new one once a day (handler churn, via ``Worker.reload``). The
worker's own maintenance compacts (size threshold and hourly retention check); finished runs
are kept 7 days.

RSS (after a full collection) is read at the start, after the warm-up (the retention window
plus a day: from then on the live state should stay the same size), midway and at the end,
with the sizes of the structures that could grow; with ``trace``, tracemalloc compares the end
with the warm-up by source line, to name what grows.
"""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.common import REPO, rss_bytes
from platform_shim import open_platform
from platform_shim.events import EventHandler, on_kv_change, on_queue
from platform_shim.platform import Platform
from platform_shim.runtime import Worker
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow

Args = dict[str, Any]
DAY_MS = 24 * 3600 * 1000
SESSIONS = 5000


@define_workflow({"id": "soak-order"})
async def soak_order(input: Any, step: Any, ctx: Any) -> Any:
    total = await step.run("price", lambda: input["n"] * 2)
    paid = await step.wait_for_event(
        "paid", type="soak.paid", match={"order": input["order"]}, timeout="1h"
    )
    await step.run("ship", lambda: total if paid is not None else 0)
    return paid is not None


@on_queue("soak-jobs", {"batch": 10, "maxAttempts": 3})
async def soak_jobs(messages: Any, ctx: Any) -> None:
    if any(m["payload"].get("poison") for m in messages):
        raise RuntimeError("poison message")


def _kv_handler(day: int) -> EventHandler:
    async def handler(event: Any, ctx: Any) -> None:
        return None

    handler.__name__ = f"sessions_day{day}"  # a new handler id each day: churn
    return on_kv_change({"namespace": "sess"}, handler)


def _structures(platform: Platform, worker: Worker) -> dict[str, int]:
    engine = worker.engine
    state = engine.state
    kv = platform.kv_state
    return {
        "runs_held": len(state.runs),
        "signals": sum(len(s) for s in state.signals.values()),
        "kv_keys": sum(len(s) for s in kv.spaces.values()),
        "kv_heap": len(kv.expiring),
        "stream_events": len(platform.stream.events),
        "queue_pending": sum(len(q) for q in platform.queue_state.queues.values()),
        **{f"dispatch_{k}": v for k, v in worker.dispatcher.bookkeeping().items()},
        "compactions": worker.maintenance_passes,
    }


def _short(filename: str) -> str:
    path = Path(filename)
    if path.is_relative_to(REPO):
        return str(path.relative_to(REPO))
    return filename.split("site-packages/")[-1]


async def _one_slice(
    p: Platform, clock: FakeClock, day: int, part: int, args: Args, counters: dict[str, int]
) -> None:
    runs = args["runs_per_day"] // args["slices"]
    puts = args["puts_per_day"] // args["slices"]
    messages = args["messages_per_day"] // args["slices"]
    base = (day * args["slices"] + part) * runs
    workflows = p.workflows
    for start in range(0, runs, 1000):
        ids = range(base + start, base + min(runs, start + 1000))
        await asyncio.gather(
            *(workflows.start("soak-order", {"order": f"o{i}", "n": i}) for i in ids)
        )
        await p.settle(timeout=600)
        # Nine in ten runs are paid; as many events again are for orders that do not exist.
        await asyncio.gather(
            *(
                workflows.send_event("soak.paid", {"order": f"o{i}" if i % 10 else f"x{i}"})
                for i in ids
            ),
            *(workflows.send_event("soak.paid", {"order": f"none{i}"}) for i in ids),
        )
        counters["runs"] += len(ids)
        counters["send_event"] += 2 * len(ids)
        await p.settle(timeout=600)
    for start in range(0, puts, 1000):
        n = min(1000, puts - start)
        await asyncio.gather(
            *(
                p.kv.put(
                    "sess", f"s{(base + start + i) % SESSIONS}", {"d": day}, ttl=600 + i % 7200
                )
                for i in range(n)
            )
        )
        counters["ttl_puts"] += n
    await asyncio.gather(
        *(
            p.queue.send("soak-jobs", {"i": base + i, "poison": (base + i) % 20 == 0})
            for i in range(messages)
        )
    )
    counters["messages"] += messages
    await p.settle(timeout=600)
    clock.advance(DAY_MS // args["slices"])
    await p.settle(timeout=600)


async def soak(args: Args) -> dict[str, Any]:
    clock = FakeClock()
    days, warmup = args["days"], args["warmup_days"]
    samples: list[dict[str, Any]] = []
    counters = {"runs": 0, "send_event": 0, "ttl_puts": 0, "messages": 0}
    top: list[dict[str, Any]] = []
    warm_snapshot: tracemalloc.Snapshot | None = None
    t0 = time.perf_counter()
    async with open_platform(
        args["data"],
        workflows=[soak_order],
        handlers=[soak_jobs, _kv_handler(0)],
        clock=clock,
        durability="flush",
        watch=False,
    ) as p:
        worker = p.worker
        assert worker is not None

        def sample(label: str, day: int) -> None:
            samples.append(
                {
                    "label": label,
                    "day": day,
                    "rss": rss_bytes(),
                    "seconds": time.perf_counter() - t0,
                    **_structures(p, worker),
                    **counters,
                }
            )
            # A long run shows where it is (the parent sees stderr only at the end).
            if args.get("progress"):
                with open(args["progress"], "a") as out:
                    out.write(json.dumps(samples[-1]) + "\n")

        sample("start", 0)
        for day in range(days):
            for part in range(args["slices"]):
                await _one_slice(p, clock, day, part, args, counters)
            worker.reload(handlers=[soak_jobs, _kv_handler(day + 1)])
            if day + 1 == warmup:
                sample("after warm-up", day + 1)
                if args.get("trace"):
                    tracemalloc.start(1)
                    warm_snapshot = tracemalloc.take_snapshot()
            elif day + 1 == days // 2:
                sample("midway", day + 1)
            elif day + 1 == days:
                sample("end", day + 1)
            else:
                sample("", day + 1)
        if warm_snapshot is not None:
            end = tracemalloc.take_snapshot()
            tracemalloc.stop()
            for stat in end.compare_to(warm_snapshot, "lineno")[:12]:
                frame = stat.traceback[0]
                top.append(
                    {
                        "where": f"{_short(frame.filename)}:{frame.lineno}",
                        "size_diff": stat.size_diff,
                        "count_diff": stat.count_diff,
                    }
                )
    return {"samples": samples, "counters": counters, "top_growth": top}


JOBS = {"soak": soak}
