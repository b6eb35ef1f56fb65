"""Does the dashboard stay fast with 100,000 runs? ``python -m bench.dashboard_scale [--runs N]``.

Fills a fresh data folder with ``--runs`` runs written straight into ``runs.jsonl`` (in the
format of ``platform_shim/workflows/ledger.py``: 97 % completed, 2 % failed, 0.5 % cancelled,
0.5 % parked in a one-day sleep), starts ``python -m host serve`` on it, and measures:

- the host's start-up time on that ledger and its memory;
- the latency of the endpoints the dashboard calls (median and p95 of ``--repeat`` requests):
  the first page of runs, a page deep in the cursor walk, pages filtered by a common and by a
  rare status, the counts (all, one workflow), one run in full, the HTML page itself, and
  searches (an exact id, an id prefix, text with hits, text with none, a time window);
- with Playwright and Chromium installed: the time from navigating to ``/_platform/`` until the
  runs table shows its rows, and the same for a run's page until its timeline shows.

Nothing here is a pass/fail test; it prints the figures (and ``--json`` writes them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson

from platform_shim.ids import new_id

REPO = Path(__file__).resolve().parent.parent

PROJECT = textwrap.dedent(
    """
    from platform_shim.workflows import define_workflow


    @define_workflow({"id": "pipeline"})
    async def pipeline(input, step, ctx):
        await step.run("prepare", lambda: input)
        await step.sleep("nap", "1d")
        return await step.run("publish", lambda: {"ok": True})


    @define_workflow({"id": "approval"})
    async def approval(input, step, ctx):
        return await step.run("decide", lambda: True)
    """
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def fill(data: Path, count: int) -> dict[str, Any]:
    """Write ``count`` runs, oldest first, one ms apart and ending now; returns facts about them."""
    data.mkdir(parents=True, exist_ok=True)
    now = int(time.time() * 1000)
    first = now - count
    seq = 0
    ids: list[str] = []
    created: dict[str, int] = {}
    statuses: dict[str, int] = {}
    with (data / "runs.jsonl").open("wb", buffering=1 << 20) as out:
        for i in range(count):
            at = first + i
            run_id = new_id(at)
            ids.append(run_id)
            created[run_id] = at
            workflow_id = "pipeline" if i % 3 else "approval"
            slot = i % 200
            status = (
                "sleeping"
                if slot == 0
                else "cancelled"
                if slot == 1
                else "failed"
                if slot < 6
                else "completed"
            )
            if status == "sleeping":
                workflow_id = "pipeline"
            statuses[status] = statuses.get(status, 0) + 1
            run = {
                "rec": "run", "seq": seq + 1, "runId": run_id, "workflowId": workflow_id,
                "input": {"orderId": f"o-{i}", "amount": i % 977},
                "createdAt": at, "parentRunId": None, "parentStep": None, "deadline": None, "rerunOf": None,
            }  # fmt: skip
            step = {
                "rec": "step", "seq": seq + 2, "runId": run_id, "name": "prepare", "kind": "run",
                "status": "completed", "attempt": 1, "startedAt": at, "completedAt": at, "output": {"ok": 1},
            }  # fmt: skip
            lines = [run, step]
            seq += 2
            if status == "sleeping":
                seq += 1
                lines.append(
                    {"rec": "step", "seq": seq, "runId": run_id, "name": "nap", "kind": "sleep",
                     "status": "pending", "attempt": 1, "startedAt": at, "wakeAt": now + 86_400_000}
                )  # fmt: skip
            else:
                seq += 1
                end: dict[str, Any] = {
                    "rec": "status", "seq": seq, "runId": run_id, "status": status, "at": at, "attempt": 1,
                    "completedAt": at,
                }  # fmt: skip
                if status == "completed":
                    end["output"] = {"ok": True}
                elif status == "failed":
                    end["error"] = {
                        "type": "RuntimeError",
                        "message": f"declined {i}",
                        "step": "prepare",
                    }
                else:
                    end["error"] = {"type": "WorkflowCancelled", "message": "cancelled"}
                lines.append(end)
            out.write(b"".join(orjson.dumps(line) + b"\n" for line in lines))
    # The worker's relay of run statuses to the event stream is up to date, as on a live folder.
    (data / "dispatch.jsonl").write_bytes(orjson.dumps({"rec": "relay", "c": seq}) + b"\n")
    return {
        "ids": ids,
        "created": created,
        "statuses": statuses,
        "bytes": (data / "runs.jsonl").stat().st_size,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def host(root: Path, data: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], float]]:
    project = root / "project"
    (project / "workflows").mkdir(parents=True, exist_ok=True)
    (project / "workflows" / "flows.py").write_text(PROJECT)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLATFORM_")}
    log = (root / "host.log").open("wb")
    started = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "host",
            "serve",
            str(project),
            "--port",
            str(port),
            "--data",
            str(data),
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=2.0) as client:
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"the host exited:\n{(root / 'host.log').read_text()[-3000:]}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(url + "/_platform/api/overview").status_code == 200:
                        break
                time.sleep(0.02)
        yield url, proc, time.perf_counter() - started
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def timed(fn: Callable[[], Any], repeat: int) -> dict[str, float]:
    fn()  # warm up
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[max(0, int(len(samples) * 0.95) - 1)], 2),
        "max_ms": round(samples[-1], 2),
    }


def endpoint_latencies(url: str, facts: dict[str, Any], repeat: int) -> dict[str, dict[str, Any]]:
    ids = facts["ids"]
    middle = ids[len(ids) // 2]
    near_oldest = ids[60]
    out: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=url, timeout=30.0) as client:

        def get(path: str, **params: Any) -> Callable[[], Any]:
            def call() -> int:
                response = client.get(path, params=params)
                assert response.status_code == 200, (
                    path,
                    response.status_code,
                    response.text[:300],
                )
                return len(response.content)

            return call

        cases = {
            "GET /_platform/ (HTML)": get("/_platform/"),
            "GET /_platform/api/overview (counts)": get("/_platform/api/overview"),
            "GET /_platform/api/runs?limit=50 (first page)": get("/_platform/api/runs", limit=50),
            "… &before=<run #50,000> (mid-walk page)": get(
                "/_platform/api/runs", limit=50, before=middle
            ),
            "… &before=<a run near the oldest>": get(
                "/_platform/api/runs", limit=50, before=near_oldest
            ),
            "… ?status=failed (2 %)": get("/_platform/api/runs", limit=50, status="failed"),
            "… ?status=sleeping (0.5 %)": get("/_platform/api/runs", limit=50, status="sleeping"),
            "… ?status=queued (none: scans all)": get(
                "/_platform/api/runs", limit=50, status="queued"
            ),
            "… ?workflowId=approval": get("/_platform/api/runs", limit=50, workflowId="approval"),
            "… /api/overview?workflowId=approval (counts of one)": get(
                "/_platform/api/overview", workflowId="approval"
            ),
            "GET /_platform/api/runs/{id} (one run)": get(f"/_platform/api/runs/{middle}"),
            "search ?q=<exact run id>": get("/_platform/api/runs/search", q=near_oldest),
            "search ?q=<run id prefix> (scan cap)": get(
                "/_platform/api/runs/search", q=middle[:-4]
            ),
            "search ?q=o-99 (text; 50 hits near the top)": get(
                "/_platform/api/runs/search", q="o-99"
            ),
            "search ?q=<no match> (text; reads the 1,000-run cap)": get(
                "/_platform/api/runs/search", q="no-such-text"
            ),
            "search ?from=&to= (window mid-ledger: 1,000 read, cursor)": get(
                "/_platform/api/runs/search",
                **{"from": facts["created"][middle] - 500, "to": facts["created"][middle] + 500},
            ),
            "GET /api/workflows/runs?limit=50": get("/api/workflows/runs", limit=50),
        }
        for name, call in cases.items():
            figures: dict[str, Any] = timed(call, repeat)
            figures["bytes"] = call()
            out[name] = figures
    return out


_FIRST_SEEN = """
window.__firstSeen = null;
new MutationObserver((_, observer) => {
  if (document.querySelector(%s)) {
    window.__firstSeen = performance.now();
    observer.disconnect();
  }
}).observe(document, { childList: true, subtree: true });
"""


def browser_loads(url: str, facts: dict[str, Any], repeat: int) -> dict[str, Any]:
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        return {"skipped": "playwright is not installed (pip install -e '.[ui]')"}
    if not Path(CHROMIUM).exists():
        return {"skipped": f"no Chromium at {CHROMIUM} (apt-get install -y chromium)"}
    results: dict[str, Any] = {}
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        except Error as exc:
            return {"skipped": f"Chromium does not start: {exc}"}
        try:
            run_id = facts["ids"][len(facts["ids"]) // 2]
            for name, path, ready in (
                ("/_platform/ until the runs table shows its rows", "/_platform/", "#rows tr"),
                (
                    "/_platform/runs/{id} until its timeline shows",
                    f"/_platform/runs/{run_id}",
                    "li.step",
                ),
            ):
                walls, inside = [], []
                for _ in range(repeat + 1):
                    context = browser.new_context()
                    page = context.new_page()
                    # The page's own clock: from the start of navigation to the first element.
                    page.add_init_script(_FIRST_SEEN % json.dumps(ready))
                    start = time.perf_counter()
                    page.goto(url + path, wait_until="commit")
                    page.wait_for_selector(ready, timeout=30_000)
                    walls.append((time.perf_counter() - start) * 1000)
                    inside.append(float(page.evaluate("window.__firstSeen")))
                    rows = page.locator(ready).count()
                    context.close()
                walls, inside = sorted(walls[1:]), sorted(inside[1:])  # the first warms up
                results[name] = {
                    "median_ms": round(statistics.median(inside), 1),
                    "max_ms": round(inside[-1], 1),
                    "wall_median_ms": round(statistics.median(walls), 1),
                    "wall_max_ms": round(walls[-1], 1),
                    "elements": rows,
                }
        finally:
            browser.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument(
        "--repeat", type=int, default=30, help="requests per endpoint (default: 30)"
    )
    parser.add_argument("--loads", type=int, default=5, help="browser page loads (default: 5)")
    parser.add_argument(
        "--tmp", help="where to make the data folder (default: the system temp folder)"
    )
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="dashboard-scale-", dir=args.tmp))
    try:
        data = root / "data"
        started = time.perf_counter()
        facts = fill(data, args.runs)
        fill_s = time.perf_counter() - started
        print(
            f"wrote {args.runs:,} runs ({facts['bytes'] / 2**20:.1f} MiB of runs.jsonl) in {fill_s:.1f} s"
        )
        print(f"statuses: {facts['statuses']}")
        with host(root, data) as (url, proc, startup_s):
            rss = rss_mib(proc.pid)
            print(f"host answered after {startup_s:.2f} s; RSS {rss:.0f} MiB" if rss else "")
            overview = httpx.get(url + "/_platform/api/overview").json()
            assert overview["total"] == args.runs, overview
            endpoints = endpoint_latencies(url, facts, args.repeat)
            browser = browser_loads(url, facts, args.loads)
        report = {
            "runs": args.runs,
            "ledger_mib": round(facts["bytes"] / 2**20, 1),
            "host_startup_s": round(startup_s, 2),
            "host_rss_mib": round(rss, 1) if rss else None,
            "endpoints": endpoints,
            "browser": browser,
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
        }
        print()
        print(
            f"| endpoint ({args.runs:,} runs, {args.repeat} requests) | median ms | p95 ms | max ms | bytes |"
        )
        print("|---|---:|---:|---:|---:|")
        for name, figures in endpoints.items():
            print(
                f"| {name} | {figures['median_ms']} | {figures['p95_ms']} | {figures['max_ms']} | {figures['bytes']:,} |"
            )
        print()
        if "skipped" in browser:
            print(f"browser: skipped ({browser['skipped']})")
        else:
            print(
                f"| page load in Chromium ({args.loads} loads) | median ms | max ms | wall median | wall max |"
            )
            print("|---|---:|---:|---:|---:|")
            for name, f in browser.items():
                print(
                    f"| {name} | {f['median_ms']} | {f['max_ms']} | {f['wall_median_ms']} | {f['wall_max_ms']} |"
                )
            print("(ms from navigation start, by the page's clock; wall: as Playwright saw it)")
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        return 0
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
