"""``python -m bench.cluster``: 1, 2 and 4 ``serve`` hosts on one PostgreSQL database (issue 14).

    python -m bench.cluster                          # N = 1, 2, 4; 1000 runs x 10 steps each
    python -m bench.cluster --hosts 1 2 --runs 200 --concurrency 16 --client httpx
    python -m bench.cluster --smoke                  # tiny sizes: proves the harness works

One durable throwaway PostgreSQL (``tests/support/postgres.py``, ``durable=True``: fsync and
synchronous commit on) for the whole run, and a fresh database in it per N. For each N, N real
``python -m host serve PROJECT --store URL`` processes: the first is the store's **worker**, the
others wait until they log "standby: the worker on" (``host.standby``): they serve the whole HTTP
API as clients of the store. **Every run executes on the one worker**; the standbys record starts
in the database and the worker picks them up (NOTIFY). So extra hosts add HTTP capacity (parsing,
routing, the start's commit), not execution capacity: this measures what that buys.

The load generator is this process: asyncio, ``--concurrency`` keep-alive connections (at least
one per host), each sending its share of the start requests one after the other, so run n goes to
host n mod N (``POST /api/workflows/ten/start``; ``ten`` is 10 ``step.run`` of a trivial body
returning its index). By default a connection is a minimal HTTP/1.1 client on asyncio streams
(``_Connection``: the request is one write, the response a status line, headers and a
``Content-Length`` body) because on a 2-core machine the generator takes CPU from the hosts it
measures: ``--client httpx`` sends the same requests through ``httpx.AsyncClient`` (one per host),
which costs several times more CPU per request here (the CPU column shows it). It then waits for every run to complete by polling the first host's run counts
(``GET /_platform/api/overview``, every 50 ms: no per-run polling during the measurement; the API
has no endpoint that waits for a result), and afterwards reads each run once
(``GET /api/workflows/runs/{id}`` on the host that started it) to check its output and take its
``completedAt`` (the worker's wall clock, ms; same machine as the generator). Figures per N:

- **steps/s**: runs x 10 / (last ``completedAt`` - the first start request's send time);
- **start p50 / p99**: the HTTP start request, send -> 200 on an open connection (a connection
  sends its next request when the last one is answered: the client adds no queue of its own);
- **end-to-end p50 / p99 / max**: a run's ``completedAt`` - its start request's send time (the
  slowest run is named, host and run id);
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
import json
import os
import statistics
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.common import banner, loadavg, percentile, pick_tmp_root, scratch
from bench.failover import ServeHost

WORKFLOW = "ten"
STEPS = 10
STANDBY_LINE = "standby: the worker on"
POLL_S = 0.05
STRAGGLER_MS = 5000
"""A run slower than this end to end gets its hosts' log lines printed."""
JSON = {"Content-Type": "application/json"}

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


