"""A host on PostgreSQL outlives its database ending its sessions (a restart, a failover, an
administrator's ``pg_terminate_backend``): it keeps serving and is the worker again.

The worker holds the worker lock on a session of its own; when that session ends it must stop
writing at once (another host may be the worker by then). Before this, it also stayed that way:
every write answered 503 until the process was restarted. Now it steps down to a standby (a
client of the database, polling for the lock) and takes the lock again once nobody holds it, so
a single host recovers by itself and runs parked before the loss finish.

Timeouts are guards against a broken feature, not timings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.platform_shim.store.postgres.test_store import terminate_backends
from tests.support.hostproc import HostProcess
from tests.support.postgres import PostgresDatabase
from tests.support.standby_project import write_standby_project
from tests.support.waiting import wait_until


def _end_every_session(url: str) -> int:
    """What a restart of the server does to a host: every session of the database ends."""
    return asyncio.run(terminate_backends(url, "true"))


@pytest.fixture
def host(tmp_path: Path, postgres_db: PostgresDatabase) -> Iterator[HostProcess]:
    project = write_standby_project(tmp_path)
    running = HostProcess(project, None, tmp_path / "logs", store=postgres_db.url)
    try:
        running.launch()
        yield running
    finally:
        if running.proc is not None and running.proc.poll() is None:
            running.stop()


def test_a_lone_worker_whose_sessions_ended_is_the_worker_again(
    host: HostProcess, postgres_db: PostgresDatabase
) -> None:
    before = host.start_run("quick", {})
    host.wait_status(before, "completed", timeout=30)
    napping = host.start_run("napper", {"nap": "2s"})
    host.wait_status(napping, "sleeping", timeout=30)
    mark = len(host.log())

    assert _end_every_session(postgres_db.url) >= 2  # the lock's session and the others
    host.wait_for_log("the worker lock", timeout=30, start=mark)

    def starts() -> str | None:
        response = host.http.post("/api/workflows/quick/start", json={})
        return response.json()["runId"] if response.status_code == 200 else None

    after = wait_until(starts, timeout=60, what="a start to be accepted again")
    assert host.wait_status(after, "completed", timeout=60)["status"] == "completed"
    # The run that slept through the loss wakes on the host that is the worker again.
    assert host.wait_status(napping, "completed", timeout=60)["status"] == "completed"
    host.wait_for_log("took over as the worker", timeout=5, start=mark)
    # Reads kept working throughout, through whichever platform served them.
    assert host.run(before)["status"] == "completed"
