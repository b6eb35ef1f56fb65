"""The document rules PostgreSQL enforces in the writer's commit (``docrules.py``), the log's
retry that fails only the offending write (``log.py``), and a PostgreSQL host keeping no
document in memory (``services/dbrows.py``).

Raw lines go through ``platform.stream`` (below the database service and its pre-checks), so
what is tested is the database's own refusal.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson
import pytest

from platform_shim.errors import DuplicateKey, StaleWrite
from platform_shim.platform import Platform
from platform_shim.services.dbindex import Index, parse_index_spec
from platform_shim.store import open_store
from platform_shim.store.postgres.connect import connect
from platform_shim.store.postgres.schema import MIGRATIONS, migrate
from tests.platform_shim.store.postgres.test_documents import platform, table
from tests.support.postgres import PostgresDatabase

__all__ = ["platform"]  # the fixture, shared with test_documents.py


async def bodies(platform: Platform, collection: str) -> list[str]:
    found = await table(platform)._fetch(
        "SELECT body::text AS b FROM platform.documents WHERE coll = $1 ORDER BY rank",
        [collection],
    )
    return [row["b"] for row in found]


async def raw(platform: Platform, t: str, coll: str, key: str, data: dict[str, Any]) -> Any:
    """Write one ``db.*`` event as is, past the service's own checks."""
    return await platform.stream.submit(t, "db", coll, key, orjson.dumps(data))


async def test_a_created_line_for_an_existing_id_is_refused(platform: Platform) -> None:
    await platform.database.insert_one("u", {"_id": "a", "n": 1})
    with pytest.raises(DuplicateKey) as caught:
        await raw(platform, "db.document.created", "u", "a", {"doc": {"_id": "a", "n": 2}})
    assert (caught.value.collection, caught.value.index, caught.value.value) == ("u", "_id_", "a")
    assert await bodies(platform, "u") == ['{"_id":"a","n":1}']  # not overwritten
    # The log replayed and goes on: the next write commits.
    await platform.database.insert_one("u", {"_id": "b"})
    assert len(await bodies(platform, "u")) == 2


async def test_an_update_or_delete_planned_from_a_stale_read_is_refused(
    platform: Platform,
) -> None:
    await platform.database.insert_one("u", {"_id": "a", "n": 1})
    await platform.database.update_one("u", {"_id": "a"}, {"$set": {"n": 2}})
    stale = {"_id": "a", "n": 1}
    with pytest.raises(StaleWrite):
        await raw(platform, "db.document.updated", "u", "a", {"doc": {"_id": "a", "n": 9},
                                                             "before": stale})  # fmt: skip
    with pytest.raises(StaleWrite):
        await raw(platform, "db.document.deleted", "u", "a", {"doc": None, "before": stale})
    with pytest.raises(StaleWrite):  # a document that is not there
        await raw(platform, "db.document.deleted", "u", "zz", {"doc": None, "before": stale})
    assert await bodies(platform, "u") == ['{"_id":"a","n":2}']
    current = {"_id": "a", "n": 2}
    await raw(platform, "db.document.deleted", "u", "a", {"doc": None, "before": current})
    assert await bodies(platform, "u") == []


