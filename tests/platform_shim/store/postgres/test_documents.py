"""The document rows on PostgreSQL (``store/postgres/docschema.py``, ``documents.py``): kept by
the events log's trigger, backfilled by the migration, queried in SQL, indexed for real.

That the answers equal the in-memory evaluator's is the query property tests' job
(``tests/platform_shim/services/test_query_properties.py``, ``backend`` fixture).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from platform_shim.platform import Platform
from platform_shim.services.compaction import compact_stream
from platform_shim.store import open_store
from platform_shim.store.postgres.connect import connect
from platform_shim.store.postgres.documents import PostgresDocuments
from platform_shim.store.postgres.schema import MIGRATIONS, migrate
from tests.support.postgres import PostgresDatabase


@pytest.fixture
async def platform(postgres_db: PostgresDatabase) -> AsyncIterator[Platform]:
    opened = Platform(open_store(postgres_db.url))
    yield opened
    opened.close()


def table(platform: Platform) -> PostgresDocuments:
    documents = platform.store.documents()
    assert isinstance(documents, PostgresDocuments)
    return documents


async def rows(platform: Platform, sql: str, *args: Any) -> list[Any]:
    return await table(platform)._fetch(sql, list(args))


async def bodies(platform: Platform, collection: str) -> list[str]:
    found = await rows(
        platform,
        "SELECT body::text AS b FROM platform.documents WHERE coll = $1 ORDER BY rank",
        collection,
    )
    return [row["b"] for row in found]


async def test_the_rows_follow_every_write_in_its_commit(platform: Platform) -> None:
    db = platform.database
    await db.insert_many("u", [{"_id": "a", "z": 1, "b": [1, 2]}, {"_id": "b", "x": {"q": 1}}])
    await db.insert_one("u", {"_id": "c", "s": "text"})
    await db.update_one("u", {"_id": "a"}, {"$set": {"z": 2}})
    await db.delete_one("u", {"_id": "b"})
    await db.insert_one("u", {"_id": "b", "again": True})
    # Key order as written, insertion order (an update keeps its place, a re-insert goes last).
    assert await bodies(platform, "u") == [
        '{"_id":"a","z":2,"b":[1,2]}',
        '{"_id":"c","s":"text"}',
        '{"_id":"b","again":true}',
    ]
    await db.create_index("u", {"keys": {"z": 1}, "name": "by_z"})
    assert [
        r["name"] for r in await rows(platform, "SELECT name FROM platform.document_indexes")
    ] == ["by_z"]
    await db.drop_index("u", "by_z")
    assert await rows(platform, "SELECT name FROM platform.document_indexes") == []
    await db.delete_many("u", {})
    assert await bodies(platform, "u") == []
    # An emptied collection is still known.
    assert [r["coll"] for r in await rows(platform, "SELECT coll FROM platform.collections")] == [
        "u"
    ]


async def test_a_compaction_applies_nothing_twice(platform: Platform) -> None:
    db = platform.database
    for n in range(5):
        await db.insert_one("u", {"_id": f"d{n}", "n": n})
    await db.delete_one("u", {"_id": "d1"})
    before = await rows(platform, "SELECT id, rank, body::text FROM platform.documents")
    await compact_stream(platform.store, platform.stream, storage=platform.storage_state)
    await db.insert_one("u", {"_id": "after", "n": 9})
    after = await rows(platform, "SELECT id, rank, body::text FROM platform.documents")
    assert [tuple(r) for r in after[:-1]] == [tuple(r) for r in before]
    assert [orjson.loads(b)["_id"] for b in await bodies(platform, "u")] == [
        "d0", "d2", "d3", "d4", "after"
    ]  # fmt: skip


async def test_another_process_reads_what_was_written_here(
    platform: Platform, postgres_db: PostgresDatabase
) -> None:
    await platform.database.insert_one("u", {"_id": "x", "n": 1})
    other = Platform(open_store(postgres_db.url))
    try:
        assert await other.database.find("u", {"n": 1}) == [{"_id": "x", "n": 1, "id": "x"}]
        await other.database.insert_one("u", {"_id": "y", "n": 1})
        assert await platform.database.count("u", {"n": 1}) == 2
    finally:
        other.close()


async def test_the_common_operators_run_in_sql(platform: Platform) -> None:
    await platform.database.insert_one("u", {"_id": "x", "a": {"b": [1, 2]}, "s": "t"})
    every = {
        "a.b": {"$gt": 0, "$gte": 1, "$lt": 3, "$lte": 2, "$ne": 5, "$in": [2, 9], "$nin": [7]},
        "s": {"$eq": "t", "$exists": True, "$not": {"$in": ["u"]}},
        "$and": [{"a.b.0": 1}],
        "$or": [{"missing": None}, {"s": "no"}],
    }
    found = await table(platform).select("u", every, [("a.b", -1), ("s", 1)], 0, 1)
    assert found.exact
    assert [orjson.loads(b)["_id"] for b in found.bodies] == ["x"]


async def test_what_sql_cannot_hold_is_answered_in_python(platform: Platform) -> None:
    db = platform.database
    await db.insert_many("u", [{"_id": "n", "v": 1.5}, {"_id": "z", "v": "a\x00b"}])
    # A NaN operand: every number is above NaN in the order compare.py defines.
    nan = await table(platform).select("v", {"v": {"$gt": float("nan")}}, [], 0, 0)
    assert not nan.exact
    assert [d["_id"] for d in await db.find("u", {"v": {"$gt": float("nan")}})] == ["n"]
    # A document jsonb cannot hold (\u0000): stored exactly, found by the Python fallback.
    assert await db.find("u", {"v": "a\x00b"}) == [{"_id": "z", "v": "a\x00b", "id": "z"}]
    assert await db.count("u", {"v": {"$exists": True}}) == 2
    assert [d["_id"] for d in await db.find("u", {}, sort={"v": -1}, limit=1)] == ["z"]


async def test_the_migration_backfills_from_the_snapshot_and_the_lines(
    postgres_db: PostgresDatabase,
) -> None:
    conn = await connect(postgres_db.url)
    try:
        await migrate(conn, MIGRATIONS[:2])
        snapshot = b"\n".join(
            orjson.dumps(record)
            for record in [
                {"checkpoint": 2, "format": 1},
                {"c": "u", "index": {"name": "by_n", "keys": [["n", 1]], "unique": False}},
                {"c": "u", "doc": {"_id": "old", "n": 1}},
                {"c": "u", "doc": {"_id": "gone", "n": 2}},
            ]
        )
        await conn.execute("INSERT INTO platform.snapshots VALUES ('db', $1)", snapshot)
        lines = [
            {"id": 2, "t": "db.document.created", "r": "db", "ns": "u", "k": "old",
             "data": {"doc": {"_id": "old", "n": 0}, "before": None}, "ts": 0},
            {"id": 3, "t": "db.document.created", "r": "db", "ns": "u", "k": "new",
             "data": {"doc": {"n": 3, "_id": "new"}, "before": None}, "ts": 0},
            {"id": 4, "t": "db.document.deleted", "r": "db", "ns": "u", "k": "gone",
             "data": {"doc": None, "before": {}}, "ts": 0},
        ]  # fmt: skip
        await conn.execute("INSERT INTO platform.logs (name) VALUES ('events')")
        for seq, line in enumerate(lines, 1):
            await conn.execute(
                "INSERT INTO platform.log_lines VALUES ('events', 1, $1, $2)",
                seq,
                orjson.dumps(line),
            )
        await migrate(conn)
        found = await conn.fetch("SELECT body::text AS b FROM platform.documents ORDER BY rank")
        # Line 2 is in the snapshot already (checkpoint 2): the snapshot's version stays.
        assert [r["b"] for r in found] == ['{"_id":"old","n":1}', '{"n":3,"_id":"new"}']
        names = await conn.fetch("SELECT name FROM platform.document_indexes")
        assert [r["name"] for r in names] == ["by_n"]
    finally:
        await conn.close()


async def test_create_index_makes_an_index_postgresql_uses(platform: Platform) -> None:
    db = platform.database
    await db.insert_many("u", [{"_id": f"d{n}", "n": n % 500, "tag": f"t{n}"} for n in range(3000)])
    plain = await table(platform).explain("u", {"n": 7})
    await db.create_index("u", {"keys": {"n": 1}, "name": "by_n"})
    await rows(platform, "ANALYZE platform.documents")
    plan = await table(platform).explain("u", {"n": 7})
    assert "documents_eq_" not in plain
    assert "documents_eq_" in plan, plan  # a bitmap scan of the GIN index on doc -> 'n'
    sorted_plan = await table(platform).explain("u", {}, [("n", 1)], limit=5)
    assert "documents_key_" in sorted_plan, sorted_plan  # the sort reads the btree in order
    assert [d["_id"] for d in await db.find("u", {"n": 7})] == ["d7", "d507", "d1007", "d1507",
                                                              "d2007", "d2507"]  # fmt: skip
    await db.drop_index("u", "by_n")
    assert "documents_eq_" not in await table(platform).explain("u", {"n": 7})


def test_the_reads_do_not_wait_for_the_fold(postgres_db: PostgresDatabase) -> None:
    """A find runs in PostgreSQL: it never calls the fold's catch-up (``fresh``)."""
    platform = Platform(open_store(postgres_db.url))
    try:

        def refuse() -> None:
            raise AssertionError("the fold was asked to catch up")

        async def go() -> list[dict[str, Any]]:
            await platform.database.insert_one("u", {"_id": "x"})
            platform.stream.fresh = refuse  # type: ignore[method-assign]
            return await platform.database.find("u", {"_id": "x"})

        assert asyncio.run(go()) == [{"_id": "x", "id": "x"}]
    finally:
        platform.close()


