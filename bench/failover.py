"""``python -m bench.failover``: how long a standby host takes to take over from a killed worker.

    python -m bench.failover                      # 3 rounds, 20 runs of each kind
    python -m bench.failover --rounds 5 --runs 50 --parked 10000
    python -m bench.failover --store postgres     # the same rounds on PostgreSQL

Each round: two ``python -m host serve`` processes on one fresh data folder (the first is the
worker, the second its standby, as ``host.standby`` describes), with ``--parked`` runs asleep for
30 days in the ledger (filled before the hosts start: a bigger store to load at takeover).
Through the standby it starts ``--runs`` runs of each kind and waits until, on the worker, they
are *running* (a step body of 5 s in flight), *sleeping* (a 3 s sleep) and *waiting* for an
event; then it SIGKILLs the worker and at once sends the waiting runs' events through the
standby (which records them as a client: no worker runs then). Figures, from the SIGKILL:

- **took over**: the standby's "took over as the worker" log line (its own clock's timestamp);
- **last due orphan resumed**: the latest first step body that ran after the kill in a run whose
  work was due then (a busy or a waiting run: each body appends ``time.time()`` to a file, the
  ground truth of when work resumed); **sleepers late**: how long after max(kill, its wake time)
  the worst sleeping run ran its next step;
- **all done**: every orphaned run completed (polled through the standby's API every 20 ms).

The standby polls the worker lock every 0.5 s (``host.standby.DEFAULT_POLL_S``), so about
half of that is the expected detection delay; the rest is loading the store and recovering.

``--store postgres`` runs the same rounds with ``--store URL`` in place of ``--data DIR``: one
durable throwaway PostgreSQL (``tests/support/postgres.py``, ``durable=True``: fsync and
synchronous commit on) started once for the whole run, and a fresh database in it per round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.common import REPO, code_revision, loadavg, median, pick_tmp_root, scratch

EVENT = "failover.go"
TOOK_OVER = "took over as the worker"
NAP_MS = 3000
"""The nappers' sleep: every napper must still be asleep when the last run has been started
through the standby and the worker counted them parked (a start commits with fsync, on a loaded
machine that is tens of ms each on PostgreSQL; 1 s was too short there)."""

_PROJECT = """
import asyncio
import os
import time

import orjson

from platform_shim.workflows import define_workflow

EFFECTS = {effects!r}
NAP_MS = {nap_ms!r}


def append(record):
    fd = os.open(EFFECTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, orjson.dumps(record) + b"\\n")
    finally:
        os.close(fd)


def effect(ctx, name, slow=0.0):
    async def body():
        append({{"run": ctx.run_id, "step": name, "at": time.time(), "pid": os.getpid()}})
        if slow:
            await asyncio.sleep(slow)
        return name

    return body


@define_workflow({{"id": "busy"}})
async def busy(input, step, ctx):
    await step.run("slow", effect(ctx, "slow", 5.0))
    await step.run("after", effect(ctx, "after"))


@define_workflow({{"id": "napper"}})
async def napper(input, step, ctx):
    await step.run("a", effect(ctx, "a"))
    await step.sleep("nap", NAP_MS)
    await step.run("after", effect(ctx, "after"))


@define_workflow({{"id": "waiter"}})
async def waiter(input, step, ctx):
    await step.run("a", effect(ctx, "a"))
    await step.wait_for_event("go", type={event!r}, match={{"key": input["key"]}})
    await step.run("after", effect(ctx, "after"))