async def test_a_unique_index_holds_in_the_database(platform: Platform) -> None:
    db = platform.database
    await db.insert_many("p", [{"_id": "a", "e": "x"}, {"_id": "b", "e": ["y", "z"]}])
    await db.create_index("p", {"keys": {"e": 1}, "unique": True, "name": "by_e"})
    for value in ("x", "z", ["y", "z"]):
        with pytest.raises(DuplicateKey) as caught:
            await raw(platform, "db.document.created", "p", "c", {"doc": {"_id": "c", "e": value}})
        assert (caught.value.index, caught.value.value) in (("by_e", value), ("by_e", "z"))
    # An update may keep its own keys; taking another document's is refused.
    await db.update_one("p", {"_id": "b"}, {"$set": {"e": ["y", "w"]}})
    with pytest.raises(DuplicateKey):
        await db.update_one("p", {"_id": "b"}, {"$set": {"e": "x"}})
    with pytest.raises(DuplicateKey):
        await raw(platform, "db.document.updated", "p", "b", {
            "doc": {"_id": "b", "e": "x"}, "before": {"_id": "b", "e": ["y", "w"]}
        })  # fmt: skip
    # A deleted document's keys are free again; a dropped index's keys are gone.
    await db.delete_one("p", {"_id": "a"})
    await db.insert_one("p", {"_id": "c", "e": "x"})
    assert await db.drop_index("p", "by_e")
    await db.insert_one("p", {"_id": "d", "e": "x"})
    keys = await table(platform)._fetch("SELECT count(*) AS n FROM platform.document_keys", [])
    assert keys[0]["n"] == 0


async def test_creating_a_unique_index_over_a_clash_creates_nothing(platform: Platform) -> None:
    db = platform.database
    await db.insert_many("p", [{"_id": "a", "e": 1}, {"_id": "b", "e": 1.0}])
    with pytest.raises(DuplicateKey):
        await db.create_index("p", {"keys": {"e": 1}, "unique": True, "name": "by_e"})
    spec = parse_index_spec("p", {"keys": {"e": 1}, "unique": True, "name": "by_e"})
    with pytest.raises(DuplicateKey):  # the database's own check, past the service
        await raw(platform, "db.index.created", "p", "by_e", {"index": spec})
    assert [i["name"] for i in await db.list_indexes("p")] == ["_id_"]
    await db.create_index("p", {"keys": {"n": 1}, "name": "by_n"})
    other = parse_index_spec("p", {"keys": {"m": 1}, "name": "by_n"})
    with pytest.raises(ValueError, match="another definition"):
        await raw(platform, "db.index.created", "p", "by_n", {"index": other})
    with pytest.raises(ValueError, match="another definition"):
        await db.create_index("p", {"keys": {"m": 1}, "name": "by_n"})
    assert await db.create_index("p", {"keys": {"n": 1}, "name": "by_n"}) == "by_n"  # no-op


DOCS: list[dict[str, Any]] = [
    {"a": 1}, {"a": 1.0}, {"a": True}, {"a": [1, 2]}, {"a": 2}, {"a": [[1, 2]]}, {"a": None},
    {}, {"a": {"x": 1}}, {"a": {"x": 1}, "b": 2}, {"a": "1"}, {"a": []}, {"a": [None]},
    {"b": {"c": [1, 3]}}, {"b": [{"c": 3}, {"c": 4}]}, {"a": 1, "b": {"c": 1}}, {"a": [2, 1]},
    {"a": "x", "b": {"c": None}}, {"a": [[]]}, {"a": -0.5}, {"a": 1e18}, {"a": 1000000000000000000},
]  # fmt: skip
SPECS: list[dict[str, Any]] = [
    {"keys": {"a": 1}},
    {"keys": {"b.c": 1}},
    {"keys": {"a": 1, "b.c": -1}},
    {"keys": {"a": 1}, "sparse": True},
    {"keys": {"a": 1, "b": 1}, "sparse": True},
    {"keys": {"a": 1}, "partial": {"b": {"$exists": True}}},
    {"keys": {"a": 1}, "partial": {"a": {"$gt": 0}}},
]


