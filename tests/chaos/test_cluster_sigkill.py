"""SIGKILL the worker of a three-host cluster on one PostgreSQL database, again and again.

Issue 14, item 2: a run is executed by one host at a time, step results are recorded exactly
once, and a killed host's runs (running, sleeping, waiting) are taken over by the others and
finish. Three real ``python -m host serve --store URL`` processes; each cycle starts runs
through the standbys, kills the worker at a random instant, starts a fresh standby in its place
and waits for one of the survivors to take over. At the end every run has completed, no step
is recorded as completed twice, every run returned the tokens its recorded steps hold (the
token of the last body that ran each step: ``effects.jsonl`` is the ground truth), and a body
that had its result recorded before a kill never ran again.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.hostproc import HostProcess, check_log
from tests.support.ledger import ledger_bytes
from tests.support.postgres import PostgresDatabase
from tests.support.standby_project import EVENT_TYPE, write_standby_project
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

CYCLES = 4
TAKEOVER_S = 30.0  # a guard for a loaded machine; bench/failover.py measures the real time


def _effects(root: Path) -> list[dict[str, Any]]:
    path = root / "effects.jsonl"
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def _role(host: HostProcess) -> str:
    response = host.http.get("/_platform/api/overview")
    assert response.status_code == 200, response.text
    role: str = response.json()["worker"]["role"]
    return role


def test_the_cluster_survives_repeated_sigkills_of_its_worker(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    rng = random.Random(14)
    project = write_standby_project(tmp_path)
    launched: list[HostProcess] = []

    def new_host() -> HostProcess:
        host = HostProcess(
            project, None, tmp_path / f"logs-{len(launched)}", store=postgres_db.url
        ).launch()
        launched.append(host)
        return host

    worker = new_host()
    standbys = [new_host(), new_host()]
    for host in standbys:
        host.wait_for_log("standby: the worker on")
    started: dict[str, str] = {}  # run id -> workflow
    waiting_keys: list[str] = []
    recorded_before: list[dict[str, Any]] = []
    try:
        for cycle in range(CYCLES):
            for n in range(3):
                through = rng.choice(standbys)
                kind = rng.choice(["napper", "busy", "waiter", "quick"])
                if kind == "napper":
                    args: Any = {"nap": rng.randint(200, 2500)}
                elif kind == "busy":
                    args = {"slow": rng.uniform(0.2, 2.0)}
                elif kind == "waiter":
                    key = f"c{cycle}-{n}"
                    waiting_keys.append(key)
                    args = {"key": key}
                else:
                    args = None
                started[through.start_run(kind, args)] = kind
            time.sleep(rng.uniform(0.05, 1.2))
            recorded_before = _effects(tmp_path)
            worker.kill()
            standbys.append(new_host())  # keeps three hosts; it waits as a standby
            wait_until(
                lambda: any("took over as the worker" in h.log() for h in standbys),
                TAKEOVER_S,
                f"a takeover after kill {cycle + 1}",
            )
            worker = next(h for h in standbys if "took over as the worker" in h.log())
            standbys.remove(worker)
            assert _role(worker) == "worker"
            for host in standbys:
                host.wait_for_log("standby: the worker on")
        for key in waiting_keys:
            sent = rng.choice([worker, *standbys]).http.post(
                "/api/workflows/signal", json={"eventType": EVENT_TYPE, "payload": {"key": key}}
            )
            assert sent.status_code == 200 and sent.json() == {"count": 1}, sent.text
        runs = {
            run_id: worker.wait_status(run_id, "completed", timeout=TAKEOVER_S)
            for run_id in started
        }
        histories = {run_id: rng.choice(standbys).history(run_id) for run_id in runs}
    finally:
        for host in launched:
            if host.proc is not None and host.proc.poll() is None and host is not worker:
                assert host.stop() == 0, host.log()[-4000:]
                check_log(host.log())
        worker.kill()

    effects = _effects(tmp_path)
    bodies = Counter((e["run"], e["step"]) for e in effects)
    last = {(e["run"], e["step"]): e["token"] for e in effects}
    outputs_of: dict[str, list[str]] = {}
    for run_id, history in histories.items():
        steps = [step for step in history if step["kind"] == "run"]
        assert steps and all(step["status"] == "completed" for step in steps), (run_id, steps)
        outputs_of[run_id] = [step["output"] for step in steps]
        assert outputs_of[run_id] == [last[(run_id, step["name"])] for step in steps], run_id
        assert runs[run_id]["output"]["tokens"] == outputs_of[run_id], runs[run_id]
    # A body whose token a run returned and which ran before the last kill ran exactly once.
    returned = {token for tokens in outputs_of.values() for token in tokens}
    for done in recorded_before:
        if done["token"] in returned:
            assert bodies[(done["run"], done["step"])] == 1, done
    recorded: Counter[tuple[str, str]] = Counter()
    for line in ledger_bytes(postgres_db.url).splitlines():
        record = orjson.loads(line)
        if record.get("rec") == "step" and record.get("status") == "completed":
            recorded[(record["runId"], record["name"])] += 1
    assert recorded and max(recorded.values()) == 1, recorded.most_common(3)
    assert len(started) == 3 * CYCLES
