"""What the PostgreSQL store adds to the contract: a worker lock that dies with its process or
its connection, commits that fail cleanly when the database drops us, and wake-ups by NOTIFY.

The contract itself (``tests/platform_shim/store/test_contract.py``) and the crash suite
(``test_crash.py``) run against this store too.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import subprocess
import sys
from collections.abc import Callable

import asyncpg
import orjson
import pytest

from platform_shim.errors import DataDirLocked, StoreError
from platform_shim.store import open_store
from platform_shim.store.postgres import log as pg_log
from platform_shim.store.postgres.store import PostgresStore
from tests.support.consumers import Recorder
from tests.support.postgres import PostgresDatabase
from tests.support.procs import env
from tests.support.waiting import wait_until


def record(n: int, sink: list[int] | None = None) -> Callable[[], tuple[bytes, Callable[[], int]]]:
    def prepare() -> tuple[bytes, Callable[[], int]]:
        def apply() -> int:
            if sink is not None:
                sink.append(n)
            return n

        return orjson.dumps({"n": n}), apply

    return prepare


def replay(url: str, name: str = "t") -> list[int]:
    store = open_store(url)
    try:
        state = Recorder()
        store.open_log(name, state)
        return [r["n"] for r in state.records]
    finally:
        store.close()


async def terminate_backends(url: str, where: str) -> int:
    """Kill the database sessions matching ``where`` (a condition on pg_stat_activity)."""
    conn = await asyncpg.connect(url)
    try:
        killed: int = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            f" WHERE datname = current_database() AND pid <> pg_backend_pid() AND {where}"
        )
        return killed
    finally:
        await conn.close()


def test_the_worker_lock_dies_with_a_killed_process(postgres_db: PostgresDatabase) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from platform_shim.store import open_store;"
            f"s = open_store({postgres_db.url!r}); s.acquire_worker_lock();"
            "print('locked', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env(),
    )
    store = open_store(postgres_db.url)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        assert store.worker_pid() == holder.pid
        with pytest.raises(DataDirLocked) as caught:
            store.acquire_worker_lock()
        assert caught.value.pid == holder.pid
        assert f"store {postgres_db.url!r}" in str(caught.value)
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        # The server notices the closed socket and ends the session; a bound, not a timing.
        wait_until(lambda: store.worker_pid() is None, timeout=30, what="the lock to go")
        store.acquire_worker_lock()
        assert store.worker_pid() == os.getpid()
    finally:
        if holder.stdout is not None:
            holder.stdout.close()
        holder.kill()
        holder.wait()
        store.close()


async def test_a_worker_whose_lock_connection_is_lost_stops_writing(
    postgres_db: PostgresDatabase,
) -> None:
    """Another host may take the lock once our session is gone: writing on would make two
    workers. The store refuses every commit from then on."""
    worker = open_store(postgres_db.url)
    other = open_store(postgres_db.url)
    try:
        worker.acquire_worker_lock()
        log = worker.open_log("t", Recorder())
        await log.submit(record(1))
        assert (
            await terminate_backends(
                postgres_db.url, "pid = (SELECT backend_pid FROM platform.worker)"
            )
            == 1
        )
        await asyncio.to_thread(
            wait_until, lambda: other.worker_pid() is None, timeout=30, what="the lock to go"
        )
        other.acquire_worker_lock()  # the other host takes over...
        await asyncio.to_thread(
            wait_until,
            lambda: isinstance(worker, PostgresStore) and worker.lock_lost,
            timeout=30,
            what="the old worker to notice",
        )
        with pytest.raises(StoreError, match="lost its lock"):
            await log.submit(record(2))  # ...and the old one writes no more
        assert replay(postgres_db.url) == [1]
    finally:
        worker.close()
        other.close()


async def test_a_commit_whose_connection_died_fails_alone(postgres_db: PostgresDatabase) -> None:
    """The database drops the writer's session in the middle of a commit cycle (after it took
    the log's lock, before it committed): that cycle's submissions fail with a StoreError
    naming the log, the state keeps only committed records, and the next submit works."""
    store = open_store(postgres_db.url)
    try:
        state = Recorder()
        log = store.open_log("t", state)
        await log.submit(record(1))
        await log.submit(record(2))
        assert state.records == []
        killed: list[int] = []

        def doomed() -> tuple[bytes, Callable[[], int]]:
            # Runs inside the cycle, holding the lock: end the writer's session now.
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                where = "pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory')"
                killed.append(
                    pool.submit(asyncio.run, terminate_backends(postgres_db.url, where)).result()
                )
            return record(3)()

        with pytest.raises(StoreError, match="log 't'"):
            await log.submit(doomed)
        assert killed == [1]
        assert replay(postgres_db.url) == [1, 2]  # 3 never committed...
        # ...and the state, which had applied 3 before the commit, was replayed without it
        # (before the failure it held nothing: a writer's own records reach it by callback).
        assert [r["n"] for r in state.records] == [1, 2]
        assert await log.submit(record(4)) == 4  # a new connection
        assert replay(postgres_db.url) == [1, 2, 4]
    finally:
        store.close()


async def test_a_commit_after_the_leased_session_ended_takes_a_new_one(
    postgres_db: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database ends the writer's session while it holds the log's lock between two
    cycles (its lease): nothing was in flight, so the next cycle opens a new session and
    commits (it used to fail, and a start then answered 503)."""
    monkeypatch.setattr(pg_log, "LEASE_GRACE_S", 60.0)
    monkeypatch.setattr(pg_log, "LEASE_MAX_S", 60.0)
    store = open_store(postgres_db.url)
    try:
        state = Recorder()
        log = store.open_log("t", state)
        await log.submit(record(1))
        where = "pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory')"
        assert await terminate_backends(postgres_db.url, where) == 1
        await asyncio.sleep(0.2)  # the end of the session reaches the connection
        assert await log.submit(record(2)) == 2
        assert replay(postgres_db.url) == [1, 2]
    finally:
        store.close()


