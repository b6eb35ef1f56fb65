"""Round trips the PostgreSQL store spends, counted by its own ``statements`` counter.

On a shared two-core machine each statement wakes a database backend that competes with the
runs' own commits, so a 1-step run's latency followed its background statements as much as its
two commits. These pin what each costs now: a read turn one statement, an archive add one, and a
1-step run two commits on its critical path while its status events and its archiving wait to
share a write with other runs' (and ``settle`` flushes them as one write each).
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import orjson
import pytest

from platform_shim.platform import Platform
from platform_shim.runtime import open_platform
from platform_shim.store import open_store
from platform_shim.store.archive import ArchiveEntry
from platform_shim.store.postgres import log as postgres_log
from platform_shim.store.postgres.store import PostgresStore
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow
from tests.support.consumers import Recorder
from tests.support.postgres import PostgresDatabase


@define_workflow({"id": "one-step"})
async def one_step(input: Any, step: Any, ctx: Any) -> Any:
    return await step.run("only", lambda: input, inline=True)


def _line(line: bytes) -> tuple[bytes, None]:
    return line, None


def pg_store(url: str) -> PostgresStore:
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    return store


def counted(store: PostgresStore, role: str) -> int:
    """The statements ``role`` connections sent so far (the counts land on the loop of each
    connection: the bridge's is let run first)."""
    store.bridge.run(asyncio.sleep(0))
    return store.statements[role]


def test_a_read_turn_is_one_statement(postgres_db: PostgresDatabase) -> None:
    store = pg_store(postgres_db.url)
    try:
        log = store.open_log("t", Recorder())
        before = counted(store, "pool")
        log.refresh()
        # Was 2: the pool reset each connection it got back (unlock all, close, unlisten,
        # reset all), a round trip per use.
        assert counted(store, "pool") - before == 1
    finally:
        store.close()


def test_an_archive_add_is_one_statement(postgres_db: PostgresDatabase) -> None:
    store = pg_store(postgres_db.url)
    try:
        archive = store.open_archive("a", writable=True)
        entries = [
            ArchiveEntry(f"k{i}", i, 1000 + i, ("t1", "t2"), b'{"h":1}', b"[]") for i in range(4)
        ]
        # The first use prepares the statement and looks its types up: once per connection.
        assert archive.add(entries[:1]) == 1
        before = counted(store, "pool")
        assert archive.add(entries) == 3
        # Was 4 and a reset: BEGIN, the entries, their tags, COMMIT.
        assert counted(store, "pool") - before == 1
        assert archive.add(entries[:1]) == 0  # the first copy wins, and only it is tagged
        assert archive.count("t1") == 4 and archive.count() == 4
    finally:
        store.close()


async def wait_counts(platform: Platform) -> None:
    """Let the query loggers' callbacks run on both loops."""
    store = platform.store
    assert isinstance(store, PostgresStore)
    await asyncio.sleep(0)
    await store.bridge.call(asyncio.sleep(0))


async def test_a_one_step_run_costs_its_two_commits_and_shares_the_rest(
    postgres_db: PostgresDatabase, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = 5
    # Each log keeps its lock between commits for the whole test (on a slow machine the lease
    # could lapse between two runs and add an enter and a release): the count is exact.
    monkeypatch.setattr(postgres_log, "LEASE_GRACE_S", 3600.0)
    monkeypatch.setattr(postgres_log, "LEASE_MAX_S", 3600.0)
    async with open_platform(postgres_db.url, workflows=[one_step], clock=clock, watch=False) as p:
        store = p.store
        assert isinstance(store, PostgresStore) and p.worker is not None
        engine = p.worker.engine
        # The background batches flush only when hurried: what a run costs by itself shows.
        engine.relay.linger = engine.archive.linger = engine.relay.save_interval = 3600.0
        # Warm up: the first run prepares statements and looks their types up.
        assert await (await p.workflows.start("one-step", -1)).result(timeout=10) == -1
        await p.settle()
        await wait_counts(p)
        before = dict(store.statements)
        for i in range(runs):
            assert await (await p.workflows.start("one-step", i)).result(timeout=10) == i
        await wait_counts(p)
        writer = store.statements["writer"] - before.get("writer", 0)
        # Two commits a run: its creation; its step with its end. Was 5 a run here: each
        # status change and each move of the relay's position wrote on its own.
        assert writer == runs * 2
        assert store.statements["pool"] == before.get("pool", 0)  # nothing archived yet
        await p.settle()
        await wait_counts(p)
        # Then the batches: the status events in one write and the relayed position in one
        # (each log's lock is still held from the warm-up's settle), the archive in one.
        assert store.statements["writer"] - before.get("writer", 0) - writer == 2
        assert store.statements["pool"] - before.get("pool", 0) == 1
        completed = [e for e in p.stream.since(0) if e.t == "workflow.run.completed"]
        assert len(completed) == runs + 1


async def test_a_leased_commit_is_one_prepared_statement(postgres_db: PostgresDatabase) -> None:
    store = pg_store(postgres_db.url)
    try:
        log = store.open_log("t", Recorder())
        assert isinstance(log, postgres_log.PostgresLog)
        lines = [b'{"n":1}', b'{"s":"\\\\ \' \\"quoted\\" \\u00e9"}']
        for line in lines:  # the first takes the lock, the second commits under its lease
            await log.submit(functools.partial(_line, line))
        conn = log._conn  # the writer's session: what it has prepared
        assert conn is not None
        prepared = await conn.fetch("SELECT statement FROM pg_prepared_statements")
        # Was: every commit a script of five statements the server parsed and planned anew.
        assert any("WITH added AS" in r["statement"] for r in prepared)
        again = open_store(postgres_db.url)
        try:
            reader = Recorder()
            again.open_log("t", reader)
            assert [orjson.dumps(r) for r in reader.records] == [
                orjson.dumps(orjson.loads(line)) for line in lines
            ]
        finally:
            again.close()
    finally:
        store.close()
