"""The chaos suite: a real host process SIGKILLed at random instants under a mixed load.

``python -m host serve`` runs the project of ``tests/support/chaos_project.py`` (every step kind,
waits fed by events, invokes, whole-run retries, KV and DB handlers starting workflows under
derived run ids, a cron every second). ``tests/support/chaos_driver.py`` drives it over HTTP and
through the Python client the whole time, logging an operation only once it was acknowledged.
Each cycle lets the host run for 2-5 s (some cycles only 0.05-1 s after the spawn, so that
start-up and recovery themselves are cut) and SIGKILLs it; the next host must answer within
seconds (the dead one's locks never block it). After the last cycle the driver stops, a host
starts without the cron (``CHAOS_DRAIN=1``), the events still owed are sent, every run ends, and
the host stops gracefully. Then, from the files:

(a) every run is terminal (and completed: every failure here is retried);
(b) each completed ``step.run`` record holds the token of the LAST body that ran for that step
    (``effects.jsonl``), and is recorded once: no body ran again after its result was recorded;
(c) each completed run returned exactly the recorded results of its steps (what it saw);
(d) every acknowledged KV put and DB insert is present with its value (a plain key holds its
    last acknowledged value or a later attempt's), every acknowledged start exists, and every
    run whose event was acknowledged took it;
(e) every handler-eligible change in ``events.jsonl`` was handled (its id in ``handled.jsonl``)
    and started exactly one ``bridge`` run under its derived id;
(f) no cron tick fired twice: ``ticker.cron<ms>`` ids are unique, each created once, each
    with its own ``scheduledAt``; no run at all was created twice.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from platform_shim.platform import open_client
from tests.support.chaos_project import EVENT_TYPE, write_chaos_project
from tests.support.hostproc import ROOT, HostProcess, host_env

MIN_CYCLES = int(os.environ.get("CHAOS_CYCLES", "20"))
RESTART_LIMIT_S = 15.0  # the next host answers within this (typically ~1 s)
DRAIN_TIMEOUT_S = 120.0
NON_TERMINAL = ("queued", "running", "sleeping", "waiting_event")


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Whole lines of ``path`` and how many were torn or corrupt."""
    if not path.exists():
        return [], 0
    records, bad = [], 0
    for line in path.read_bytes().split(b"\n"):
        if not line:
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad += 1
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            bad += 1
    return records, bad


def spawn_driver(url: str, data: Path, acks: Path, seed: str, root: Path) -> subprocess.Popen[str]:
    with (root / "driver.err").open("ab") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-u",
                str(ROOT / "tests" / "support" / "chaos_driver.py"),
                *(url, str(data), str(acks), seed),
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=host_env(),
        )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready", (root / "driver.err").read_text()
    return proc


def drain(runner: HostProcess) -> int:
    """Send the events runs still wait for until every run is terminal; returns events sent."""
    sent: set[str] = set()
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    quiet = 0
    live: list[dict[str, Any]] = []
    with httpx.Client(base_url=runner.url, timeout=10.0) as http:
        while quiet < 2:
            if time.monotonic() > deadline:
                raise AssertionError(f"runs still not terminal after {DRAIN_TIMEOUT_S}s: {live}")
            live = []
            for status in NON_TERMINAL:
                response = http.get(
                    "/api/workflows/runs", params={"status": status, "limit": 100000}
                )
                assert response.status_code == 200, response.text
                live += response.json()
            for run in live:
                key = (run.get("input") or {}).get("key")
                waiting = run["status"] == "waiting_event" and run["workflowId"] == "mixed"
                if waiting and key not in sent:
                    body = {"eventType": EVENT_TYPE, "payload": {"key": key}}
                    assert http.post("/api/workflows/signal", json=body).status_code == 200
                    sent.add(key)
            quiet = quiet + 1 if not live else 0
            time.sleep(0.3)
    return len(sent)