class _Connection:
    """One keep-alive HTTP/1.1 connection that POSTs JSON and reads a ``Content-Length`` reply."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        assert self._reader is not None and self._writer is not None, "not open"
        self._writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        status_line = await self._reader.readline()
        if not status_line:
            raise ConnectionError(f"the host on port {self.port} closed the connection")
        status = int(status_line.split()[1])
        length = 0
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                raise ConnectionError("a chunked reply: this client reads Content-Length only")
        return status, await self._reader.readexactly(length)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()


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
    e2e_p99_ms: float
    e2e_max_ms: float
    slowest: str  # the run with the longest end-to-end time: its host and its id
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
    hosts: list[ServeHost],
    clients: list[httpx.AsyncClient],
    runs: int,
    concurrency: int,
    client: str,
) -> list[Started]:
    """Start ``runs`` runs, run n on host n mod N, over ``concurrency`` connections (a multiple
    of N: connection k serves host k mod N and sends runs k, k + C, k + 2C, ... in turn)."""
    count = len(hosts)
    lanes = max(count, concurrency - concurrency % count)
    body = b"{}"
    started: list[Started | None] = [None] * runs

    async def lane(k: int) -> None:
        host = k % count
        connection = _Connection(hosts[host].port) if client == "raw" else None
        if connection is not None:
            await connection.open()
        try:
            for n in range(k, runs, lanes):
                sent_at = time.time()
                t0 = time.perf_counter()
                if connection is not None:
                    status, raw = await connection.post(f"/api/workflows/{WORKFLOW}/start", body)
                else:
                    response = await clients[host].post(
                        f"/api/workflows/{WORKFLOW}/start", content=body, headers=JSON
                    )
                    status, raw = response.status_code, response.content
                latency = time.perf_counter() - t0
                if status != 200:
                    raise AssertionError(f"start on host {host}: HTTP {status} {raw[:500]!r}")
                started[n] = Started(host, str(json.loads(raw)["runId"]), sent_at, latency)
        finally:
            if connection is not None:
                await connection.close()

    await asyncio.gather(*(lane(k) for k in range(lanes)))
    return [run for run in started if run is not None]


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
    client: str,
) -> Figures:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    clients = [
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{h.port}", limits=limits, timeout=60)
        for h in hosts
    ]
    try:
        if warmup:
            await _start_all(hosts, clients, warmup, concurrency, client)
            await _wait_completed(clients[0], warmup, timeout=300)
        load = loadavg()[0]
        pids = {"worker": [hosts[0].proc.pid], "standbys": [h.proc.pid for h in hosts[1:]]}
        host_cpu0 = {k: sum(_cpu_of(p) for p in v) for k, v in pids.items()}
        pg_cpu0 = _postgres_cpu(server)
        own_cpu0 = time.process_time()
        started = await _start_all(hosts, clients, runs, concurrency, client)
        await _wait_completed(clients[0], warmup + runs, timeout=600)
        own_cpu = time.process_time() - own_cpu0
        pg_cpu1 = _postgres_cpu(server)
        cpu = {k: sum(_cpu_of(p) for p in v) - host_cpu0[k] for k, v in pids.items()}
        cpu["postgres"] = sum(t - pg_cpu0.get(pid, 0.0) for pid, t in pg_cpu1.items())
        cpu["generator"] = own_cpu
        done = await _completed_at(clients, started)
    finally:
        for http in clients:
            await http.aclose()
    first = min(run.sent_at for run in started)
    window = max(done) - first
    latencies = [run.latency * 1000 for run in started]
    e2e = [(end - run.sent_at) * 1000 for run, end in zip(started, done, strict=True)]
    slowest = max(range(len(e2e)), key=e2e.__getitem__)
    if e2e[slowest] > STRAGGLER_MS:
        # What the hosts logged of it: where the time went.
        run_id = started[slowest].run_id
        print(f"straggler: run {run_id} took {e2e[slowest]:.0f} ms end to end", flush=True)
        for n, host in enumerate(hosts):
            for line in host.log().splitlines():
                if run_id in line:
                    print(f"  host {n}: {line}", flush=True)
    return Figures(
        hosts=len(hosts),
        runs=runs,
        steps_per_s=runs * STEPS / window,
        start_p50_ms=percentile(latencies, 50),
        start_p99_ms=percentile(latencies, 99),
        e2e_p50_ms=percentile(e2e, 50),
        e2e_p99_ms=percentile(e2e, 99),
        e2e_max_ms=max(e2e),
        slowest=f"host {started[slowest].host} run {started[slowest].run_id}",
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


def one_n(
    root: Path, server: Any, count: int, runs: int, warmup: int, concurrency: int, client: str
) -> Figures:
    project = write_project(root)
    database = server.create_database()
    try:
        with _cluster(root, project, database.url, count) as hosts:
            return asyncio.run(_drive(hosts, server, runs, warmup, concurrency, client))
    finally:
        server.drop_database(database.name)


def _median_of(rows: list[Figures]) -> Figures:
    """Each figure's median over the rounds (the load too; the slowest run of the last round)."""

    def mid(values: list[float]) -> float:
        return float(statistics.median(values))

    return Figures(
        hosts=rows[0].hosts,
        runs=rows[0].runs,
        steps_per_s=mid([r.steps_per_s for r in rows]),
        start_p50_ms=mid([r.start_p50_ms for r in rows]),
        start_p99_ms=mid([r.start_p99_ms for r in rows]),
        e2e_p50_ms=mid([r.e2e_p50_ms for r in rows]),
        e2e_p99_ms=mid([r.e2e_p99_ms for r in rows]),
        e2e_max_ms=mid([r.e2e_max_ms for r in rows]),
        slowest=rows[-1].slowest,
        cpu_s={k: mid([r.cpu_s[k] for r in rows]) for k in rows[0].cpu_s},
        window_s=mid([r.window_s for r in rows]),
        load=mid([r.load for r in rows]),
    )