@define_workflow({{"id": "sleeper"}})
async def sleeper(input, step, ctx):
    await step.sleep("month", "30d")
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServeHost:
    """One ``python -m host serve`` process with its log in a file."""

    def __init__(
        self, project: Path, store: Path | str, log: Path, *, env: dict[str, str] | None = None
    ) -> None:
        self.port = _free_port()
        self.log_path = log
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")},
            **(env or {}),
        }
        env["PYTHONPATH"] = str(REPO)
        env["PYTHONUNBUFFERED"] = "1"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "host",
                    "serve",
                    str(project),
                    "--quiet",
                    *self._where(store),
                ],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def _where(self, store: Path | str) -> list[str]:
        # A folder is --data, a database URL is --store (the host accepts either).
        where = ["--data", str(store)] if isinstance(store, Path) else ["--store", store]
        return ["--port", str(self.port), *where]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def call(self, method: str, path: str, body: Any = None) -> Any:
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def wait(self, check: Any, what: str, timeout: float = 120.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"host exited while waiting for {what}:\n{self.log()[-3000:]}")
            with contextlib.suppress(OSError):
                value = check()
                if value:
                    return value
            time.sleep(0.02)
        raise TimeoutError(f"{what} within {timeout}s:\n{self.log()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _logged_at(log: str, text: str) -> float:
    """The epoch time of the first log line holding ``text`` (the host logs local time, ms)."""
    for line in log.splitlines():
        if text in line:
            return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    raise ValueError(f"{text!r} is not in the log")


def _fill(store: Path | str, parked: int) -> None:
    """``parked`` starts of ``sleeper`` recorded by a client: the first host runs them."""
    if not parked:
        return
    from platform_shim.platform import open_client

    async def fill() -> None:
        client = open_client(store=store, durability="flush")
        try:
            for start in range(0, parked, 1000):
                await asyncio.gather(
                    *(
                        client.workflows.start("sleeper", {"n": n})
                        for n in range(start, min(parked, start + 1000))
                    )
                )
        finally:
            await client.settle()
            client.close()

    asyncio.run(fill())


def one_round(root: Path, runs: int, parked: int, store: str | None = None) -> dict[str, float]:
    """One round on ``store`` (a database URL), else on a fresh data folder under ``root``."""
    project = root / "project"
    (project / "workflows").mkdir(parents=True)
    effects = root / "effects.jsonl"
    (project / "workflows" / "failover.py").write_text(
        textwrap.dedent(_PROJECT).format(effects=str(effects), event=EVENT, nap_ms=NAP_MS)
    )
    data: Path | str = store if store is not None else root / "data"
    _fill(data, parked)
    worker = ServeHost(project, data, root / "worker.log")
    standby: ServeHost | None = None
    try:
        worker.wait(lambda: worker.call("GET", "/api/workflows/schedules") == [], "the worker")
        if parked:

            def all_parked() -> bool:
                counts = worker.call("GET", "/_platform/api/overview")["counts"]
                return bool(counts["sleeping"] >= parked)

            worker.wait(all_parked, f"{parked} parked runs", timeout=600)
        standby = ServeHost(project, data, root / "standby.log")
        standby.wait(lambda: "standby: the worker on" in standby.log(), "the standby")
        started: dict[str, list[str]] = {"busy": [], "napper": [], "waiter": []}
        for n in range(runs):
            for kind in started:
                run = standby.call("POST", f"/api/workflows/{kind}/start", {"key": f"k{n}"})
                started[kind].append(run["runId"])

        def counted(kind: str, wanted: str) -> bool:
            # The run counts of one workflow: two requests per check, however many runs.
            overview = worker.call("GET", f"/_platform/api/overview?workflowId={kind}")
            return bool(overview["counts"].get(wanted, 0) == runs)

        def parked_as_wanted() -> bool:
            return counted("waiter", "waiting_event") and counted("napper", "sleeping")

        worker.wait(parked_as_wanted, "the runs to park")
        # The busy runs' 5 s bodies are in flight, the nappers wake within 3 s of this.
        killed_at = time.time()
        worker.proc.send_signal(signal.SIGKILL)
        worker.proc.wait()
        for n in range(runs):
            event = {"eventType": EVENT, "payload": {"key": f"k{n}"}}
            standby.call("POST", "/api/workflows/signal", event)
        orphans = [r for kind in started.values() for r in kind]

        def done() -> bool:
            return all(
                standby.call("GET", f"/api/workflows/runs/{r}")["status"] == "completed"
                for r in orphans
            )

        standby.wait(done, "every orphaned run to complete")
        done_at = time.time()
        took_over = _logged_at(standby.log(), TOOK_OVER)
        resumed: dict[str, float] = {}
        finished = set()  # ran their last body before the kill: not orphans
        for line in effects.read_text().splitlines():
            effect = json.loads(line)
            if effect["at"] < killed_at and effect["step"] == "after":
                finished.add(effect["run"])
            elif effect["at"] >= killed_at and effect["run"] not in resumed:
                resumed[effect["run"]] = effect["at"]
        missing = set(orphans) - set(resumed) - finished
        assert not missing, missing
        # Work that was due at the kill: a busy body in flight, a waiter's event.
        due = [r for r in (*started["busy"], *started["waiter"]) if r not in finished]
        late = []
        for run_id in set(started["napper"]) - finished:
            history = standby.call("GET", f"/api/workflows/runs/{run_id}/history")
            [nap] = [step for step in history if step["name"] == "nap"]
            late.append(resumed[run_id] - max(killed_at, nap["wakeAt"] / 1000))
        return {
            "took_over_s": took_over - killed_at,
            "last_resumed_s": max(resumed[r] for r in due) - killed_at,
            "nap_late_s": max(late, default=0.0),
            "all_done_s": done_at - killed_at,
        }
    finally:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()
        if standby is not None:
            standby.stop()


def _describe(row: dict[str, float]) -> str:
    return (
        f"took over {row['took_over_s']:.3f} s, last due orphan resumed"
        f" {row['last_resumed_s']:.3f} s, sleepers late by <= {row['nap_late_s']:.3f} s,"
        f" all done {row['all_done_s']:.3f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.failover",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20, help="runs of each kind (default 20)")
    parser.add_argument("--parked", type=int, default=0, help="30-day sleepers in the store")
    parser.add_argument(
        "--store",
        choices=("folder", "postgres"),
        default="folder",
        help="a fresh data folder per round (default), or a fresh database of one durable"
        " throwaway PostgreSQL per round",
    )
    parser.add_argument("--tmp", help="where the data folders go (a real disk)")
    args = parser.parse_args(argv)
    root = pick_tmp_root(args.tmp)
    with contextlib.ExitStack() as stack:
        server: Any = None
        if args.store == "postgres":
            # Imported late: it imports pytest, which the folder rounds do not need.
            from tests.support.postgres import PostgresServer

            server = stack.enter_context(PostgresServer(durable=True))
        rows = []
        load = loadavg()[0]
        for n in range(args.rounds):
            with scratch(root, "failover") as folder:
                url = None if server is None else server.create_database().url
                row = one_round(folder, args.runs, args.parked, url)
            rows.append(row)
            print(f"round {n + 1} ({args.store}): {_describe(row)}", flush=True)
    summary = {key: median([row[key] for row in rows]) for key in rows[0]}
    print(
        f"median of {args.rounds} on a {args.store} store ({3 * args.runs} orphaned runs,"
        f" {args.parked} parked, code {code_revision()}, load {load:.2f} -> {loadavg()[0]:.2f}):"
        f" {_describe(summary)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
