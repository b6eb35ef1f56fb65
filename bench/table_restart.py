"""Scenarios f) and g) of ``python -m bench``: a restart over many parked runs (in process and
a real host), and the KV and document services at scale (reads, writes, a reopen)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench.common import (
    REPO,
    JobError,
    loadavg,
    median,
    scratch,
)
from bench.harness import Ctx, fmt_bytes, fmt_ms, fmt_rate, fmt_s, mem_available_mib, say


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


def restart_copies(
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
        compacted = restart_copies(ctx, "parked_restart", data, s["repeats"], {})
        uncompacted = restart_copies(ctx, "parked_restart", raw, s["repeats"], NO_AUTO_COMPACT)
        baseline = restart_copies(ctx, "parked_restart", empty, s["repeats"], {})
        if ctx.profile_dir is not None:
            restart_copies(
                ctx, "parked_restart", data, 1, {"profile": ctx.profile("f_restart_compacted")}
            )
        traced = restart_copies(ctx, "parked_restart", data, 1, {"tracemalloc": True})[0]
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
            restart_copies(ctx, "kv_reopen", data, 1, {"profile": profile})
        for label, source, extra in (
            ("compacted", data, {}),
            ("uncompacted", raw, NO_AUTO_COMPACT),
        ):
            results = restart_copies(ctx, "kv_reopen", source, reps, extra)
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
