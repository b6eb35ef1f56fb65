"""``python -m bench.cluster``: 1, 2 and 4 ``serve`` hosts on one PostgreSQL database (issue 14).

    python -m bench.cluster                          # N = 1, 2, 4; 400 runs x 10 steps each
    python -m bench.cluster --hosts 1 2 --runs 200 --concurrency 16
    python -m bench.cluster --smoke                  # tiny sizes: proves the harness works

One durable throwaway PostgreSQL (``tests/support/postgres.py``, ``durable=True``: fsync and
synchronous commit on) for the whole run, and a fresh database in it per N. For each N, N real
``python -m host serve PROJECT --store URL`` processes: the first is the store's **worker**, the
others wait until they log "standby: the worker on" (``host.standby``): they serve the whole HTTP
API as clients of the store. **Every run executes on the one worker**; the standbys record starts
in the database and the worker picks them up (NOTIFY). So extra hosts add HTTP capacity (parsing,
routing, the start's commit), not execution capacity: this measures what that buys.

The load generator is this process: asyncio with one ``httpx.AsyncClient`` per host (keep-alive),
at most ``--concurrency`` start requests in flight, sent round-robin over the hosts
(``POST /api/workflows/ten/start``; ``ten`` is 10 ``step.run`` of a trivial body returning its
index). It then waits for every run to complete by polling the first host's run counts
(``GET /_platform/api/overview``, every 50 ms: no per-run polling during the measurement; the API
has no endpoint that waits for a result), and afterwards reads each run once
(``GET /api/workflows/runs/{id}`` on the host that started it) to check its output and take its
``completedAt`` (the worker's wall clock, ms; same machine as the generator). Figures per N:

- **steps/s**: runs x 10 / (last ``completedAt`` - the first start request's send time);
- **start p50 / p99**: the HTTP start request, send -> 200 (includes waiting for a connection
  of the client's pool: at most ``--concurrency`` in flight);
- **end-to-end p50**: a run's ``completedAt`` - its start request's send time;
- **CPU**: seconds of CPU over the measured window of the worker, of the standbys together, of the
  PostgreSQL server's processes and of the generator itself. On a 2-core machine the generator
  competes with the hosts for the same cores: its share is printed so the figures can be read
  with it in mind.

A warm-up of ``--warmup`` runs (round-robin too) precedes each measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import code_revision, loadavg, median, percentile, pick_tmp_root, scratch
from bench.failover import ServeHost

WORKFLOW = "ten"
STEPS = 10
STANDBY_LINE = "standby: the worker on"
POLL_S = 0.05

_PROJECT = """
from platform_shim.workflows import define_workflow


def body(i):
    async def step():
        return i

    return step


@define_workflow({{"id": {workflow!r}}})
async def ten(input, step, ctx):
    total = 0
    for i in range({steps}):
        total += await step.run(f"s{{i}}", body(i))
    return total
"""


@dataclass
class Started:
    host: int
    run_id: str
    sent_at: float  # time.time() when the request was sent
    latency: float  # seconds, send -> 200


@dataclass
class Figures:
    hosts: int
    runs: int
    steps_per_s: float
    start_p50_ms: float
    start_p99_ms: float
    e2e_p50_ms: float
    cpu_s: dict[str, float]
    window_s: float
    load: float


def write_project(root: Path) -> Path:
    project = root / "project"
    (project / "workflows").mkdir(parents=True)
    (project / "workflows" / "ten.py").write_text(
        textwrap.dedent(_PROJECT).format(workflow=WORKFLOW, steps=STEPS)
    )
    return project


# ------------------------------------------------------------------------------- CPU time

_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _children_of(parent: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == parent:
                pids.append(int(entry.name))
    return pids


def _postgres_cpu(server: Any) -> dict[int, float]:
    """CPU seconds so far of the cluster's postmaster and each of its children (backends)."""
    pid_file = server.data_dir / "postmaster.pid"
    postmaster = int(pid_file.read_text().split()[0])
    return {pid: _cpu_of(pid) for pid in [postmaster, *_children_of(postmaster)]}


