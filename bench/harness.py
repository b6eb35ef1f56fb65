"""The parts every table scenario of ``python -m bench`` shares: the scenario names, their
sizes (full and ``--smoke``), the definitions ``RESULTS.md`` prints, figure formatting, and
``Ctx``, what each scenario gets (the report, where to put data folders, how to run a job)."""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    JobRun,
    run_job,
)
from bench.report import Report, Row

SCENARIOS = [*"abcdefgp", "stall", "soak"]

# DBOS 3.4 on this kind of machine (issue 5), for when the peer cannot run here.
REFERENCE_STEPS_PER_S = 315.0
REFERENCE_P50_MS = 6.3

FULL: dict[str, dict[str, Any]] = {
    "a": {"runs": 200, "steps": 10, "rounds": 3},
    "b": {"samples": 120, "rounds": 3, "warmup": 50},
    "c": {"samples": 200, "warmup": 20},
    "d": {"runs": 1000, "steps": 10, "repeats": 3},
    "e": {"sizes": [1000, 5000, 10000], "history_repeats": 5},
    "f": {"n": 100_000, "batch": 2000, "repeats": 3, "host_repeats": 2},
    "g": {
        "get_keys": 100_000,
        "reads": 200_000,
        "put_writers": 100,
        "put_keys": 20_000,
        "reopen_keys": 1_000_000,
        "docs": 100_000,
        "indexed_lookups": 500,
        "scan_lookups": 20,
        "insert_writers": 100,
        "insert_docs": 20_000,
        "repeats": 3,
    },
    "stall": {"keys": 1_000_000, "interval_ms": 2.0, "quiet_s": 3.0, "repeats": 3},
    "soak": {
        "days": 30,
        "warmup_days": 8,
        "slices": 6,
        "runs_per_day": 6_700,
        "puts_per_day": 6_700,
        "messages_per_day": 2_000,
        "trace": False,
    },
}
FULL["p"] = {"n": 200_000, "repeats": 50, "limit": 100, "finish": 16_000}
SMOKE: dict[str, dict[str, Any]] = {
    "a": {"runs": 20, "steps": 3, "rounds": 1},
    "b": {"samples": 20, "rounds": 1, "warmup": 3},
    "c": {"samples": 10, "warmup": 2},
    "d": {"runs": 50, "steps": 3, "repeats": 1},
    "e": {"sizes": [50, 100, 200], "history_repeats": 2},
    "f": {"n": 300, "batch": 100, "repeats": 1, "host_repeats": 1},
    "p": {"n": 2000, "repeats": 5, "limit": 100, "finish": 1000},
    "g": {
        "get_keys": 2000,
        "reads": 5000,
        "put_writers": 20,
        "put_keys": 400,
        "reopen_keys": 3000,
        "docs": 2000,
        "indexed_lookups": 20,
        "scan_lookups": 3,
        "insert_writers": 20,
        "insert_docs": 400,
        "repeats": 1,
    },
    "stall": {"keys": 3000, "interval_ms": 2.0, "quiet_s": 0.5, "repeats": 1},
    "soak": {
        "days": 4,
        "warmup_days": 1,
        "slices": 2,
        "runs_per_day": 40,
        "puts_per_day": 40,
        "messages_per_day": 20,
        "trace": False,
    },
}