async def test_the_keys_clash_exactly_where_the_in_memory_index_says(platform: Platform) -> None:
    """For every index kind and every pair of documents: the database finds a shared key
    exactly when ``dbindex.Index.keys_of`` does (multikey, null and missing, sparse, partial,
    compound, 1 == 1.0, true != 1)."""
    documents = table(platform)
    for spec in SPECS:
        descriptor = parse_index_spec("u", {**spec, "unique": True})
        index = Index(descriptor)
        where = documents.where_sql(spec["partial"]) if "partial" in spec else None
        sql_keys: list[set[bytes]] = []
        for n, doc in enumerate(DOCS):
            rows = await documents._fetch(
                "SELECT k.key FROM platform.document_keys_of($1::jsonb, $2, $3::json, $4) k",
                [orjson.dumps({"_id": f"d{n}", **doc}).decode(), f"d{n}",
                 orjson.dumps(descriptor).decode(), where],
            )  # fmt: skip
            sql_keys.append({bytes(row["key"]) for row in rows})
        for (i, one), (j, two) in itertools.combinations(enumerate(DOCS), 2):
            python = bool(index.keys_of(one) & index.keys_of(two))
            assert bool(sql_keys[i] & sql_keys[j]) == python, (spec, one, two)
        for i, doc in enumerate(DOCS):
            assert bool(sql_keys[i]) == bool(index.keys_of(doc)), (spec, doc)


async def test_in_one_cycle_only_the_clashing_write_fails(platform: Platform) -> None:
    """Writes gathered into one commit cycle, one of which the database refuses: that one
    fails, every other (documents, a KV key) commits."""
    db = platform.database
    await db.insert_one("u", {"_id": "old"})
    outcomes = await asyncio.gather(
        db.insert_one("u", {"_id": "a"}),
        db.insert_one("u", {"_id": "same", "by": 1}),
        platform.kv.put("ns", "k", 1),
        db.insert_one("u", {"_id": "same", "by": 2}),
        raw(platform, "db.document.created", "u", "old", {"doc": {"_id": "old", "x": 1}}),
        db.insert_one("u", {"_id": "b"}),
        return_exceptions=True,
    )
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(failed) == 2 and all(isinstance(o, DuplicateKey) for o in failed), outcomes
    assert outcomes[0] == "a" and outcomes[5] == "b" and outcomes[2] is None
    assert await platform.kv.get("ns", "k") == 1
    ids = sorted(orjson.loads(b)["_id"] for b in await bodies(platform, "u"))
    assert ids == ["a", "b", "old", "same"]
    assert await db.find_one("u", {"_id": "old"}) == {"_id": "old", "id": "old"}


async def test_updates_racing_in_one_process_lose_nothing(platform: Platform) -> None:
    db = platform.database
    """Gathered updates planned from one read: all but the first are refused as stale (in
    the cycle, from the stream's recent events) and each plans again (by ``_id`` they would
    take turns instead: not this path)."""
    await db.insert_one("c", {"_id": "c", "k": "c", "n": 0})
    results = await asyncio.gather(
        *(db.update_one("c", {"k": "c"}, {"$inc": {"n": 1}}) for _ in range(20))
    )
    assert all(r == {"matched": 1, "modified": 1} for r in results)
    assert (await db.find_one("c", {"_id": "c"}) or {})["n"] == 20


async def test_a_postgresql_host_holds_no_document(
    platform: Platform, postgres_db: PostgresDatabase
) -> None:
    db = platform.database
    await db.create_index("u", {"keys": {"n": 1}, "unique": True, "name": "by_n"})
    await db.insert_many("u", [{"_id": f"d{n}", "n": n} for n in range(50)])
    await db.update_many("u", {"n": {"$lt": 10}}, {"$inc": {"n": 1000}})
    await db.delete_one("u", {"_id": "d20"})
    state = platform.db_state
    assert state.collections == {}
    assert list(state.snapshot_records()) == []
    # What the fold used to answer comes from the rows.
    stats = await db.collection_stats()
    assert [(s.name, s.documents, s.indexes) for s in stats] == [("u", 49, 2)]
    assert [i["name"] for i in await db.list_indexes("u")] == ["_id_", "by_n"]
    other = Platform(open_store(postgres_db.url))  # a host starting on these rows
    try:
        assert other.db_state.collections == {}
        assert await other.database.count("u", {"n": {"$gte": 1000}}) == 10
        with pytest.raises(DuplicateKey):
            await other.database.insert_one("u", {"n": 1005})
    finally:
        other.close()