# ------------------------------------------------------------------------------- one N


async def _start_all(
    clients: list[httpx.AsyncClient], runs: int, concurrency: int
) -> list[Started]:
    """Start ``runs`` runs round-robin over the hosts, at most ``concurrency`` in flight."""
    gate = asyncio.Semaphore(concurrency)

    async def one(n: int) -> Started:
        host = n % len(clients)
        async with gate:
            sent_at = time.time()
            t0 = time.perf_counter()
            response = await clients[host].post(f"/api/workflows/{WORKFLOW}/start", json={})
            latency = time.perf_counter() - t0
        response.raise_for_status()
        return Started(host, str(response.json()["runId"]), sent_at, latency)

    return list(await asyncio.gather(*(one(n) for n in range(runs))))


async def _wait_completed(client: httpx.AsyncClient, count: int, timeout: float) -> None:
    """Until the store counts ``count`` completed runs (one cheap request every ``POLL_S``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = await client.get("/_platform/api/overview")
        response.raise_for_status()
        counts = response.json()["counts"]
        if counts.get("failed") or counts.get("cancelled"):
            raise AssertionError(f"runs did not complete: {counts}")
        if counts.get("completed", 0) >= count:
            return
        await asyncio.sleep(POLL_S)
    raise TimeoutError(f"{count} runs did not complete within {timeout}s")


async def _completed_at(clients: list[httpx.AsyncClient], started: list[Started]) -> list[float]:
    """Each run's ``completedAt`` (epoch seconds), read on the host that started it; checks
    the output."""
    gate = asyncio.Semaphore(8)
    expected = STEPS * (STEPS - 1) // 2

    async def one(run: Started) -> float:
        async with gate:
            response = await clients[run.host].get(f"/api/workflows/runs/{run.run_id}")
        response.raise_for_status()
        body = response.json()
        if body["status"] != "completed" or body["output"] != expected:
            raise AssertionError(f"run {run.run_id}: {body['status']}, output {body['output']}")
        return float(body["completedAt"]) / 1000

    return list(await asyncio.gather(*(one(run) for run in started)))


async def _drive(
    hosts: list[ServeHost],
    server: Any,
    runs: int,
    warmup: int,
    concurrency: int,
) -> Figures:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    clients = [
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{h.port}", limits=limits, timeout=60)
        for h in hosts
    ]
    try:
        if warmup:
            await _start_all(clients, warmup, concurrency)
            await _wait_completed(clients[0], warmup, timeout=300)
        load = loadavg()[0]
        pids = {"worker": [hosts[0].proc.pid], "standbys": [h.proc.pid for h in hosts[1:]]}
        host_cpu0 = {k: sum(_cpu_of(p) for p in v) for k, v in pids.items()}
        pg_cpu0 = _postgres_cpu(server)
        own_cpu0 = time.process_time()
        started = await _start_all(clients, runs, concurrency)
        await _wait_completed(clients[0], warmup + runs, timeout=600)
        own_cpu = time.process_time() - own_cpu0
        pg_cpu1 = _postgres_cpu(server)
        cpu = {k: sum(_cpu_of(p) for p in v) - host_cpu0[k] for k, v in pids.items()}
        cpu["postgres"] = sum(t - pg_cpu0.get(pid, 0.0) for pid, t in pg_cpu1.items())
        cpu["generator"] = own_cpu
        done = await _completed_at(clients, started)
    finally:
        for client in clients:
            await client.aclose()
    first = min(run.sent_at for run in started)
    window = max(done) - first
    latencies = [run.latency * 1000 for run in started]
    return Figures(
        hosts=len(hosts),
        runs=runs,
        steps_per_s=runs * STEPS / window,
        start_p50_ms=percentile(latencies, 50),
        start_p99_ms=percentile(latencies, 99),
        e2e_p50_ms=median(
            [(end - run.sent_at) * 1000 for run, end in zip(started, done, strict=True)]
        ),
        cpu_s=cpu,
        window_s=window,
        load=load,
    )


@contextlib.contextmanager
def _cluster(root: Path, project: Path, url: str, count: int) -> Iterator[list[ServeHost]]:
    """``count`` serve hosts on ``url``: the worker first, then standbys that saw it."""
    hosts: list[ServeHost] = []
    try:
        worker = ServeHost(project, url, root / "host-0.log")
        hosts.append(worker)
        worker.wait(lambda: worker.call("GET", "/api/workflows/schedules") == [], "the worker")
        for n in range(1, count):
            standby = ServeHost(project, url, root / f"host-{n}.log")
            hosts.append(standby)
        for standby in hosts[1:]:
            standby.wait(lambda s=standby: STANDBY_LINE in s.log(), "a standby")
        yield hosts
    finally:
        for host in reversed(hosts):
            host.stop()


def one_n(root: Path, server: Any, count: int, runs: int, warmup: int, concurrency: int) -> Figures:
    project = write_project(root)
    database = server.create_database()
    try:
        with _cluster(root, project, database.url, count) as hosts:
            return asyncio.run(_drive(hosts, server, runs, warmup, concurrency))
    finally:
        server.drop_database(database.name)


def describe(row: Figures) -> str:
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in row.cpu_s.items())
    return (
        f"{row.hosts} host(s): {row.steps_per_s:,.0f} steps/s ({row.runs} runs x {STEPS} steps"
        f" in {row.window_s:.2f} s), start p50 {row.start_p50_ms:.1f} ms p99"
        f" {row.start_p99_ms:.1f} ms, end-to-end p50 {row.e2e_p50_ms:.0f} ms;"
        f" CPU s in the window: {cpu}; load {row.load:.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 2, 4], help="values of N")
    parser.add_argument("--runs", type=int, default=400, help="runs per N (default 400)")
    parser.add_argument("--warmup", type=int, default=40, help="warm-up runs per N (default 40)")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="start requests in flight (default 32)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, N = 1 and 2")
    parser.add_argument("--tmp", help="where the projects and logs go")
    args = parser.parse_args(argv)
    if args.smoke:
        args.hosts, args.runs, args.warmup, args.concurrency = [1, 2], 20, 4, 4
    if any(n < 1 for n in args.hosts) or args.runs < 1 or args.concurrency < 1:
        parser.error("--hosts, --runs and --concurrency must be at least 1")
    # Imported late: it imports pytest.
    from tests.support.postgres import PostgresServer

    root = pick_tmp_root(args.tmp)
    print(
        "Execution happens on the one worker (the first host); the others are standbys that"
        " serve HTTP as clients of the store: extra hosts add HTTP capacity, not execution"
        " capacity. The load generator runs in this process, on the same cores.",
        flush=True,
    )
    load = " ".join(f"{x:.2f}" for x in loadavg())
    print(f"code {code_revision()}, {os.cpu_count()} cores, load (1, 5, 15 min) {load}", flush=True)
    rows = []
    with PostgresServer(durable=True) as server:
        for count in args.hosts:
            with scratch(root, "cluster") as folder:
                row = one_n(folder, server, count, args.runs, args.warmup, args.concurrency)
            rows.append(row)
            print(describe(row), flush=True)
    print()
    print(
        "| hosts | steps/s | start p50 | start p99 | end-to-end p50 |"
        " CPU s: worker / standbys / PostgreSQL / generator | load |"
    )
    print("|---:|---:|---:|---:|---:|---|---:|")
    for row in rows:
        c = row.cpu_s
        print(
            f"| {row.hosts} | {row.steps_per_s:,.0f} | {row.start_p50_ms:.1f} ms"
            f" | {row.start_p99_ms:.1f} ms | {row.e2e_p50_ms:.0f} ms"
            f" | {c['worker']:.2f} / {c['standbys']:.2f} / {c['postgres']:.2f}"
            f" / {c['generator']:.2f} | {row.load:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
