"""Several real hosts on one PostgreSQL database (issue 14): every call works on any host.

Two ``serve`` processes with ``--store postgresql://…`` on a fresh database: the first is the
worker, the second its standby, serving the API as a client of the same database. What one host
writes (a run, a KV entry, a user, a document) reads back at once through the other; a unique
``_id`` holds across hosts (two concurrent inserts: one wins, the other is a 409); an event sent
through the standby resumes a run parked on the worker, woken by NOTIFY (the worker's poll is
set to an hour here, so polling cannot be what wakes it). The standby's takeover after a SIGKILL
runs in ``test_standby.py``, which runs on this store too.

Timeouts are guards against a broken feature, not timings (``python -m bench.peers`` and
``python -m bench.failover`` measure).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.hostproc import HostProcess
from tests.support.ledger import ledger_bytes
from tests.support.postgres import PostgresDatabase
from tests.support.standby_project import EVENT_TYPE, write_standby_project
from tests.support.waiting import wait_until

AUTH = "/api/platform/auth"


@pytest.fixture
def hosts(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> Iterator[tuple[HostProcess, HostProcess]]:
    project = write_standby_project(tmp_path)
    # The worker's catch-up poll is an hour: only NOTIFY can wake it within the test.
    slow_poll = {"PLATFORM_POLL_INTERVAL": "3600"}
    worker = HostProcess(project, None, tmp_path / "logs-a", store=postgres_db.url, env=slow_poll)
    standby = HostProcess(project, None, tmp_path / "logs-b", store=postgres_db.url)
    try:
        worker.launch()
        standby.launch()
        standby.wait_for_log("standby: the worker on")
        yield worker, standby
    finally:
        for host in (standby, worker):
            if host.proc is not None and host.proc.poll() is None:
                host.stop()


def test_a_run_started_on_the_standby_reads_the_same_on_both(
    hosts: tuple[HostProcess, HostProcess], tmp_path: Path
) -> None:
    worker, standby = hosts
    run_id = standby.start_run("quick", {})
    done = worker.wait_status(run_id, "completed", timeout=30)
    assert standby.wait_status(run_id, "completed", timeout=30) == done
    assert [s["name"] for s in standby.history(run_id)] == ["q"]
    # The worker ran its body (each body appends who ran it to effects.jsonl), once.
    effects = [orjson.loads(line) for line in (tmp_path / "effects.jsonl").read_bytes().split()]
    assert worker.proc is not None
    assert [(e["run"], e["pid"]) for e in effects] == [(run_id, worker.proc.pid)]


def test_kv_users_and_documents_are_shared(hosts: tuple[HostProcess, HostProcess]) -> None:
    worker, standby = hosts
    assert worker.http.put("/api/kv/shared/k", json={"v": 1}).status_code == 200
    assert standby.http.get("/api/kv/shared/k").json() == {"v": 1}

    # A token signed by one host is valid on the other (one signing key per store).
    user = standby.http.post(
        f"{AUTH}/register", json={"email": "c@example.com", "password": "pw-long-enough"}
    )
    assert user.status_code == 200, user.text
    session = standby.http.post(
        f"{AUTH}/login", json={"email": "c@example.com", "password": "pw-long-enough"}
    )
    token = session.json()["access_token"]
    checked = worker.http.post(f"{AUTH}/validate", json={"token": token})
    assert checked.status_code == 200, checked.text
    assert checked.json()["id"] == user.json()["id"]

    made = worker.http.put("/api/db/notes", json={"_id": "n1", "text": "hello"})
    assert made.status_code in (200, 201), made.text
    found = standby.http.post("/api/db/notes/findOne", json={"_id": "n1"})
    assert found.json()["text"] == "hello"


def _kv_rows(url: str, sql: str) -> list[Any]:
    import asyncpg

    async def fetch() -> list[Any]:
        conn = await asyncpg.connect(url)
        try:
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    return asyncio.run(fetch())


def test_a_key_put_on_one_host_is_read_listed_and_expired_through_the_other(
    hosts: tuple[HostProcess, HostProcess], postgres_db: PostgresDatabase
) -> None:
    worker, standby = hosts
    put = standby.http.put("/api/kv/cache/short", json={"v": 1}, headers={"X-TTL": "1"})
    assert put.status_code == 200, put.text
    assert standby.http.put("/api/kv/cache/long", json=[1, "x"]).status_code == 200
    assert worker.http.get("/api/kv/cache/long").json() == [1, "x"]
    listed = worker.http.post("/api/kv/cache", json={}).json()
    assert [k["name"] for k in listed["result"]] == ["long", "short"]
    # The worker (the one sweeper) learned the expiration from the standby's event (NOTIFY:
    # its poll is an hour here) and announces it once; the row goes in that event's commit.
    wait_until(
        lambda: (
            _kv_rows(postgres_db.url, "SELECT 1 FROM platform.kv_entries WHERE key = 'short'") == []
        ),
        timeout=30,
        what="the expired key's row to go",
    )
    for host in (worker, standby):
        assert host.http.get("/api/kv/cache/short").status_code == 404
        assert [k["name"] for k in host.http.post("/api/kv/cache", json={}).json()["result"]] == [
            "long"
        ]
    expired = _kv_rows(
        postgres_db.url,
        "SELECT line FROM platform.log_lines WHERE position('\"kv.expired\"'::bytea IN line) > 0",
    )
    assert [orjson.loads(row["line"])["k"] for row in expired] == ["short"]


def test_failed_logins_count_across_hosts(hosts: tuple[HostProcess, HostProcess]) -> None:
    # Five failures in the window lock an email out for a while; a guesser spreading attempts
    # over the hosts behind a load balancer used to get five per host.
    worker, standby = hosts
    email, password = "guessed@example.com", "pw-long-enough"
    made = worker.http.post(f"{AUTH}/register", json={"email": email, "password": password})
    assert made.status_code == 200, made.text
    for n in range(5):
        host = (worker, standby)[n % 2]
        wrong = host.http.post(f"{AUTH}/login", json={"email": email, "password": f"no-{n}"})
        assert wrong.status_code == 401, wrong.text
    for host in (standby, worker):
        locked = host.http.post(f"{AUTH}/login", json={"email": email, "password": password})
        assert locked.status_code == 429, locked.text
        assert int(locked.headers["Retry-After"]) > 0


def _race(
    hosts: tuple[HostProcess, HostProcess], path: str, doc: dict[str, object]
) -> list[httpx.Response]:
    """``PUT path doc`` through both hosts at the same instant (a barrier), each copy marked
    with its host's port under ``by``; both answers."""
    answers: list[httpx.Response] = []
    go = threading.Barrier(len(hosts))

    def one(host: HostProcess) -> None:
        with host.client() as http:
            go.wait()
            answers.append(http.put(path, json={**doc, "by": host.port}))

    threads = [threading.Thread(target=one, args=(host,)) for host in hosts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


def test_a_unique_id_holds_across_hosts(hosts: tuple[HostProcess, HostProcess]) -> None:
    """The same ``_id`` inserted through both hosts at once, many times: each time exactly one
    insert wins and the other is a 409 (the prepare runs under the log's lock, caught up)."""
    worker = hosts[0]
    for round_ in range(10):
        doc_id = f"d{round_}"
        answers = _race(hosts, "/api/db/uniq", {"_id": doc_id})
        codes = sorted(answer.status_code for answer in answers)
        assert codes in ([200, 409], [201, 409]), [a.text for a in answers]
    listed = worker.http.post("/api/db/uniq", json={})
    assert sorted(doc["_id"] for doc in listed.json()) == [f"d{i}" for i in range(10)]


def test_a_unique_index_and_queries_hold_across_hosts(
    hosts: tuple[HostProcess, HostProcess],
) -> None:
    """A unique secondary index made on one host holds for inserts racing through both, and
    a filtered, sorted find on either host (run in PostgreSQL) sees the other's inserts."""
    worker, standby = hosts
    made = worker.http.post(
        "/api/db/people/indexes", json={"keys": {"email": 1}, "unique": True, "name": "by_email"}
    )
    assert made.status_code in (200, 201), made.text
    for round_ in range(6):
        answers = _race(hosts, "/api/db/people", {"email": f"p{round_}@example.com", "n": round_})
        codes = sorted(answer.status_code for answer in answers)
        assert codes in ([200, 409], [201, 409]), [a.text for a in answers]
    query = {"filter": {"n": {"$gte": 2}}, "options": {"sort": {"n": -1}, "limit": 3}}
    for host in (worker, standby):
        found = host.http.post("/api/db/people", json=query)
        assert found.status_code == 200, found.text
        assert [doc["n"] for doc in found.json()] == [5, 4, 3]
    # An insert through one host is in the other's very next find.
    assert standby.http.put("/api/db/people", json={"email": "z@example.com", "n": 9}).is_success
    top = worker.http.post("/api/db/people", json=query).json()
    assert [doc["n"] for doc in top] == [9, 5, 4]


def test_an_event_sent_through_the_standby_resumes_a_run_parked_on_the_worker(
    hosts: tuple[HostProcess, HostProcess],
) -> None:
    worker, standby = hosts
    run_id = worker.start_run("waiter", {"key": "k1"})
    worker.wait_status(run_id, "waiting_event", "waiting", timeout=30)
    sent = standby.http.post(
        "/api/workflows/signal", json={"eventType": EVENT_TYPE, "payload": {"key": "k1"}}
    )
    assert sent.status_code == 200, sent.text
    done = standby.wait_status(run_id, "completed", timeout=30)
    assert done["output"]["event"] == {"key": "k1"}
    wait_until(lambda: worker.run(run_id)["status"] == "completed", 30, "the worker to agree")


_CRON_PROJECT = """
from platform_shim.workflows import define_workflow


@define_workflow({"id": "beat", "trigger": {"kind": "schedule", "cron": "* * * * * *"}})
async def beat(input, step, ctx):
    return await step.run("tick", lambda: ctx.run_id)
"""


def test_a_cron_tick_starts_one_run_across_hosts_and_a_takeover(
    tmp_path: Path, postgres_db: PostgresDatabase
) -> None:
    """A schedule firing every second on two hosts, then on the standby after the worker's
    SIGKILL: every tick's run is created once and completes once, whoever fired it."""
    project = tmp_path / "cron"
    (project / "workflows").mkdir(parents=True)
    (project / "workflows" / "beat.py").write_text(_CRON_PROJECT)
    worker = HostProcess(project, None, tmp_path / "logs-a", store=postgres_db.url)
    standby = HostProcess(project, None, tmp_path / "logs-b", store=postgres_db.url)
    try:
        worker.launch()
        standby.launch()
        standby.wait_for_log("standby: the worker on")
        time.sleep(3)
        worker.kill()
        standby.wait_for_log("took over as the worker", timeout=30)
        time.sleep(3)
        standby.stop()
    finally:
        for host in (standby, worker):
            if host.proc is not None and host.proc.poll() is None:
                host.kill()
    created: Counter[str] = Counter()
    completed: Counter[str] = Counter()
    for line in ledger_bytes(postgres_db.url).splitlines():
        record = orjson.loads(line)
        if record.get("rec") == "run" and record.get("workflowId") == "beat":
            created[record["runId"]] += 1
        if record.get("rec") == "status" and record.get("status") == "completed":
            completed[record["runId"]] += 1
    assert len(created) >= 4, created  # about one a second, on both sides of the takeover
    assert max(created.values()) == 1, created.most_common(3)
    assert set(completed) >= set(created) and max(completed.values()) == 1, completed


def test_updates_racing_through_both_hosts_lose_nothing(
    hosts: tuple[HostProcess, HostProcess],
) -> None:
    """Both hosts ``$inc`` one document many times at once: each host plans from the row it
    read, the database refuses a plan whose row changed meanwhile (``docrules.py``) and the
    host plans again, so the total is every increment (no lost update)."""
    worker = hosts[0]
    assert worker.http.put("/api/db/counters", json={"_id": "c", "n": 0}).is_success
    per_host, writers = 12, 3
    go = threading.Barrier(len(hosts) * writers)
    failures: list[str] = []

    def bump(host: HostProcess) -> None:
        with host.client() as http:
            go.wait()
            for _ in range(per_host):
                answer = http.post(
                    "/api/db/counters/update",
                    json={"filter": {"_id": "c"}, "update": {"$inc": {"n": 1}}},
                )
                if answer.status_code != 200 or answer.json()["modified"] != 1:
                    failures.append(answer.text)

    threads = [
        threading.Thread(target=bump, args=(host,)) for host in hosts for _ in range(writers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    for host in hosts:
        found = host.http.post("/api/db/counters/findOne", json={"_id": "c"})
        assert found.json()["n"] == per_host * writers * len(hosts), found.text
