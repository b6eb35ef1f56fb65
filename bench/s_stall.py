"""Scenario stall): the event loop while a big folder compacts under a steady request load.

A worker on a folder of N live KV keys serves a steady, open-loop request load (one request
every ``interval_ms``, alternating ``kv.get`` and a durable ``kv.put``), while a probe measures
how late the loop runs a callback it asked for 1 ms ahead (the longest such lag is the longest
stall: nothing else could run meanwhile). Compaction then runs once; the figures are the longest
stall and the request latency p99 from its start to its end, beside the same figures for an
equal span without compaction.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

from bench.common import percentile
from bench.flows import ALL
from platform_shim.runtime import Worker, WorkerOptions
from platform_shim.workflows import WorkflowRegistry

Args = dict[str, Any]
NS = "bench"
_PROBE_S = 0.001


class _Probe:
    """Records how late each 1 ms callback runs: a late callback is a stalled loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.lags: list[tuple[float, float]] = []  # (when it was due, lag in seconds)
        self._stopped = False
        self._due = 0.0

    def start(self) -> None:
        self._due = time.perf_counter() + _PROBE_S
        self._loop.call_later(_PROBE_S, self._tick)

    def _tick(self) -> None:
        now = time.perf_counter()
        self.lags.append((self._due, now - self._due))
        if not self._stopped:
            self._due = now + _PROBE_S
            self._loop.call_later(_PROBE_S, self._tick)

    def stop(self) -> None:
        self._stopped = True

    def worst(self, start: float, end: float) -> float:
        return max((lag for at, lag in self.lags if start <= at <= end), default=0.0)


class _Load:
    """One request every ``interval`` seconds, each in its own task; latencies by start time."""

    def __init__(self, worker: Worker, keys: int, interval: float) -> None:
        self._kv = worker.platform.kv
        self._keys = keys
        self._interval = interval
        self._rng = random.Random(7)
        self.samples: list[tuple[float, float]] = []  # (started, latency in seconds)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False

    async def run(self) -> None:
        n = 0
        next_at = time.perf_counter()
        while not self._stopped:
            # Open loop: requests are due on a fixed schedule whatever the last one took, so a
            # stall shows as latency of the requests that were due during it.
            task = asyncio.ensure_future(self._one(n, next_at))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            n += 1
            next_at += self._interval
            delay = next_at - time.perf_counter()
            await asyncio.sleep(max(0.0, delay))

    async def _one(self, n: int, due: float) -> None:
        key = f"k{self._rng.randrange(self._keys):08d}"
        if n % 2:
            await self._kv.put(NS, key, {"i": n, "load": True})
        else:
            await self._kv.get(NS, key)
        self.samples.append((due, time.perf_counter() - due))

    async def stop(self) -> None:
        self._stopped = True
        if self._tasks:
            await asyncio.gather(*self._tasks)

    def latencies(self, start: float, end: float) -> list[float]:
        return [lat for at, lat in self.samples if start <= at <= end]


def _figures(probe: _Probe, load: _Load, start: float, end: float) -> dict[str, Any]:
    lat = load.latencies(start, end)
    return {
        "seconds": end - start,
        "stall_ms": probe.worst(start, end) * 1000,
        "requests": len(lat),
        "p50_ms": percentile(lat, 50) * 1000,
        "p99_ms": percentile(lat, 99) * 1000,
        "max_ms": max(lat, default=0.0) * 1000,
    }


async def compaction_stall(args: Args) -> dict[str, Any]:
    """Open the filled folder, run the load, compact once in the middle; figures per span."""
    options = WorkerOptions(compact_bytes=1 << 62, watch=False)
    worker = Worker(args["data"], registry=WorkflowRegistry(ALL), options=options)
    await worker.start()
    try:
        keys = len(worker.platform.kv_state.spaces.get(NS, {}))
        if keys < args["keys"]:
            raise AssertionError(f"the folder has {keys} keys, expected {args['keys']}")
        loop = asyncio.get_running_loop()
        probe = _Probe(loop)
        load = _Load(worker, keys, args["interval_ms"] / 1000)
        probe.start()
        runner = asyncio.ensure_future(load.run())
        await asyncio.sleep(args["quiet_s"])
        quiet = (time.perf_counter() - args["quiet_s"] + 0.2, time.perf_counter())
        t0 = time.perf_counter()
        result = await _compact(worker)
        t1 = time.perf_counter()
        await asyncio.sleep(0.2)
        await load.stop()
        await runner
        probe.stop()
        return {
            "keys": keys,
            "compaction_s": t1 - t0,
            "report": result,
            "during": _figures(probe, load, t0, t1),
            "quiet": _figures(probe, load, *quiet),
        }
    finally:
        await worker.stop()


async def _compact(worker: Worker) -> dict[str, Any]:
    await asyncio.sleep(0)
    return await worker.compact()


JOBS = {"compaction_stall": compaction_stall}
