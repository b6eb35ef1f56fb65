"""The schema migration runner against a real PostgreSQL (``tests/support/postgres.py``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from platform_shim.store.postgres import (
    LATEST_VERSION,
    MIGRATIONS,
    Migration,
    MigrationFailed,
    SchemaTooNew,
    connect,
    migrate,
    schema_status,
)
from platform_shim.store.postgres.schema import check_migrations
from tests.support.postgres import PostgresDatabase

V1_TABLES = {
    "schema_version",
    "hosts",
    "runs",
    "steps",
    "signals",
    "timers",
    "cron_ticks",
    "kv",
    "documents",
    "document_indexes",
    "objects",
    "queue_messages",
    "handler_cursors",
    "events",
}
V2_TABLES = {
    "logs",
    "log_lines",
    "snapshots",
    "blobs",
    "archive",
    "archive_tags",
    "secrets",
    "worker",
}
V3_TABLES = {"collections"}  # documents and document_indexes are replaced, not added
V4_TABLES = {"kv_entries"}  # and v1's unused kv is dropped
V5_TABLES = {"document_keys"}
V6_TABLES = {"document_key_waits"}


@pytest.fixture
async def conn(postgres_db: PostgresDatabase) -> AsyncIterator[Any]:
    connection = await connect(postgres_db.url)
    yield connection
    await connection.close()


async def tables(conn: Any) -> set[str]:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'platform'"
    )
    return {row["table_name"] for row in rows}


async def catalog(conn: Any) -> list[tuple[Any, ...]]:
    """Every column and index of the ``platform`` schema: equal catalogs, equal schemas."""
    columns = await conn.fetch(
        "SELECT table_name, column_name, data_type, is_nullable, column_default"
        " FROM information_schema.columns WHERE table_schema = 'platform'"
        " ORDER BY table_name, column_name"
    )
    indexes = await conn.fetch(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'platform'"
        " ORDER BY indexname"
    )
    return [tuple(row) for row in columns] + [tuple(row) for row in indexes]


async def versions(conn: Any) -> list[int]:
    rows = await conn.fetch("SELECT version FROM platform.schema_version ORDER BY version")
    return [row["version"] for row in rows]


async def test_a_fresh_database_is_migrated_to_the_latest_version(conn: Any) -> None:
    before = await schema_status(conn)
    assert (before.current, before.latest) == (0, LATEST_VERSION)
    assert before.pending == MIGRATIONS
    assert await tables(conn) == set()  # status only reads

    report = await migrate(conn)

    assert (report.before, report.after, report.applied) == (0, LATEST_VERSION, MIGRATIONS)
    assert await tables(conn) == (
        V1_TABLES | V2_TABLES | V3_TABLES | V4_TABLES | V5_TABLES | V6_TABLES
    ) - {"kv"}
    assert await versions(conn) == [m.version for m in MIGRATIONS]
    after = await schema_status(conn)
    assert (after.current, after.pending, after.too_new) == (LATEST_VERSION, (), False)


async def test_migrating_twice_changes_nothing(conn: Any) -> None:
    await migrate(conn)
    first = await catalog(conn)

    report = await migrate(conn)

    assert (report.before, report.after, report.applied) == (LATEST_VERSION, LATEST_VERSION, ())
    assert await catalog(conn) == first
    assert await versions(conn) == [m.version for m in MIGRATIONS]


async def test_concurrent_migrations_apply_once(postgres_db: PostgresDatabase) -> None:
    conns = [await connect(postgres_db.url) for _ in range(6)]
    try:
        reports = await asyncio.gather(*(migrate(c) for c in conns))
        assert sorted(len(r.applied) for r in reports) == [0] * 5 + [len(MIGRATIONS)]
        assert all(r.after == LATEST_VERSION for r in reports)
        assert await versions(conns[0]) == [m.version for m in MIGRATIONS]
    finally:
        for c in conns:
            await c.close()


async def test_a_later_migration_applies_on_top(conn: Any) -> None:
    await migrate(conn)
    extra = Migration(
        LATEST_VERSION + 1, "kv gains a note", "ALTER TABLE platform.kv_entries ADD note text"
    )
    longer = (*MIGRATIONS, extra)
    assert (await schema_status(conn, longer)).pending == (extra,)

    report = await migrate(conn, longer)

    assert report.applied == (extra,)
    assert (report.before, report.after) == (LATEST_VERSION, LATEST_VERSION + 1)
    assert await conn.fetchval("SELECT count(*) FROM platform.kv_entries WHERE note IS NULL") == 0
    assert await versions(conn) == [m.version for m in longer]


async def test_a_database_newer_than_the_code_is_refused_untouched(conn: Any) -> None:
    await migrate(conn)
    newer = LATEST_VERSION + 3
    await conn.execute(
        "INSERT INTO platform.schema_version (version, description) VALUES ($1, 'future')", newer
    )
    before = await catalog(conn)

    with pytest.raises(SchemaTooNew) as caught:
        await migrate(conn, where="the test database")

    message = str(caught.value)
    assert f"version {newer}" in message
    assert f"({LATEST_VERSION})" in message
    assert "the test database" in message
    assert (caught.value.database_version, caught.value.known_version) == (newer, LATEST_VERSION)
    assert await catalog(conn) == before
    status = await schema_status(conn)
    assert (status.current, status.too_new, status.pending) == (newer, True, ())


async def test_a_failing_migration_leaves_nothing_behind(conn: Any) -> None:
    broken = Migration(LATEST_VERSION + 1, "broken", "ALTER TABLE platform.nope ADD x int")

    with pytest.raises(MigrationFailed, match=rf"migration {LATEST_VERSION + 1} \(broken\) failed"):
        await migrate(conn, (*MIGRATIONS, broken))

    # The earlier versions ran in the same transaction: rolled back with the broken one.
    assert await tables(conn) == set()
    assert (await schema_status(conn)).current == 0
    # And the connection is usable again: the real migrations still apply.
    assert (await migrate(conn)).after == LATEST_VERSION


async def test_a_step_is_recorded_once(conn: Any) -> None:
    """The ledger's keys refuse a second record of the same step (the exactly-once guard)."""
    import asyncpg

    await migrate(conn)
    await conn.execute(
        "INSERT INTO platform.runs (run_id, workflow_id, status, created_at, updated_at)"
        " VALUES ('r1', 'wf', 'running', 1, 1)"
    )
    insert = (
        "INSERT INTO platform.steps (run_id, position, name, kind, status, started_at)"
        " VALUES ('r1', $1, $2, 'run', 'completed', 1)"
    )
    await conn.execute(insert, 0, "fetch")
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(insert, 0, "other name, same position")
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute(insert, 1, "fetch")
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(
            "INSERT INTO platform.runs (run_id, workflow_id, status, created_at, updated_at)"
            " VALUES ('r2', 'wf', 'finished', 1, 1)"
        )


def test_migrations_must_be_numbered_in_order() -> None:
    assert check_migrations(MIGRATIONS) == LATEST_VERSION
    gap = (*MIGRATIONS, Migration(LATEST_VERSION + 2, "skips one", "SELECT 1"))
    with pytest.raises(ValueError, match=f"expected {LATEST_VERSION + 1}"):
        check_migrations(gap)