DEFINITIONS = {
    "a": "N runs of the workflow `bench-steps` (N sequential `step.run` calls of an `async def` returning"
    " its index) started at once (`asyncio.gather` of `workflows.start`), then every `result()` awaited;"
    " steps/s = runs x steps / wall time from the first start to the last result, after a warm-up of"
    " runs/10 runs, in a fresh process and data folder per round. The peer does the same with"
    " `DBOS.start_workflow_async` / `handle.get_result()` on `@DBOS.workflow` + `@DBOS.step` (asyncio)."
    " Rounds alternate ours / DBOS; the figure is the median round.",
    "b": 'sequential: `t0`, `h = await workflows.start("bench-steps", {"n": 1})`, `await h.result()`;'
    " the sample is the time from `t0` to `result()` returning (both the start record and the step +"
    " completion are durable by then). Warm-up runs first; samples of all rounds are pooled. The peer"
    " does `await (await DBOS.start_workflow_async(wf, 1)).get_result()`.",
    "c": "runs of `bench-wait` are started and polled (`handle.status()`, which waits for the ledger to"
    " be durable) until all are parked on `wait_for_event`; then for each run in turn: `t0 ="
    ' perf_counter()` just before `await workflows.send_event("bench.go", {"k": i})`. **to step**'
    ' = `perf_counter()` read inside the body of the step after the wait (`step.run("after", ...)`)'
    " minus `t0`: the resumed run is doing new work (the signal and the wait's completion are durable"
    " before that body runs). **to result** = `await handle.result()` returning, minus `t0` (the run's"
    " completion is durable). The other parked runs stay parked meanwhile.",
    "d": "as a), with 1,000 runs x 10 steps started at once; median of the repeats.",
    "e": "one run of `bench-long` with n sequential steps, `start` -> `result()` (each step's record"
    " is durable before the next step's body runs, so this is n group commits); then `history()` on it"
    " (median of repeats; the list of n `StepRecord`s). **replay**: a run of n steps that then parks on"
    " `wait_for_event` is resumed with `send_event` -> `result()`: the activation replays the n recorded"
    " steps from the ledger. Sizes 1k/5k/10k show each is linear.",
    "f": 'the folder is filled through the engine\'s API (`workflows.start("bench-sleeper")` in'
    " concurrent batches, durability `flush` for speed: the files are the same): each run records one"
    " step and parks on a 30-day `step.sleep`. A copy is kept uncompacted; the other is compacted with"
    " `python -m host compact --data DIR`. **worker serves** = in a fresh process, `Worker.open()`"
    " (lock, load the logs) + `Worker.begin()` (recovery: re-arm every timer, start dispatcher,"
    " scheduler, watcher), default options (the uncompacted folder with `compact_bytes` raised so it"
    " is not compacted on start, which the default would do past 64 MiB). **host** = spawn of"
    " `python -m host serve PROJECT --data DIR` until `GET /api/workflows/runs?limit=1` answers 200"
    " with one run (includes interpreter start and imports; the empty-folder figure is that fixed"
    " cost). **memory per parked run** = (RSS after open+begin with N parked runs - RSS of the same"
    " with an empty folder) / N, each a fresh process, after `gc.collect()`; tracemalloc = bytes"
    " Python allocated from before `Worker(...)` to after `begin()`, / N. Page cache warm (the files"
    " were just written); each restart works on a fresh copy of the folder.",
    "p": "**pages**: a folder of N runs written straight into `runs.jsonl`"
    " (`bench.dashboard_scale.fill`: 97 % completed, 2 % failed, 0.5 % cancelled, 0.5 % parked; two"
    " workflows), opened and compacted once by a worker (the steady state of a long-running host:"
    " finished runs moved out of the ledger), then opened by a fresh process (`Worker.open()` +"
    " `begin()`) that times `await platform.workflows.list(limit=100, ...)` (the call behind"
    " `GET /api/workflows/runs` and the dashboard's pages) per filter, median of the repeats."
    " **memory per finished run**: a fresh process on an empty folder ends 2 x 500 warm-up runs, then"
    " N one-step runs (`bench-steps`, 500 at a time, durability `flush`); (RSS after - RSS before) / N."
    " **after a restart**: a fresh process opens that folder (`open()` + `begin()`); its RSS minus"
    " the same on an empty folder, / N; then the same after `worker.compact()` on it.",
    "g": "**KV get**: `await kv.get(ns, key)` in a loop over random keys of a folder of 100k keys"
    " (median of 3 passes), in-process. **KV put**: 100 concurrent tasks, each awaiting its own"
    " `kv.put` of distinct keys, after a warm-up; puts acknowledged per second. **reopen**: a folder"
    " whose KV holds 1M live keys (filled with 200 writers, `flush`), compacted with `python -m host"
    " compact` (a snapshot) or not (the 1M-event log; auto-compaction on start turned off), opened by"
    " a fresh process: `Worker.open()` + `begin()`. **DB find**: 100k documents, unique index on"
    ' `email`; `await database.find("users", {"email": v})` (indexed) and the same on `code`'
    " (same values, no index), random existing values, on a freshly opened platform. **DB insert**:"
    " 100 concurrent tasks doing `insert_one`. Reads never touch the disk; writes are measured at"
    " both durabilities.",
    "stall": "a folder whose KV holds 1M live keys (filled through `kv.put` by 200 writers, `flush`;"
    " the folder is not compacted before) is opened by a worker (default `fsync` durability) in a"
    " fresh process; an open-loop load issues one request every 2 ms (alternately `kv.get` and a"
    " durable `kv.put` of a random existing key, each in its own task, latency counted from when it"
    " was due); a probe asks the loop for a callback 1 ms ahead, over and over, and records how late"
    " each runs. After 3 s of load the worker compacts (`Worker.compact()`: snapshots, events,"
    " ledger, dispatch). **stall** = the latest probe callback between the start and the end of the"
    " compaction; **p99** = of the requests due in that span; **quiet** = the same figures over the"
    " 3 s before it. Median of the repeats, each on a fresh copy of the folder.",
    "soak": "one `open_platform` worker (durability `flush`, a `FakeClock`) lives through 30 days in"
    " 6 slices a day, the clock moved 4 h after each: runs of `soak-order` (a step, a"
    " `wait_for_event` with a 1 h timeout, a step) started 1,000 at a time and answered with"
    " `send_event` (one in ten left to time out; as many events again match no run), TTL puts"
    " (10 min-2 h) on 5,000 rotating session keys, queue messages (one in twenty poison,"
    " dead-lettered after 3 attempts), and each day the KV handler replaced by a new one"
    " (`Worker.reload`). Compaction is the worker's own maintenance (64 MiB threshold, hourly"
    " retention check; finished runs kept 7 days). RSS is read after `gc.collect()` at the"
    " start, after the warm-up (day 8: the retention window plus a day), midway and at the end;"
    " tracemalloc compares the end with the warm-up by source line.",
}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def fmt_rate(value: float, unit: str = "/s") -> str:
    return f"{value:,.0f} {unit}".strip()


