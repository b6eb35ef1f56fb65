"""Scenarios stall, soak and p) of ``python -m bench``: the loop's stalls under compaction, a
month of traffic in fast time (memory), and run listings' pages over many finished runs."""

from __future__ import annotations

import json

from bench.common import (
    loadavg,
    median,
    scratch,
)
from bench.harness import Ctx, fmt_bytes, fmt_ms, fmt_s, say
from bench.table_restart import restart_copies


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
        results = restart_copies(ctx, "compaction_stall", data, s["repeats"], args)
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