async def test_racing_updates_show_listeners_only_committed_events(
    platform: Platform, postgres_db: PostgresDatabase
) -> None:
    """Two clients updating one document at once: a stale plan is refused in the cycle, from
    the events the stream caught up with, not by a failed commit, whose events the stream's
    listeners (the event stream API, the dispatcher) would already have seen."""
    other = Platform(open_store(postgres_db.url))
    seen: list[bytes] = []
    try:
        for client in (platform, other):
            client.stream.add_listener(lambda event: seen.append(event.line))
        await platform.database.insert_one("c", {"_id": "c", "n": 0})
        await asyncio.gather(
            *(
                client.database.update_one("c", {"_id": "c"}, {"$inc": {"n": 1}})
                for _ in range(15)
                for client in (platform, other)
            )
        )
        committed = await table(platform)._fetch(
            "SELECT line FROM platform.log_lines WHERE log = 'events'", []
        )
        lines = {bytes(row["line"]) for row in committed}
        assert [line for line in seen if line not in lines] == []
        assert (await other.database.find_one("c", {"_id": "c"}) or {})["n"] == 30
    finally:
        other.close()


async def test_a_partial_unique_index_holds_for_the_documents_it_covers(
    platform: Platform,
) -> None:
    db = platform.database
    spec = {"keys": {"e": 1}, "unique": True, "partial": {"on": True}, "name": "live_e"}
    await db.create_index("p", spec)
    await db.insert_many(
        "p", [{"e": "x", "on": False}, {"e": "x"}, {"_id": "a", "e": "x", "on": True}]
    )
    with pytest.raises(DuplicateKey):
        await db.insert_one("p", {"e": "x", "on": True})
    with pytest.raises(DuplicateKey):  # the database's check, past the service's
        await raw(
            platform, "db.document.created", "p", "b", {"doc": {"_id": "b", "e": "x", "on": True}}
        )
    await db.update_one("p", {"_id": "a"}, {"$set": {"on": False}})
    await db.insert_one("p", {"e": "x", "on": True})
    assert await db.count("p", {"e": "x"}) == 4
    with pytest.raises(ValueError, match="PostgreSQL can evaluate"):
        await db.create_index("p", {**spec, "name": "nul", "partial": {"n": "a\x00b"}})


async def test_the_migration_files_the_keys_of_existing_unique_indexes(
    postgres_db: PostgresDatabase,
) -> None:
    conn = await connect(postgres_db.url)
    try:
        await migrate(conn, MIGRATIONS[:4])
        await conn.execute("INSERT INTO platform.collections VALUES ('p')")
        for n, body in enumerate(['{"_id":"a","e":"x"}', '{"_id":"b","e":["y","z"]}'], 1):
            await conn.execute(
                "INSERT INTO platform.documents VALUES ('p', $1, $2, $3::json, $3::jsonb)",
                orjson.loads(body)["_id"], n, body,
            )  # fmt: skip
        for name, spec in [
            ("by_e", {"keys": {"e": 1}, "unique": True}),
            ("part", {"keys": {"e": 1}, "unique": True, "partial": {"on": True}}),
        ]:
            descriptor = orjson.dumps(parse_index_spec("p", {**spec, "name": name})).decode()
            await conn.execute(
                "INSERT INTO platform.document_indexes VALUES ('p', $1, $2::json)", name, descriptor
            )
        await migrate(conn)
        keys = await conn.fetch("SELECT name, id FROM platform.document_keys ORDER BY id, key")
        assert [(r["name"], r["id"]) for r in keys] == [("by_e", "a")] + [("by_e", "b")] * 3
        flags = await conn.fetch("SELECT name, is_unique FROM platform.document_indexes")
        assert {r["name"]: r["is_unique"] for r in flags} == {"by_e": True, "part": False}
    finally:
        await conn.close()
    platform = Platform(open_store(postgres_db.url))
    try:
        with pytest.raises(DuplicateKey):
            await raw(platform, "db.document.created", "p", "c", {"doc": {"_id": "c", "e": "z"}})
    finally:
        platform.close()
