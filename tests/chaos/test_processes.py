"""Processes on one data folder: one worker, many clients, and dead lock holders.

- A second host on a folder a host already works on, told not to stand by (``--no-standby``), is
  refused: it exits non-zero, and its log names ``DataDirLocked`` and the first host's pid. The
  first host keeps serving. (By default ``serve`` stands by: ``tests/host/test_standby.py``.)
- Eight client processes (``tests/support/chaos_client.py``: KV puts and DB inserts that the
  project's handlers bridge to workflows, and workflow starts) write at once while a real host
  works on the folder; the host is SIGKILLed in the middle of their writes (it holds the worker
  lock and, at random, append locks) and one client is SIGKILLed too. The next host starts
  within seconds, the clients are never blocked, and nothing acknowledged is lost: every KV key
  and document is there, every started run completes, every KV/DB change is handled.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.chaos_project import write_chaos_project
from tests.support.hostproc import ROOT, HostProcess, host_env
from tests.support.reap import read_line

CLIENTS = 8
ROUNDS = 25
NEXT_HOST_LIMIT_S = 10.0


@pytest.mark.slow
def test_second_host_on_the_same_folder_is_refused(tmp_path: Path) -> None:
    project = write_chaos_project(tmp_path)
    first = HostProcess(project, tmp_path / "data", tmp_path / "logs")
    first.start(CHAOS_DRAIN="1")
    try:
        first.wait_ready()
        assert first.proc is not None
        second = HostProcess(project, tmp_path / "data", tmp_path / "logs2")
        proc = second.start("--no-standby", CHAOS_DRAIN="1")
        code = proc.wait(timeout=30)
        log = second.log()
        assert code != 0, log
        assert "DataDirLocked" in log, log
        assert f"process {first.proc.pid}" in log, log
        assert "Traceback" not in log, log
        with httpx.Client(base_url=first.url, timeout=5) as http:
            assert http.put("/api/kv/ns/still", json="up").status_code == 200
    finally:
        assert first.stop() == 0, first.log()


@pytest.mark.slow
def test_eight_clients_and_a_killed_host_lose_nothing(tmp_path: Path) -> None:
    rng = random.Random(os.environ.get("CHAOS_SEED", "eight-clients"))
    project = write_chaos_project(tmp_path)
    data = tmp_path / "data"
    runner = HostProcess(project, data, tmp_path / "logs")
    runner.start(CHAOS_DRAIN="1")
    runner.wait_ready()
    go = tmp_path / "go"
    clients = [
        subprocess.Popen(
            [
                sys.executable,
                "-u",
                str(ROOT / "tests" / "support" / "chaos_client.py"),
                *(str(data), f"c{n}", str(ROUNDS), str(go)),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=host_env(),
        )
        for n in range(CLIENTS)
    ]
    outputs: list[str] = []
    try:
        for client in clients:
            assert read_line(client) == "ready\n"
        go.touch()
        time.sleep(rng.uniform(0.2, 0.6))  # mid-load: every client is writing
        runner.kill()
        victim = clients[-1]
        victim.send_signal(signal.SIGKILL)
        began = time.monotonic()
        runner.start(CHAOS_DRAIN="1")
        took = runner.wait_ready(timeout=NEXT_HOST_LIMIT_S)
        assert time.monotonic() - began < NEXT_HOST_LIMIT_S
        for client in clients:
            out, err = client.communicate(timeout=60)
            if client is not victim:
                assert client.returncode == 0, err
                assert out.endswith("done\n"), (out[-300:], err)
            outputs.append(out)
    finally:
        for client in clients:
            if client.poll() is None:
                client.kill()
                client.communicate()
    kv = [line.split()[1] for out in outputs for line in out.split("\n")[:-1] if line[:3] == "kv "]
    db = [line.split()[1] for out in outputs for line in out.split("\n")[:-1] if line[:3] == "db "]
    starts = [
        line.split()[1] for out in outputs for line in out.split("\n")[:-1] if line[:6] == "start "
    ]
    assert len(kv) >= (CLIENTS - 1) * ROUNDS
    try:
        with httpx.Client(base_url=runner.url, timeout=10) as http:
            for key in kv:
                response = http.get(f"/api/kv/chaos/{key}")
                assert response.status_code == 200, ("lost KV put", key)
            for doc_id in db:
                response = http.post("/api/db/items/findOne", json={"_id": doc_id})
                assert response.status_code == 200, ("lost insert", doc_id)
            deadline = time.monotonic() + 60
            for run_id in starts:
                while True:
                    response = http.get(f"/api/workflows/runs/{run_id}")
                    assert response.status_code == 200, ("lost start", run_id)
                    if response.json()["status"] == "completed":
                        break
                    assert time.monotonic() < deadline, response.json()
                    time.sleep(0.05)

            def bridged() -> int:
                runs = http.get(
                    "/api/workflows/runs", params={"workflowId": "bridge", "limit": 100000}
                ).json()
                return sum(1 for r in runs if r["status"] == "completed")

            while bridged() < len(kv) + len(db):
                assert time.monotonic() < deadline, (bridged(), len(kv) + len(db))
                time.sleep(0.1)
        handled = (tmp_path / "handled.jsonl").read_bytes().count(b"\n")
        assert handled >= len(kv) + len(db)
    finally:
        assert runner.stop() == 0, runner.log()
    print(
        f"\nPROCESSES clients={CLIENTS} kv={len(kv)} db={len(db)} starts={len(starts)}"
        f" next_host_ready_s={took:.2f} lost=0"
    )