async def test_a_find_by_id_reads_the_primary_key(platform: Platform) -> None:
    db = platform.database
    await db.insert_many("u", [{"_id": f"d{n}", "n": n} for n in range(2000)])
    await rows(platform, "ANALYZE platform.documents")
    for filter in ({"_id": "d7"}, {"_id": {"$in": ["d7", "d9"]}}, {"_id": {"$eq": "d7"}}):
        plan = await table(platform).explain("u", filter)
        assert "documents_pkey" in plan, plan
    assert [d["n"] for d in await db.find("u", {"id": {"$in": ["d9", "d7"]}})] == [7, 9]
    assert await db.find("u", {"_id": "d7", "n": 8}) == []


async def test_document_queries_are_planned_for_their_parameters(platform: Platform) -> None:
    """A generic plan (which asyncpg's prepared statements get after five runs) cannot pick a
    collection's partial index nor weigh a value; the pool's sessions never use one."""
    await platform.database.insert_many("u", [{"_id": f"d{n}", "n": n % 50} for n in range(500)])
    await platform.database.create_index("u", {"keys": {"n": 1}, "name": "by_n"})
    documents = table(platform)
    sql, args = documents._select_sql("u", {"n": 7}, [], 0, 0)
    store = platform.store

    async def plans() -> list[Any]:
        async with store.pool_connection() as conn:  # type: ignore[attr-defined]
            for _ in range(8):
                assert len(await conn.fetch(sql, *args)) == 10
            return list(
                await conn.fetch(
                    "SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                    " WHERE statement = $1",
                    sql,
                )
            )

    (found,) = await store.bridge.call(plans())  # type: ignore[attr-defined]
    assert (found["generic_plans"], found["custom_plans"]) == (0, 8)


async def test_a_skip_or_limit_past_a_bigint_means_the_same_as_a_huge_one(
    platform: Platform,
) -> None:
    await platform.database.insert_many("u", [{"_id": "a"}, {"_id": "b"}])
    assert await platform.database.find("u", {}, skip=2**70) == []
    found = await platform.database.find("u", {}, limit=2**70, skip=1)
    assert [d["_id"] for d in found] == ["b"]
