"""Scenarios a) to e) of ``python -m bench``: throughput and latency of steps (beside DBOS),
a durable KV put, step overhead with thousands of runs, and long runs' replay and history."""

from __future__ import annotations

import json
import math
from typing import Any

from bench.common import (
    loadavg,
    median,
    percentile,
    scratch,
)
from bench.harness import REFERENCE_P50_MS, REFERENCE_STEPS_PER_S, Ctx, fmt_ms, fmt_rate, fmt_s, say


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