def fmt_ms(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.3f} ms" if value < 1 else f"{value:.2f} ms"


def fmt_s(value: float) -> str:
    return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"


def fmt_bytes(value: float) -> str:
    if abs(value) >= 1 << 20:
        return f"{value / (1 << 20):,.1f} MiB"
    if abs(value) >= 1 << 10:
        return f"{value / (1 << 10):,.2f} KiB"
    return f"{value:,.0f} B"


def mem_available_mib() -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    return 1 << 30


@dataclass
class Ctx:
    report: Report
    tmp_root: Path
    smoke: bool
    peer: bool
    profile_dir: Path | None
    log_file: Path
    peer_error: str | None = None

    def sizes(self, scenario: str) -> dict[str, Any]:
        return (SMOKE if self.smoke else FULL)[scenario]

    def command(self, scenario: str) -> str:
        parts = ["python -m bench", f"--only {scenario}"]
        if self.smoke:
            parts.append("--smoke")
        if scenario in ("a", "b") and not self.peer:
            parts.append("--no-peer")
        return " ".join(parts)

    @property
    def peer_ok(self) -> bool:
        return self.peer and self.peer_error is None

    def job(self, name: str, args: dict[str, Any], **kw: Any) -> JobRun:
        say(f"    job {name} {short_args(args)}")
        run = run_job(name, args, log_file=self.log_file, **kw)
        say(f"      done in {run.seconds:.1f}s (load {run.load_before[0]:.2f})")
        return run

    def profile(self, name: str) -> str | None:
        if self.profile_dir is None:
            return None
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        return str(self.profile_dir / f"{name}.txt")

    def row(self, scenario: str, what: str, figure: str, **kw: Any) -> Row:
        row = Row(scenario, what, figure, command=self.command(scenario), when=now_iso(), **kw)
        self.report.rows.append(row)
        return row


def say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def short_args(args: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in args.items() if k not in ("data", "profile")})