@pytest.mark.slow
def test_sigkill_chaos(tmp_path: Path, chaos_seconds: float | None) -> None:
    seed = os.environ.get("CHAOS_SEED", str(random.randrange(1 << 30)))
    rng = random.Random(seed)
    root = tmp_path
    project = write_chaos_project(root)
    data = root / "data"
    acks_path = root / "acks.jsonl"
    runner = HostProcess(project, data, root / "logs")
    began = time.monotonic()
    restarts: list[float] = []
    early_kills = 0
    cycles = 0

    runner.start()
    restarts.append(runner.wait_ready())
    driver = spawn_driver(runner.url, data, acks_path, seed, root)
    try:
        while cycles < MIN_CYCLES or (
            chaos_seconds is not None and time.monotonic() - began < chaos_seconds
        ):
            if rng.random() < 0.15:
                # Cut the next start-up short: killed while loading, recovering or just up.
                runner.kill()
                runner.start()
                time.sleep(rng.uniform(0.05, 1.0))
                early_kills += 1
            else:
                time.sleep(rng.uniform(2.0, 5.0))
                assert runner.proc is not None
                assert runner.proc.poll() is None, runner.log()[-6000:]
            runner.kill()
            cycles += 1
            runner.start()
            restarts.append(runner.wait_ready(timeout=RESTART_LIMIT_S * 2))
        driver.send_signal(signal.SIGTERM)
        out, _ = driver.communicate(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.communicate()
        runner.kill()
    load = orjson.loads(out.strip().splitlines()[-1])
    driver_errors = (root / "driver.err").read_text()

    # The final drain: no cron, no kills; the owed events are sent; every run ends.
    runner.start(CHAOS_DRAIN="1")
    runner.wait_ready()
    drained_events = drain(runner)
    assert runner.stop() == 0, runner.log()[-6000:]
    elapsed = time.monotonic() - began

    figures = asyncio.run(check_invariants(root, data, acks_path))
    figures.update(
        seed=seed,
        cycles=cycles,
        early_kills=early_kills,
        slowest_restart_s=round(max(restarts), 2),
        mean_restart_s=round(sum(restarts) / len(restarts), 2),
        requests=load.get("sent", 0),
        cut_off=load.get("cut", 0),
        http_5xx=load.get("5xx", 0),
        py_client_ops=load.get("py ops", 0),
        drain_events=drained_events,
        seconds=round(elapsed, 1),
    )
    print("\nCHAOS " + orjson.dumps(figures).decode())
    (root / "figures.json").write_bytes(orjson.dumps(figures))
    assert max(restarts) < RESTART_LIMIT_S, restarts
    assert load.get("5xx", 0) == 0, driver_errors[-4000:]
    assert load.get("py errors", 0) == 0, driver_errors[-4000:]
    assert figures["lost"] == 0


async def check_invariants(root: Path, data: Path, acks_path: Path) -> dict[str, Any]:
    acks, torn_acks = read_jsonl(acks_path)
    assert torn_acks == 0
    effects, torn_effects = read_jsonl(root / "effects.jsonl")
    handled, _ = read_jsonl(root / "handled.jsonl")
    ledger, torn_ledger = read_jsonl(data / "runs.jsonl")
    stream, torn_stream = read_jsonl(data / "events.jsonl")
    lost = 0

    platform = open_client(data)
    try:
        workflows = platform.workflows
        runs = {run.run_id: run for run in await workflows.list(limit=10**7)}
        histories = {run_id: await workflows.handle(run_id).history() for run_id in runs}

        # (a) every run terminal, and completed.
        not_done = {r: runs[r].status.value for r in runs if runs[r].status.value != "completed"}
        assert not not_done, {r: (s, runs[r].error) for r, s in list(not_done.items())[:10]}

        # (b) recorded result == the last body's token; recorded once; no orphan bodies.
        last_token: dict[tuple[str, str], str] = {}
        bodies: Counter[tuple[str, str]] = Counter()
        for effect in effects:
            key = (effect["run"], effect["step"])
            bodies[key] += 1
            last_token[key] = "FAILED" if effect.get("failed") else effect["token"]
        assert {run for run, _ in last_token} <= set(runs), "a body ran for an unknown run"
        recorded: Counter[tuple[str, str]] = Counter()
        created: Counter[str] = Counter()
        for record in ledger:
            if record["rec"] == "run":
                created[record["runId"]] += 1
            elif (
                record["rec"] == "step"
                and record["kind"] == "run"
                and record["status"] == "completed"
            ):
                recorded[(record["runId"], record["name"])] += 1
        twice = {key: n for key, n in recorded.items() if n > 1}
        assert not twice, f"steps recorded as completed more than once: {twice}"
        steps_checked = 0
        for run_id, history in histories.items():
            for step in history:
                if step.kind.value != "run":
                    continue
                assert step.status.value == "completed", (run_id, step)
                key = (run_id, step.name)
                assert step.output == last_token.get(key), (
                    f"{key}: recorded {step.output!r}, last body returned {last_token.get(key)!r}"
                )
                steps_checked += 1
        unrecorded = set(last_token) - {
            (r, s.name) for r, h in histories.items() for s in h if s.kind.value == "run"
        }
        assert not unrecorded, f"bodies ran for steps that were never recorded: {unrecorded}"

        # (c) each run returned exactly what its steps recorded.
        for run_id, run in runs.items():
            steps = {s.name: s for s in histories[run_id]}
            tokens = [s.output for s in histories[run_id] if s.kind.value == "run"]
            assert run.output["tokens"] == tokens, (run_id, run.output, tokens)
            if run.workflow_id == "mixed":
                child = runs[steps["kid"].child_run_id]
                assert run.output["kid"] == child.output, run_id
                assert run.output["event"] == steps["go"].output, run_id
            if run.workflow_id == "ticker":
                assert run.output["scheduledAt"] == run.input["scheduledAt"], run_id

        # (d) every acknowledged write is there.
        writes_checked = 0
        plain_tries: dict[str, list[Any]] = defaultdict(list)
        plain_acked: dict[str, Any] = {}
        event_acked: dict[str, int] = {}
        for ack in acks:
            op = ack["op"]
            if op == "kv-try":
                plain_tries[ack["key"]].append(ack["value"])
            elif op == "kv" and ack["ns"] == "plain":
                plain_acked[ack["key"]] = ack["value"]
                plain_tries[ack["key"]] = []  # only attempts after the last ack may have won
                writes_checked += 1
            elif op == "kv":
                value = await platform.kv.get(ack["ns"], ack["key"])
                lost += value != ack["value"]
                assert value == ack["value"], ("lost KV put", ack, value)
                writes_checked += 1
            elif op == "db":
                doc = await platform.database.find_one("items", {"_id": ack["doc"]["_id"]})
                assert doc is not None, ("lost DB insert", ack)
                assert {k: v for k, v in doc.items() if k != "id"} == ack["doc"], (ack, doc)
                writes_checked += 1
            elif op == "start":
                assert ack["runId"] in runs, ("lost start", ack)
                assert runs[ack["runId"]].input == ack["input"], ack
                writes_checked += 1
            elif op == "event":
                event_acked.setdefault(ack["key"], ack["at"])
                writes_checked += 1
        for key, value in plain_acked.items():
            final = await platform.kv.get("plain", key)
            assert final == value or final in plain_tries[key], ("lost KV overwrite", key, final)
        for run in runs.values():
            if run.workflow_id != "mixed":
                continue
            got = run.output["event"]
            key = run.input["key"]
            if got is None:
                wait = {s.name: s for s in histories[run.run_id]}["go"]
                # Only a wait that timed out before any event for it was acknowledged may be empty.
                assert key not in event_acked or event_acked[key] > wait.completed_at - 3000, run
            else:
                assert got == {"key": key}, run

        # (e) every handler-eligible change was handled and bridged once.
        handled_ids = {(h["src"], h["eventId"]) for h in handled}
        eligible = []
        for event in stream:
            if (
                event.get("t") == "kv.put"
                and event["ns"] == "chaos"
                and event["k"].startswith("k:")
            ):
                eligible.append(("kv", event["id"]))
            elif event.get("t") == "db.document.created" and event["ns"] == "items":
                eligible.append(("db", event["id"]))
        missing = [e for e in eligible if e not in handled_ids]
        assert not missing, f"{len(missing)} eligible changes never dispatched: {missing[:10]}"
        for src, event_id in eligible:
            run_id = f"bridge.{src}{event_id}"
            assert run_id in runs, f"no bridge run for {src} event {event_id}"
            assert runs[run_id].input["eventId"] == event_id
        bridges = [r for r in runs.values() if r.workflow_id == "bridge"]
        assert len(bridges) == len(eligible), (len(bridges), len(eligible))
        acked_changes = sum(1 for a in acks if a["op"] in ("db",) or a.get("ns") == "chaos")
        assert len(eligible) >= acked_changes

        # (f) no run created twice, no cron tick fired twice.
        again = {run_id: n for run_id, n in created.items() if n > 1}
        assert not again, f"runs created more than once: {again}"
        ticks = [r for r in runs.values() if r.workflow_id == "ticker"]
        scheduled = [r.input["scheduledAt"] for r in ticks]
        assert len(scheduled) == len(set(scheduled)), "a cron tick fired twice"
        for run in ticks:
            assert run.run_id == f"ticker.cron{run.input['scheduledAt']}", run.run_id
    finally:
        platform.close()

    return {
        "runs_checked": len(runs),
        "steps_checked": steps_checked,
        "bodies_run": len(effects),
        "bodies_run_again": sum(n - 1 for n in bodies.values()),
        "writes_checked": writes_checked,
        "eligible_changes": len(eligible),
        "handler_deliveries": len(handled),
        "cron_ticks": len(ticks),
        "torn_lines": {
            "runs.jsonl": torn_ledger,
            "events.jsonl": torn_stream,
            "effects.jsonl": torn_effects,
        },
        "lost": lost,
    }