def describe(row: Figures) -> str:
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in row.cpu_s.items())
    return (
        f"{row.hosts} host(s): {row.steps_per_s:,.0f} steps/s ({row.runs} runs x {STEPS} steps"
        f" in {row.window_s:.2f} s), start p50 {row.start_p50_ms:.1f} ms p99"
        f" {row.start_p99_ms:.1f} ms, end-to-end p50 {row.e2e_p50_ms:.0f} ms p99"
        f" {row.e2e_p99_ms:.0f} ms max {row.e2e_max_ms:.0f} ms ({row.slowest});"
        f" CPU s in the window: {cpu}; load {row.load:.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 2, 4], help="values of N")
    parser.add_argument("--runs", type=int, default=1000, help="runs per N (default 1000)")
    parser.add_argument("--warmup", type=int, default=40, help="warm-up runs per N (default 40)")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="start requests in flight (default 32)"
    )
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="the start requests' HTTP client (default raw: asyncio streams, the cheapest)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="rounds per N; medians (default 1)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, N = 1 and 2")
    parser.add_argument("--tmp", help="where the projects and logs go")
    args = parser.parse_args(argv)
    if args.smoke:
        args.hosts, args.runs, args.warmup, args.concurrency = [1, 2], 20, 4, 4
    if min(*args.hosts, args.runs, args.concurrency, args.rounds) < 1:
        parser.error("--hosts, --runs, --concurrency and --rounds must be at least 1")
    # Imported late: it imports pytest.
    from tests.support.postgres import PostgresServer

    root = pick_tmp_root(args.tmp)
    print(
        "Execution happens on the one worker (the first host); the others are standbys that"
        " serve HTTP as clients of the store: extra hosts add HTTP capacity, not execution"
        " capacity. The load generator runs in this process, on the same cores.",
        flush=True,
    )
    print(banner(), flush=True)
    measured: dict[int, list[Figures]] = {count: [] for count in args.hosts}
    with PostgresServer(durable=True) as server:
        # Round after round over every N, so the machine's load falls on all of them.
        for n in range(args.rounds):
            for count in args.hosts:
                with scratch(root, "cluster") as folder:
                    row = one_n(
                        folder, server, count, args.runs, args.warmup, args.concurrency, args.client
                    )
                measured[count].append(row)
                print(f"round {n + 1}, {describe(row)}", flush=True)
    rows = [_median_of(measured[count]) for count in args.hosts]
    print()
    print(
        f"Median of {args.rounds} round(s) of {args.runs} runs x {STEPS} steps per N after"
        f" {args.warmup} warm-up runs,"
        f" {args.concurrency} start requests in flight, client {args.client};"
        " one durable PostgreSQL (fsync on), a fresh database per N."
    )
    print(
        "| hosts | steps/s | start p50 | start p99 | end-to-end p50 | p99 | max |"
        " CPU s: worker / standbys / PostgreSQL / generator | load |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    for row in rows:
        c = row.cpu_s
        print(
            f"| {row.hosts} | {row.steps_per_s:,.0f} | {row.start_p50_ms:.1f} ms"
            f" | {row.start_p99_ms:.1f} ms | {row.e2e_p50_ms:.0f} ms"
            f" | {row.e2e_p99_ms:.0f} ms | {row.e2e_max_ms:.0f} ms"
            f" | {c['worker']:.2f} / {c['standbys']:.2f} / {c['postgres']:.2f}"
            f" / {c['generator']:.2f} | {row.load:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
