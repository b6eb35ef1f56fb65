"""``python -m bench``: run every scenario, write ``bench/RESULTS.md``, print the ratios.

    python -m bench                      # everything, DBOS side by side, full sizes
    python -m bench --only a,b           # a subset (named ones too: --only stall)
    python -m bench --smoke --out X.md   # tiny sizes, no peer: proves the harness works (CI)
    python -m bench --no-peer            # skip DBOS (its reference figures are shown, marked)
    python -m bench --only a --profile bench/profiles   # also write pyinstrument profiles

Each measurement is a fresh child process on a fresh data folder under a temp root on a real
disk (never tmpfs; ``--tmp`` or ``$BENCH_TMPDIR`` to choose). Where a figure is repeated, the
table shows the median and ``RESULTS.md`` lists every repeat.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    JobError,
    JobRun,
    Machine,
    code_revision,
    fsync_probe,
    loadavg,
    median,
    percentile,
    pick_tmp_root,
    run_job,
    scratch,
)
from bench.report import SCENARIO_TITLES, Report, Row

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


# ----------------------------------------------------------------------------- scenarios


def scenario_a(ctx: Ctx) -> None:
    s = ctx.sizes("a")
    load = loadavg()[0]
    args = {"runs": s["runs"], "steps": s["steps"]}
    if ctx.profile_dir is not None:
        with scratch(ctx.tmp_root, "a-prof") as d:
            ctx.job(
                "throughput",
                {**args, "data": str(d / "data"), "profile": ctx.profile("a_throughput")},
            )
    ours: list[float] = []
    theirs: list[float] = []
    peer_info: dict[str, Any] = {}
    for r in range(s["rounds"]):
        with scratch(ctx.tmp_root, "a") as d:
            res = ctx.job("throughput", {**args, "data": str(d / "data")}).result
        ours.append(res["steps_per_s"])
        ctx.report.detail(
            "a",
            f"round {r + 1} ours: {res['steps_per_s']:,.0f} steps/s ({res['wall_s']:.3f} s wall,"
            f" {res['cpu_s']:.3f} s CPU = {res['cpu_s'] / (res['runs'] * res['steps']) * 1e6:.0f} us CPU per step)",
        )
        if ctx.peer_ok:
            with scratch(ctx.tmp_root, "a-dbos") as d:
                res = ctx.job("dbos_throughput", {**args, "data": str(d)}).result
            theirs.append(res["steps_per_s"])
            peer_info = res
            ctx.report.detail(
                "a",
                f"round {r + 1} DBOS: {res['steps_per_s']:,.0f} steps/s ({res['wall_s']:.3f} s)",
            )
    ours_med = median(ours)
    if theirs:
        peer_med = median(theirs)
        peer_text = fmt_rate(peer_med, "steps/s")
        ratio = ours_med / peer_med
        ratio_text = f"{ratio:,.1f}x"
        ctx.report.detail("a", f"peer: {json.dumps(peer_info)}")
    else:
        peer_med = REFERENCE_STEPS_PER_S
        peer_text = f"{REFERENCE_STEPS_PER_S:.0f} steps/s (reference, NOT measured in this run)"
        ratio = ours_med / peer_med
        ratio_text = f"{ratio:,.1f}x (vs reference)"
    what = f"{s['runs']} runs x {s['steps']} steps, steps/s (median of {s['rounds']})"
    ctx.row(
        "a",
        what,
        fmt_rate(ours_med, "steps/s"),
        peer=peer_text,
        ratio=ratio_text,
        target=">= 50x DBOS",
        met=ratio >= 50,
        load=load,
    )
    say(f"a) steps/s: ours {ours_med:,.0f}, peer {peer_text} -> {ratio_text} (target >= 50x)")
    # The same runs with plain ``def`` step bodies: those run in the worker's thread pool.
    sync: list[float] = []
    for r in range(s["rounds"]):
        with scratch(ctx.tmp_root, "a-sync") as d:
            res = ctx.job(
                "throughput", {**args, "data": str(d / "data"), "workflow": "bench-steps-sync"}
            ).result
        sync.append(res["steps_per_s"])
        ctx.report.detail(
            "a", f"round {r + 1} ours, sync bodies: {res['steps_per_s']:,.0f} steps/s"
        )
    sync_med = median(sync)
    ctx.row(
        "a",
        f"the same with plain `def` step bodies (thread pool), steps/s (median of {s['rounds']})",
        fmt_rate(sync_med, "steps/s"),
        ratio=f"{sync_med / ours_med:.2f}x of async bodies",
        load=load,
    )
    say(f"a) steps/s with sync bodies: {sync_med:,.0f} ({sync_med / ours_med:.2f}x of async)")


def scenario_b(ctx: Ctx) -> None:
    s = ctx.sizes("b")
    load = loadavg()[0]
    args = {"samples": s["samples"], "warmup": s["warmup"]}
    if ctx.profile_dir is not None:
        with scratch(ctx.tmp_root, "b-prof") as d:
            ctx.job(
                "latency", {**args, "data": str(d / "data"), "profile": ctx.profile("b_latency")}
            )
    ours: list[float] = []
    theirs: list[float] = []
    peer_info: dict[str, Any] = {}
    for r in range(s["rounds"]):
        with scratch(ctx.tmp_root, "b") as d:
            res = ctx.job("latency", {**args, "data": str(d / "data")}).result
        ours += res["samples_ms"]
        ctx.report.detail(
            "b",
            f"round {r + 1} ours: p50 {res['p50_ms']:.3f} ms, p99 {res['p99_ms']:.3f} ms,"
            f" {res['cpu_ms_per_run']:.3f} ms CPU per run",
        )
        if ctx.peer_ok:
            with scratch(ctx.tmp_root, "b-dbos") as d:
                res = ctx.job("dbos_latency", {**args, "data": str(d)}).result
            theirs += res["samples_ms"]
            peer_info = {k: v for k, v in res.items() if k != "samples_ms"}
            ctx.report.detail(
                "b", f"round {r + 1} DBOS: p50 {res['p50_ms']:.3f} ms, p99 {res['p99_ms']:.3f} ms"
            )
    n = len(ours)
    for q, label in ((50, "p50"), (99, "p99")):
        mine = percentile(ours, q)
        if theirs:
            peer_value = percentile(theirs, q)
            peer_text = fmt_ms(peer_value)
            ratio = peer_value / mine
            ratio_text = f"{ratio:,.1f}x lower"
        elif q == 50:
            peer_value = REFERENCE_P50_MS
            peer_text = f"{REFERENCE_P50_MS} ms (reference, NOT measured in this run)"
            ratio = peer_value / mine
            ratio_text = f"{ratio:,.1f}x lower (vs reference)"
        else:
            peer_text, ratio, ratio_text = "", math.nan, ""
        target = ">= 10x lower than DBOS" if q == 50 else ""
        ctx.row(
            "b",
            f"1-step run {label} ({n} samples)",
            fmt_ms(mine),
            peer=peer_text,
            ratio=ratio_text,
            target=target,
            met=(ratio >= 10) if q == 50 else None,
            load=load,
        )
        say(f"b) {label}: ours {fmt_ms(mine)}, peer {peer_text} -> {ratio_text}")
    if peer_info:
        ctx.report.detail("b", f"peer: {json.dumps(peer_info)}")
    sync: list[float] = []
    for _ in range(s["rounds"]):
        with scratch(ctx.tmp_root, "b-sync") as d:
            res = ctx.job(
                "latency", {**args, "data": str(d / "data"), "workflow": "bench-steps-sync"}
            ).result
        sync += res["samples_ms"]
    mine = percentile(sync, 50)
    ctx.row(
        "b",
        f"1-step run p50 with a plain `def` step body (thread pool; {len(sync)} samples)",
        fmt_ms(mine),
        ratio=f"{mine / percentile(ours, 50):.2f}x of an async body",
        load=load,
    )
    say(f"b) p50 with a sync body: {fmt_ms(mine)}")


def scenario_c(ctx: Ctx) -> None:
    s = ctx.sizes("c")
    load = loadavg()[0]
    with scratch(ctx.tmp_root, "c") as d:
        res = ctx.job("resume", {**s, "data": str(d / "data")}).result
    n = len(res["to_step_ms"])
    for key, label in (
        ("to_step_ms", "to the step after the wait running"),
        ("to_result_ms", "to `result()` returning"),
    ):
        p50, p99 = percentile(res[key], 50), percentile(res[key], 99)
        ctx.row(
            "c",
            f"send_event -> {label}, p50 ({n} samples, {res['parked_while_measuring']} parked)",
            fmt_ms(p50),
            target="p50 < 2 ms",
            met=p50 < 2,
            load=load,
        )
        ctx.report.detail("c", f"{label}: p50 {p50:.3f} ms, p99 {p99:.3f} ms")
        say(f"c) send_event {label}: p50 {fmt_ms(p50)}, p99 {fmt_ms(p99)} (target p50 < 2 ms)")
    send = res["send_call_ms"]
    ctx.report.detail(
        "c",
        f"the `send_event` call itself: p50 {percentile(send, 50):.3f} ms, p99 {percentile(send, 99):.3f} ms",
    )


def scenario_d(ctx: Ctx) -> None:
    s = ctx.sizes("d")
    load = loadavg()[0]
    rates: list[float] = []
    walls: list[float] = []
    for r in range(s["repeats"]):
        with scratch(ctx.tmp_root, "d") as d:
            res = ctx.job(
                "throughput", {"runs": s["runs"], "steps": s["steps"], "data": str(d / "data")}
            ).result
        rates.append(res["steps_per_s"])
        walls.append(res["wall_s"])
        ctx.report.detail(
            "d",
            f"repeat {r + 1}: {res['steps_per_s']:,.0f} steps/s, {res['wall_s']:.3f} s wall,"
            f" {res['cpu_s']:.3f} s CPU",
        )
    what = f"{s['runs']:,} concurrent runs x {s['steps']} steps (median of {s['repeats']})"
    ctx.row("d", f"{what}, steps/s", fmt_rate(median(rates), "steps/s"), load=load)
    ctx.row("d", f"{what}, wall time", fmt_s(median(walls)), load=load)
    say(f"d) {what}: {median(rates):,.0f} steps/s, {median(walls):.3f} s")


def scenario_e(ctx: Ctx) -> None:
    s = ctx.sizes("e")
    load = loadavg()[0]
    if ctx.profile_dir is not None:  # an extra run: profiling slows what it watches
        with scratch(ctx.tmp_root, "e-prof") as d:
            ctx.job(
                "long_run",
                {
                    **s,
                    "sizes": s["sizes"][-1:],
                    "replay": False,
                    "data": str(d / "data"),
                    "profile": ctx.profile("e_long_run"),
                },
            )
    with scratch(ctx.tmp_root, "e") as d:
        res = ctx.job("long_run", {**s, "data": str(d / "data")}).result
    sizes = res["sizes"]
    big = sizes[-1]
    n = big["n"]
    ctx.row(
        "e",
        f"one run of {n:,} steps, start -> result",
        fmt_s(big["total_s"]),
        target="< 2 s" if n >= 10_000 else "",
        met=(big["total_s"] < 2) if n >= 10_000 else None,
        load=load,
    )
    ctx.row(
        "e",
        f"`history()` of the {n:,}-step run",
        fmt_ms(big["history_s"] * 1000),
        target="< 100 ms" if n >= 10_000 else "",
        met=(big["history_s"] < 0.1) if n >= 10_000 else None,
        load=load,
    )
    names = " / ".join(f"{row['n']:,}" for row in sizes)

    def series(key: str, scale: float, unit: str) -> str:
        values = " / ".join(f"{row[key] * scale:.1f}" for row in sizes)
        per = " / ".join(f"{row[key] / row['n'] * 1e6:.1f}" for row in sizes)
        return f"{values} {unit} (per step: {per} us)"

    ctx.row(
        "e", f"`history()` at {names} steps (linear?)", series("history_s", 1000, "ms"), load=load
    )
    ctx.row("e", f"run total at {names} steps", series("total_s", 1, "s"), load=load)
    if all("replay_s" in row for row in sizes):
        ctx.row(
            "e", f"replay on resume at {names} steps", series("replay_s", 1000, "ms"), load=load
        )
    for row in sizes:
        ctx.report.detail("e", json.dumps(row))
    per_step_us = big["total_s"] / n * 1e6
    ctx.report.detail(
        "e",
        f"the {n:,}-step run took {per_step_us:.0f} us per step, against an fsync probe of"
        f" {ctx.report.fsync_us:.0f} us at the start: each step's record is durable before the next"
        " step's body runs, so the total is bounded below by n x (fsync + the loop -> fsync thread"
        " -> loop round trip)",
    )
    say(
        f"e) {n:,} steps: total {fmt_s(big['total_s'])} (target < 2 s), history {fmt_ms(big['history_s'] * 1000)} (target < 100 ms)"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _proc_rss(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def host_serve(
    ctx: Ctx, project: Path, data: Path, expect_runs: bool, timeout: float = 600
) -> tuple[float, int]:
    """Spawn ``python -m host serve`` and time it until ``/api/workflows/runs?limit=1`` answers."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api/workflows/runs?limit=1"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    say(f"    host serve on {data.name} (port {port})")
    with ctx.log_file.open("a") as log:
        log.write(f"=== host serve {data}\n")
        log.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "host",
                "serve",
                str(project),
                "--data",
                str(data),
                "--port",
                str(port),
            ],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=log,
        )
        try:
            while True:
                if proc.poll() is not None:
                    raise JobError(
                        f"host serve exited with {proc.returncode} before answering (see {ctx.log_file})"
                    )
                if time.perf_counter() - t0 > timeout:
                    raise JobError(f"host serve did not answer within {timeout} s")
                try:
                    with urllib.request.urlopen(url, timeout=5) as response:
                        body = json.loads(response.read())
                    if response.status == 200:
                        break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    time.sleep(0.005)
            elapsed = time.perf_counter() - t0
            if expect_runs and len(body) != 1:
                raise JobError(f"host answered {body!r}, expected one run")
            time.sleep(0.2)
            rss = _proc_rss(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    say(f"      answered after {elapsed:.3f}s")
    return elapsed, rss


def compact_cli(ctx: Ctx, data: Path) -> float:
    """``python -m host compact --data DIR``; its wall time."""
    say(f"    python -m host compact --data {data.name}")
    t0 = time.perf_counter()
    with ctx.log_file.open("a") as log:
        log.write(f"=== host compact {data}\n")
        log.flush()
        subprocess.run(
            [sys.executable, "-m", "host", "compact", "--data", str(data)],
            cwd=REPO,
            stdout=log,
            stderr=log,
            check=True,
            timeout=3600,
        )
    return time.perf_counter() - t0


def _restart_copies(
    ctx: Ctx, job: str, source: Path, repeats: int, extra: dict[str, Any]
) -> list[dict[str, Any]]:
    results = []
    for _ in range(repeats):
        with scratch(ctx.tmp_root, "copy") as d:
            copy = d / "data"
            shutil.copytree(source, copy)
            results.append(ctx.job(job, {"data": str(copy), **extra}).result)
    return results


NO_AUTO_COMPACT = {"options": {"compact_bytes": 1 << 62}}


def scenario_f(ctx: Ctx) -> None:
    s = ctx.sizes("f")
    n = s["n"]
    load = loadavg()[0]
    with scratch(ctx.tmp_root, "f") as root:
        data, raw, empty, project = (
            root / "data",
            root / "uncompacted",
            root / "empty",
            root / "project",
        )
        (project / "workflows").mkdir(parents=True)
        shutil.copy(REPO / "bench" / "flows.py", project / "workflows" / "flows.py")
        fill = ctx.job(
            "parked_fill", {"data": str(data), "n": n, "batch": s["batch"]}, timeout=7200
        ).result
        ctx.report.detail(
            "f",
            f"fill: {n:,} parked runs in {fill['fill_s']:.1f} s; files {json.dumps(fill['files'])}",
        )
        shutil.copytree(data, raw)
        compact_s = compact_cli(ctx, data)
        sizes = {p.name: p.stat().st_size for p in data.glob("*.jsonl")}
        ctx.report.detail(
            "f",
            f"`python -m host compact`: {compact_s:.2f} s (process wall time); files after: {json.dumps(sizes)}",
        )
        empty.mkdir()
        compacted = _restart_copies(ctx, "parked_restart", data, s["repeats"], {})
        uncompacted = _restart_copies(ctx, "parked_restart", raw, s["repeats"], NO_AUTO_COMPACT)
        baseline = _restart_copies(ctx, "parked_restart", empty, s["repeats"], {})
        if ctx.profile_dir is not None:
            _restart_copies(
                ctx, "parked_restart", data, 1, {"profile": ctx.profile("f_restart_compacted")}
            )
        traced = _restart_copies(ctx, "parked_restart", data, 1, {"tracemalloc": True})[0]
        for label, results in (
            ("compacted", compacted),
            ("uncompacted", uncompacted),
            ("empty", baseline),
        ):
            for r in results:
                if label != "empty" and r["counts"]["sleeping"] != n:
                    raise JobError(f"restart saw {r['counts']}, expected {n} sleeping runs")
                ctx.report.detail(
                    "f",
                    f"worker restart, {label}: open {r['open_s']:.3f} s + begin {r['begin_s']:.3f} s"
                    f" = {r['serve_s']:.3f} s wall ({r['serve_cpu_s']:.3f} s CPU); RSS {fmt_bytes(r['rss'])}",
                )
        serve_c = median([r["serve_s"] for r in compacted])
        serve_u = median([r["serve_s"] for r in uncompacted])
        ctx.row(
            "f",
            f"worker serves after restart, {n:,} parked runs, compacted (median of {s['repeats']})",
            fmt_s(serve_c),
            target="< 2 s",
            met=serve_c < 2,
            load=load,
        )
        ctx.row(
            "f",
            f"worker serves after restart, {n:,} parked runs, uncompacted",
            fmt_s(serve_u),
            target="< 2 s",
            met=serve_u < 2,
            load=load,
        )
        per_run = (median([r["rss"] for r in compacted]) - median([r["rss"] for r in baseline])) / n
        ctx.row(
            "f",
            "memory per parked run (RSS difference / N, compacted)",
            fmt_bytes(per_run),
            target="< 2 KB",
            met=per_run < 2048,
            load=load,
        )
        ctx.row(
            "f",
            "memory per parked run (tracemalloc of open + recovery / N)",
            fmt_bytes(traced["traced_bytes"] / n),
            load=load,
        )
        ctx.report.detail(
            "f",
            "tracemalloc top lines: "
            + "; ".join(
                f"{t['file']}:{t['line']} {fmt_bytes(t['bytes'])}" for t in traced["traced_top"][:8]
            ),
        )
        host: dict[str, list[tuple[float, int]]] = {"compacted": [], "uncompacted": [], "empty": []}
        for _ in range(s["host_repeats"]):
            for label, source in (("compacted", data), ("uncompacted", raw), ("empty", empty)):
                with scratch(ctx.tmp_root, "host") as d:
                    copy = d / "data"
                    shutil.copytree(source, copy)
                    host[label].append(host_serve(ctx, project, copy, expect_runs=label != "empty"))
        for label, values in host.items():
            ctx.report.detail(
                "f",
                f"host serve, {label}: "
                + ", ".join(f"{t:.3f} s (RSS {fmt_bytes(m)})" for t, m in values),
            )
        host_c = median([t for t, _ in host["compacted"]])
        host_u = median([t for t, _ in host["uncompacted"]])
        host_e = median([t for t, _ in host["empty"]])
        ctx.row(
            "f",
            f"`python -m host serve` answers `/api/workflows/runs?limit=1`, {n:,} parked, compacted"
            f" (spawn -> 200; empty folder: {fmt_s(host_e)})",
            fmt_s(host_c),
            target="< 2 s",
            met=host_c < 2,
            load=load,
        )
        ctx.row(
            "f",
            f"`python -m host serve` answers, {n:,} parked, uncompacted (default options)",
            fmt_s(host_u),
            load=load,
        )
        host_per_run = (
            median([m for _, m in host["compacted"]]) - median([m for _, m in host["empty"]])
        ) / n
        ctx.row(
            "f",
            "memory per parked run in the host (RSS difference / N)",
            fmt_bytes(host_per_run),
            load=load,
        )
    say(
        f"f) restart with {n:,} parked: worker {fmt_s(serve_c)} compacted / {fmt_s(serve_u)} uncompacted;"
        f" host {fmt_s(host_c)} (empty {fmt_s(host_e)}); {fmt_bytes(per_run)} per parked run (targets < 2 s, < 2 KB)"
    )


def scenario_g(ctx: Ctx) -> None:
    s = ctx.sizes("g")
    load = loadavg()[0]
    reps = s["repeats"]
    # KV get, both durabilities, on one folder of get_keys keys.
    with scratch(ctx.tmp_root, "g-get") as d:
        data = d / "data"
        ctx.job("kv_fill", {"data": str(data), "keys": s["get_keys"]})
        runs = [
            ctx.job(
                "kv_get",
                {
                    "data": str(data),
                    "keys": s["get_keys"],
                    "reads": s["reads"],
                    "durabilities": ["fsync", "flush"],
                },
            ).result
            for _ in range(reps)
        ]
        for durability in ("fsync", "flush"):
            rates = [r[durability]["ops_per_s"] for r in runs]
            ctx.report.detail(
                "g", f"KV get ({durability}): " + ", ".join(f"{r:,.0f}/s" for r in rates)
            )
            ctx.row(
                "g",
                f"KV get, in-process, {s['get_keys']:,} keys ({durability})",
                fmt_rate(median(rates), "ops/s"),
                target=">= 500k/s",
                met=median(rates) >= 500_000,
                load=load,
            )
            say(f"g) KV get ({durability}): {median(rates):,.0f} ops/s (target >= 500k)")
    for durability in ("fsync", "flush"):
        rates = []
        for _ in range(reps):
            with scratch(ctx.tmp_root, "g-put") as d:
                rates.append(
                    ctx.job(
                        "kv_put",
                        {
                            "data": str(d / "data"),
                            "writers": s["put_writers"],
                            "keys": s["put_keys"],
                            "durability": durability,
                        },
                    ).result["ops_per_s"]
                )
        ctx.report.detail("g", f"KV put ({durability}): " + ", ".join(f"{r:,.0f}/s" for r in rates))
        target = ">= 20k/s" if durability == "fsync" else ""
        ctx.row(
            "g",
            f"KV put, {s['put_writers']} concurrent writers ({durability})",
            fmt_rate(median(rates), "puts/s"),
            target=target,
            met=(median(rates) >= 20_000) if durability == "fsync" else None,
            load=load,
        )
        say(f"g) KV put {s['put_writers']} writers ({durability}): {median(rates):,.0f}/s")
    # Reopen a folder of reopen_keys live keys, uncompacted and compacted.
    keys = s["reopen_keys"]
    need_mib = keys * 6 // 1024  # ~4.4 KiB per key measured here (orjson capacity), plus a margin
    available = mem_available_mib()
    if need_mib > available * 0.6:
        scaled = max(1000, int(keys * available * 0.6 / need_mib))
        ctx.report.detail(
            "g", f"only {available} MiB available; reopen scaled from {keys:,} to {scaled:,} keys"
        )
        keys = scaled
    with scratch(ctx.tmp_root, "g-reopen") as d:
        data, raw = d / "data", d / "uncompacted"
        fill = ctx.job("kv_fill", {"data": str(data), "keys": keys}, timeout=7200).result
        ctx.report.detail(
            "g",
            f"reopen folder: {keys:,} keys filled in {fill['fill_s']:.1f} s, {fmt_bytes(fill['bytes'])}",
        )
        shutil.copytree(data, raw)
        compact_s = compact_cli(ctx, data)
        ctx.report.detail("g", f"`python -m host compact` of {keys:,} keys: {compact_s:.2f} s")
        if ctx.profile_dir is not None:
            profile = ctx.profile("g_kv_reopen_compacted")
            _restart_copies(ctx, "kv_reopen", data, 1, {"profile": profile})
        for label, source, extra in (
            ("compacted", data, {}),
            ("uncompacted", raw, NO_AUTO_COMPACT),
        ):
            results = _restart_copies(ctx, "kv_reopen", source, reps, extra)
            for r in results:
                if r["keys"] != keys:
                    raise JobError(f"reopen saw {r['keys']} keys, expected {keys}")
                ctx.report.detail(
                    "g",
                    f"reopen {label}: open {r['open_s']:.3f} s + begin {r['begin_s']:.3f} s"
                    f" ({r['serve_cpu_s']:.3f} s CPU); RSS {fmt_bytes(r['rss'])}",
                )
            t = median([r["serve_s"] for r in results])
            ctx.row(
                "g",
                f"reopen a folder with {keys:,} live KV keys, {label}",
                fmt_s(t),
                target="< 2 s",
                met=t < 2,
                load=load,
            )
            say(f"g) reopen {keys:,} keys {label}: {fmt_s(t)} (target < 2 s)")
    # DB find on docs documents.
    with scratch(ctx.tmp_root, "g-db") as d:
        res = ctx.job(
            "db_find",
            {
                "data": str(d / "data"),
                "docs": s["docs"],
                "indexed_lookups": s["indexed_lookups"],
                "scan_lookups": s["scan_lookups"],
                "durability": "fsync",
            },
        ).result
    ctx.report.detail(
        "g",
        f"DB: {s['docs']:,} inserted in {res['fill_s']:.2f} s (insert_many of 1000, flush), index built in {res['index_s']:.3f} s;"
        f" indexed p99 {res['email']['p99_ms']:.3f} ms, unindexed p99 {res['code']['p99_ms']:.1f} ms",
    )
    ctx.row(
        "g",
        f"DB equality find, {s['docs']:,} docs, indexed, p50",
        fmt_ms(res["email"]["p50_ms"]),
        target="< 1 ms",
        met=res["email"]["p50_ms"] < 1,
        load=load,
    )
    ctx.row(
        "g",
        f"DB equality find, {s['docs']:,} docs, no index, p50",
        fmt_ms(res["code"]["p50_ms"]),
        load=load,
    )
    say(
        f"g) DB find indexed p50 {fmt_ms(res['email']['p50_ms'])} (target < 1 ms), unindexed {fmt_ms(res['code']['p50_ms'])}"
    )
    for durability in ("fsync", "flush"):
        rates = []
        for _ in range(reps):
            with scratch(ctx.tmp_root, "g-ins") as d:
                rates.append(
                    ctx.job(
                        "db_insert",
                        {
                            "data": str(d / "data"),
                            "writers": s["insert_writers"],
                            "docs": s["insert_docs"],
                            "durability": durability,
                        },
                    ).result["ops_per_s"]
                )
        ctx.report.detail(
            "g", f"DB insert_one ({durability}): " + ", ".join(f"{r:,.0f}/s" for r in rates)
        )
        ctx.row(
            "g",
            f"DB insert_one, {s['insert_writers']} concurrent writers ({durability})",
            fmt_rate(median(rates), "docs/s"),
            load=load,
        )
        say(f"g) DB insert_one ({durability}): {median(rates):,.0f}/s")


def scenario_stall(ctx: Ctx) -> None:
    s = ctx.sizes("stall")
    load = loadavg()[0]
    keys = s["keys"]
    with scratch(ctx.tmp_root, "stall") as d:
        data = d / "data"
        fill = ctx.job("kv_fill", {"data": str(data), "keys": keys}, timeout=7200).result
        ctx.report.detail(
            "stall", f"{keys:,} keys filled in {fill['fill_s']:.1f} s, {fmt_bytes(fill['bytes'])}"
        )
        args = {"keys": keys, "interval_ms": s["interval_ms"], "quiet_s": s["quiet_s"]}
        results = _restart_copies(ctx, "compaction_stall", data, s["repeats"], args)
    for r in results:
        during, quiet = r["during"], r["quiet"]
        ctx.report.detail(
            "stall",
            f"compaction {r['compaction_s']:.2f} s: longest stall {during['stall_ms']:.1f} ms,"
            f" p50 {during['p50_ms']:.2f} ms, p99 {during['p99_ms']:.1f} ms, max {during['max_ms']:.1f} ms"
            f" ({during['requests']} requests); quiet: stall {quiet['stall_ms']:.1f} ms,"
            f" p99 {quiet['p99_ms']:.2f} ms ({quiet['requests']} requests)",
        )
    stall = median([r["during"]["stall_ms"] for r in results])
    p99 = median([r["during"]["p99_ms"] for r in results])
    quiet_p99 = median([r["quiet"]["p99_ms"] for r in results])
    seconds = median([r["compaction_s"] for r in results])
    ctx.row(
        "stall",
        f"longest event-loop stall while compacting {keys:,} live KV keys under load",
        fmt_ms(stall),
        target="< 50 ms",
        met=stall < 50,
        load=load,
    )
    ctx.row(
        "stall",
        f"request p99 during that compaction ({fmt_s(seconds)}; without compaction {fmt_ms(quiet_p99)})",
        fmt_ms(p99),
        target="< 20 ms",
        met=p99 < 20,
        load=load,
    )
    say(
        f"stall) longest stall {fmt_ms(stall)} (target < 50 ms), p99 {fmt_ms(p99)} (target < 20 ms)"
    )


def scenario_soak(ctx: Ctx) -> None:
    s = ctx.sizes("soak")
    load = loadavg()[0]
    args = {k: v for k, v in s.items()}
    with scratch(ctx.tmp_root, "soak") as d:
        progress = ctx.log_file.with_name(ctx.log_file.stem + ".soak.jsonl")
        progress.write_text("")
        say(f"    soak progress, a line a simulated day: {progress}")
        args["progress"] = str(progress)
        res = ctx.job("soak", {"data": str(d / "data"), **args}, timeout=7200).result
    samples = res["samples"]
    counters = res["counters"]
    ctx.report.detail(
        "soak",
        f"traffic: {counters['runs']:,} runs, {counters['send_event']:,} send_event,"
        f" {counters['ttl_puts']:,} TTL puts, {counters['messages']:,} queue messages",
    )
    for sample in samples:
        label = f" ({sample['label']})" if sample["label"] else ""
        ctx.report.detail(
            "soak",
            f"day {sample['day']}{label}: RSS {fmt_bytes(sample['rss'])} at {sample['seconds']:.0f} s;"
            f" runs held {sample['runs_held']:,}, signals {sample['signals']:,}, KV keys {sample['kv_keys']:,},"
            f" KV heap {sample['kv_heap']:,}, stream events {sample['stream_events']:,}, queue"
            f" pending {sample['queue_pending']:,}, dispatch cursors/attempts/acked/retry"
            f" {sample['dispatch_cursors']}/{sample['dispatch_attempts']}/{sample['dispatch_acked']}"
            f"/{sample['dispatch_retry_at']}, compactions {sample['compactions']}",
        )
    for grown in res["top_growth"]:
        ctx.report.detail(
            "soak",
            f"tracemalloc, end vs warm-up: {grown['where']}: {fmt_bytes(grown['size_diff'])}"
            f" in {grown['count_diff']:+,} blocks",
        )
    by_label = {sample["label"]: sample for sample in samples if sample["label"]}
    warm, end = by_label["after warm-up"], by_label["end"]
    growth = end["rss"] / warm["rss"] - 1
    ctx.row(
        "soak",
        f"RSS start / after warm-up / midway / end, {counters['runs']:,} runs over"
        f" {samples[-1]['day']} days",
        " / ".join(
            fmt_bytes(by_label[label]["rss"])
            for label in ("start", "after warm-up", "midway", "end")
            if label in by_label
        ),
        load=load,
    )
    ctx.row(
        "soak",
        "RSS growth from after warm-up to the end",
        f"{growth * 100:+.1f}%",
        target="within 20%",
        met=abs(growth) <= 0.20,
        load=load,
    )
    say(f"soak) RSS after warm-up {fmt_bytes(warm['rss'])}, end {fmt_bytes(end['rss'])}")


def scenario_p(ctx: Ctx) -> None:
    s = ctx.sizes("p")
    load = loadavg()[0]
    n, limit = s["n"], s["limit"]
    with scratch(ctx.tmp_root, "p") as d:
        data = str(d / "data")
        prep = ctx.job("runs_prepare", {"n": n, "data": data}).result
        ctx.report.detail("p", f"prepared: {json.dumps(prep)}")
        res = ctx.job("runs_page", {**s, **prep, "data": data}).result
    for name, page in res["pages"].items():
        ctx.row(
            "p",
            f"page of {limit} among {n:,} runs, {name} ({page['runs']} found), median",
            fmt_ms(page["median_ms"]),
            target="< 5 ms",
            met=page["median_ms"] < 5,
            load=load,
        )
        ctx.report.detail("p", f"{name}: {json.dumps(page)}")
    finish = s["finish"]
    with scratch(ctx.tmp_root, "p-mem") as d:
        data = str(d / "data")
        mem = ctx.job("runs_finish_rss", {"n": finish, "data": data}).result
        opened = ctx.job("runs_open_rss", {"data": data}).result
        ctx.job("runs_compact", {"data": data})
        compacted = ctx.job("runs_open_rss", {"data": data}).result
    with scratch(ctx.tmp_root, "p-empty") as d:
        empty = ctx.job("runs_open_rss", {"data": str(d / "data")}).result
    ctx.report.detail(
        "p", f"memory: {json.dumps(mem)}; reopened {json.dumps(opened)}; empty {json.dumps(empty)}"
    )
    mib = 1024 * 1024
    ctx.row(
        "p",
        f"memory per finished run, {finish:,} runs ended in one process"
        f" (RSS {mem['rss_before'] / mib:.1f} -> {mem['rss_after'] / mib:.1f} MiB)",
        fmt_bytes(mem["per_run"]),
        load=load,
    )
    ctx.row(
        "p",
        f"memory per finished run after a restart (RSS {empty['rss'] / mib:.1f} MiB empty,"
        f" {opened['rss'] / mib:.1f} MiB with {finish:,} finished runs)",
        fmt_bytes((opened["rss"] - empty["rss"]) / finish),
        load=load,
    )
    ctx.row(
        "p",
        f"memory per finished run after compaction and a restart"
        f" ({compacted['rss'] / mib:.1f} MiB with {finish:,} finished runs)",
        fmt_bytes((compacted["rss"] - empty["rss"]) / finish),
        load=load,
    )
    pages = ", ".join(f"{k}: {v['median_ms']:.2f} ms" for k, v in res["pages"].items())
    say(f"p) pages: {pages}")


RUNNERS: dict[str, Callable[[Ctx], None]] = {
    "a": scenario_a,
    "b": scenario_b,
    "c": scenario_c,
    "d": scenario_d,
    "e": scenario_e,
    "f": scenario_f,
    "g": scenario_g,
    "stall": scenario_stall,
    "soak": scenario_soak,
    "p": scenario_p,
}


# ---------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes of every scenario, no peer (CI)"
    )
    parser.add_argument(
        "--only",
        help=f"comma-separated scenarios to run (default: all of {','.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--peer",
        dest="peer",
        action="store_true",
        default=None,
        help="run DBOS side by side (default, except with --smoke)",
    )
    parser.add_argument(
        "--no-peer",
        dest="peer",
        action="store_false",
        help="do not run DBOS; compare with its reference figures",
    )
    parser.add_argument(
        "--out",
        default=str(REPO / "bench" / "RESULTS.md"),
        help="where to write the results (default: bench/RESULTS.md)",
    )
    parser.add_argument(
        "--tmp", help="folder for the scenarios' data folders (must be on a disk, not tmpfs)"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="also profile a, b, e, f and g's reopen with pyinstrument into DIR (extra runs)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    chosen = args.only or ",".join(SCENARIOS)
    only = [s.strip() for s in chosen.replace(" ", "").split(",") if s.strip()]
    if len(only) == 1 and only[0] not in SCENARIOS:
        only = list(only[0])  # --only abc
    unknown = [s for s in only if s not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    peer = (not args.smoke) if args.peer is None else args.peer
    tmp_root = pick_tmp_root(args.tmp)
    out = Path(args.out).absolute()
    machine = Machine.probe(tmp_root)
    started = now_iso()
    fsync_us = fsync_probe(tmp_root, 50 if args.smoke else 200)
    argv_text = " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])])
    report = Report(
        machine=machine,
        started=started,
        command=argv_text,
        smoke=args.smoke,
        fsync_us=fsync_us,
        code=code_revision(),
        load_start=loadavg(),
    )
    log_file = out.with_name(out.stem + ".log")
    log_file.write_text("")
    ctx = Ctx(
        report,
        tmp_root,
        args.smoke,
        peer,
        Path(args.profile).absolute() if args.profile else None,
        log_file,
    )
    report.definitions = {k: v for k, v in DEFINITIONS.items() if k in only}
    say(
        f"bench: {machine.short()}; temp root {tmp_root} ({machine.disk}); fsync {fsync_us:.0f} us;"
        f" load {report.load_start[0]:.2f}; child logs in {log_file}"
    )
    if peer and any(s in only for s in "ab"):
        try:
            info = run_job("dbos_probe", {}, log_file=log_file).result
            report.peer_note = (
                f"DBOS Transact {info['dbos_version']} (pip `dbos`, extra `bench`), SQLite system database in a"
                " fresh folder per round on the same disk, each round a fresh process. DBOS's own SQLite"
                " settings: it sets `BEGIN IMMEDIATE` and a busy timeout and no journal or synchronous"
                " pragma, so SQLite's defaults hold (rollback journal `delete`, as queried after each"
                " round, and `synchronous=FULL`: every commit is fsync'd). Same workflow shape:"
                " `@DBOS.workflow() async def` looping over an `@DBOS.step() async def` that returns"
                " its argument; see `bench/peer_dbos.py`."
            )
        except (JobError, subprocess.TimeoutExpired) as exc:
            ctx.peer_error = str(exc)
            report.peer_note = (
                "DBOS could not be run here, so a) and b) compare with the reference figures from issue 5"
                f" (DBOS 3.4: {REFERENCE_STEPS_PER_S:.0f} steps/s, {REFERENCE_P50_MS} ms p50), **not measured in this"
                f" run**. The error:\n\n```\n{exc}\n```"
            )
            say(
                f"bench: DBOS unavailable ({str(exc).splitlines()[0]}); using the reference figures"
            )
    elif any(s in only for s in "ab"):
        report.peer_note = (
            "The peer was not run (`--no-peer` or `--smoke`): a) and b) compare with the reference figures"
            f" from issue 5 (DBOS 3.4: {REFERENCE_STEPS_PER_S:.0f} steps/s, {REFERENCE_P50_MS} ms p50), **not measured in this run**."
        )
    failed = False
    for scenario in only:
        say(f"== {SCENARIO_TITLES[scenario]} (load {loadavg()[0]:.2f})")
        t0 = time.perf_counter()
        try:
            RUNNERS[scenario](ctx)
        except Exception as exc:
            failed = True
            detail = str(exc) if isinstance(exc, JobError) else traceback.format_exc()
            report.errors.append(f"{SCENARIO_TITLES[scenario]}:\n{detail}")
            ctx.row(scenario, "FAILED", "error (see Errors below)")
            say(f"   FAILED: {detail}")
        say(f"   ({time.perf_counter() - t0:.1f} s)")
        report.load_end = loadavg()
        report.finished = now_iso()
        report.write(out)  # after each scenario, so a long run leaves what it has
    say(f"bench: wrote {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