async def test_a_cycle_whose_kept_session_ended_unnoticed_enters_on_a_new_one(
    postgres_db: PostgresDatabase,
) -> None:
    """The writer's idle session is ended and the next cycle starts before the connection has
    heard of it: taking the lock fails on the dead session, and since that wrote nothing it is
    done again on a new one instead of failing the cycle."""
    store = open_store(postgres_db.url)
    try:
        state = Recorder()
        log = store.open_log("t", state)
        await log.submit(record(1))
        await asyncio.sleep(0.2)  # the lease lapses: the session stays, idle, without the lock
        where = "query LIKE '%pg_advisory_unlock%' AND state = 'idle'"
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            # From another thread, so that this loop does not run until the cycle has begun.
            ended = pool.submit(asyncio.run, terminate_backends(postgres_db.url, where)).result()
        assert ended == 1
        assert await log.submit(record(2)) == 2
        assert replay(postgres_db.url) == [1, 2]
    finally:
        store.close()


async def test_a_watch_wakes_on_notify_long_before_its_poll(postgres_db: PostgresDatabase) -> None:
    worker, client = open_store(postgres_db.url), open_store(postgres_db.url)
    try:
        state = Recorder()
        log = worker.open_log("t", state)
        woke = asyncio.Event()

        def on_change() -> None:
            log.refresh()
            if state.records:
                woke.set()

        watch = worker.watch(on_change, poll_interval=3600)  # polling cannot be what wakes it
        watch.start()
        try:
            await client.open_log("t", Recorder()).submit(record(1))
            await asyncio.wait_for(woke.wait(), timeout=30)
        finally:
            await watch.stop()
        assert [r["n"] for r in state.records] == [1]
    finally:
        worker.close()
        client.close()


async def test_a_watch_still_wakes_on_notify_after_the_listeners_session_ended(
    postgres_db: PostgresDatabase,
) -> None:
    """The database ends the session the store LISTENs on (a restart, an administrator): the
    store listens again on a new one, so its watches are still woken by NOTIFY, not only by
    their poll, and a commit made while it was not listening wakes them too."""
    watcher, client = open_store(postgres_db.url), open_store(postgres_db.url)
    try:
        state = Recorder()
        log = watcher.open_log("t", state)
        wanted = 0
        woke = asyncio.Event()

        def on_change() -> None:
            log.refresh()
            if len(state.records) >= wanted:
                woke.set()

        watch = watcher.watch(on_change, poll_interval=3600)  # polling cannot be what wakes it
        watch.start()
        writer = client.open_log("t", Recorder())
        try:
            assert isinstance(watcher, PostgresStore) and watcher.listener is not None
            listening = f"pid = {watcher.listener.conn.get_server_pid()}"
            assert await terminate_backends(postgres_db.url, listening) == 1
            wanted = 1
            await writer.submit(record(1))  # while nobody may be listening
            await asyncio.wait_for(woke.wait(), timeout=30)
            woke.clear()
            wanted = 2
            await writer.submit(record(2))
            await asyncio.wait_for(woke.wait(), timeout=30)
        finally:
            await watch.stop()
        assert [r["n"] for r in state.records] == [1, 2]
    finally:
        watcher.close()
        client.close()


async def test_passwords_never_reach_the_location(postgres_db: PostgresDatabase) -> None:
    url = postgres_db.url.replace("postgres@", "postgres:hunter2@")
    store = open_store(url)
    try:
        assert "hunter2" not in store.location and "***" in store.location
        assert "hunter2" not in repr(store)
    finally:
        store.close()
