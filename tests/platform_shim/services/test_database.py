"""The document database through ``platform.database``: CRUD, ids, events, queries, indexes."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from platform_shim.errors import DuplicateKey
from platform_shim.platform import Platform, open_client
from platform_shim.testing import FakeClock
from tests.support.eventlog import EVENT_KEYS, raw


@pytest.fixture(params=["folder", "postgres"])
async def on_each_store(
    request: pytest.FixtureRequest, data_dir: Path, clock: FakeClock
) -> AsyncIterator[Platform]:
    """A client on a folder, and on PostgreSQL (where reads run in SQL): the read tests run on
    both, so the table's answers are held to the fold's."""
    if request.param == "folder":
        client = open_client(data_dir, clock=clock)
    else:
        database = request.getfixturevalue("postgres_db")
        client = open_client(store=database.url, clock=clock)
    yield client
    client.close()


class Stored:
    """A client on a folder or on PostgreSQL, and the events log it writes, read back whole
    (the write tests run on both: on PostgreSQL the database checks the writes)."""

    def __init__(self, platform: Platform, location: Any, clock: FakeClock) -> None:
        self.platform = platform
        self._location = location
        self._clock = clock

    def other(self) -> Platform:
        """A second client (another process) on the same store."""
        if isinstance(self._location, Path):
            return open_client(self._location, clock=self._clock)
        return open_client(store=self._location, clock=self._clock)

    async def lines(self) -> list[bytes]:
        if isinstance(self._location, Path):
            return raw(self._location).splitlines()
        table: Any = self.platform.store.documents()
        rows = await table._fetch(
            "SELECT l.line FROM platform.log_lines l JOIN platform.logs g"
            " ON g.name = l.log AND g.generation = l.generation"
            " WHERE l.log = 'events' ORDER BY l.seq",
            [],
        )
        return [bytes(row["line"]) for row in rows]

    async def raw(self) -> bytes:
        return b"".join(line + b"\n" for line in await self.lines())

    async def of_type(self, t: str) -> list[dict[str, Any]]:
        events = [orjson.loads(line) for line in await self.lines()]
        return [event for event in events if event["t"] == t]


@pytest.fixture(params=["folder", "postgres"])
async def s(
    request: pytest.FixtureRequest, data_dir: Path, clock: FakeClock
) -> AsyncIterator[Stored]:
    location: Any = data_dir
    if request.param == "postgres":
        location = request.getfixturevalue("postgres_db").url
        client = open_client(store=location, clock=clock)
    else:
        client = open_client(data_dir, clock=clock)
    yield Stored(client, location, clock)
    client.close()


# --------------------------------------------------------------------- basics


async def test_insert_find_find_one_count(on_each_store: Platform) -> None:
    db = on_each_store.database
    assert on_each_store.db is db
    first = await db.insert_one("users", {"name": "Ada", "age": 36})
    second = await db.insert_one("users", {"name": "Bob", "age": 25})
    assert await db.count("users") == 2
    assert await db.count("users", {"age": {"$gt": 30}}) == 1
    assert await db.count("nobody") == 0
    found = await db.find("users")
    assert [d["name"] for d in found] == ["Ada", "Bob"]  # insertion order
    assert found[0] == {"_id": first, "id": first, "name": "Ada", "age": 36}
    one = await db.find_one("users", {"name": "Bob"})
    assert one == {"_id": second, "id": second, "name": "Bob", "age": 25}
    assert await db.find_one("users", {"name": "Nobody"}) is None
    assert await db.find("empty-collection", {"x": 1}) == []


async def test_generated_ids_are_unique_strings(on_each_store: Platform) -> None:
    ids = await on_each_store.db.insert_many("c", [{"n": i} for i in range(50)])
    assert all(isinstance(i, str) and i for i in ids)
    assert len(set(ids)) == 50
    docs = await on_each_store.db.find("c")
    assert [d["_id"] for d in docs] == ids
    assert [d["id"] for d in docs] == ids


async def test_given_id_or_alias_is_kept(on_each_store: Platform) -> None:
    assert await on_each_store.db.insert_one("c", {"_id": "u_1", "x": 1}) == "u_1"
    assert await on_each_store.db.insert_one("c", {"id": "u_2", "x": 2}) == "u_2"
    assert await on_each_store.db.insert_one("c", {"_id": "u_3", "id": "u_3"}) == "u_3"
    doc = await on_each_store.db.find_one("c", {"_id": "u_2"})
    assert doc == {"_id": "u_2", "id": "u_2", "x": 2}


async def test_filter_on_id_or__id(on_each_store: Platform) -> None:
    a = await on_each_store.db.insert_one("c", {"n": 1})
    b = await on_each_store.db.insert_one("c", {"n": 2})
    assert [d["n"] for d in await on_each_store.db.find("c", {"id": a})] == [1]
    assert [d["n"] for d in await on_each_store.db.find("c", {"_id": b})] == [2]
    assert [d["n"] for d in await on_each_store.db.find("c", {"id": {"$in": [a, b]}})] == [1, 2]
    assert [d["n"] for d in await on_each_store.db.find("c", {"$or": [{"id": b}, {"n": 99}]})] == [
        2
    ]
    assert [d["n"] for d in await on_each_store.db.find("c", {"id": {"$ne": a}})] == [2]
    assert await on_each_store.db.find("c", {"id": a, "_id": b}) == []
    assert await on_each_store.db.count("c", {"id": b}) == 1
    assert (await on_each_store.db.update_one("c", {"id": a}, {"$set": {"n": 10}}))["matched"] == 1
    assert (await on_each_store.db.delete_one("c", {"id": b})) == {"deleted": 1}
    assert [d["n"] for d in await on_each_store.db.find("c")] == [10]


@pytest.mark.parametrize(
    "doc",
    [{"_id": "a", "id": "b"}, {"_id": 5}, {"_id": ""}, {"id": 7}, {"_id": None, "x": 1}],
)
async def test_bad_ids_are_value_errors(platform: Platform, data_dir: Path, doc: Any) -> None:
    with pytest.raises(ValueError, match="id"):
        await platform.db.insert_one("c", doc)
    assert raw(data_dir) == b""


async def test_non_json_document_is_a_type_error_and_writes_nothing(
    platform: Platform, data_dir: Path
) -> None:
    with pytest.raises(TypeError, match="doc-1"):
        await platform.db.insert_one("c", {"_id": "doc-1", "when": {1, 2}})
    with pytest.raises(TypeError):
        await platform.db.insert_many("c", [{"_id": "ok"}, {"_id": "bad", "v": object()}])
    await platform.db.insert_one("c", {"_id": "d"})
    before = raw(data_dir)
    # update.py refuses a non-JSON operand with ValueError (the spec asks for TypeError; reported)
    with pytest.raises((TypeError, ValueError), match="'v'"):
        await platform.db.update_one("c", {"_id": "d"}, {"$set": {"v": {1}}})
    assert raw(data_dir) == before
    assert await platform.db.count("c") == 1


@pytest.mark.parametrize("name", ["", None, 3, "x" * 257])
async def test_bad_collection_name(platform: Platform, name: Any) -> None:
    with pytest.raises(ValueError, match="collection"):
        await platform.db.insert_one(name, {})
    with pytest.raises(ValueError, match="collection"):
        await platform.db.find(name)


async def test_duplicate_id_is_refused_and_writes_nothing(s: Stored) -> None:
    await s.platform.db.insert_one("c", {"_id": "x", "v": 1})
    before = await s.raw()
    with pytest.raises(DuplicateKey) as caught:
        await s.platform.db.insert_one("c", {"_id": "x", "v": 2})
    assert caught.value.index == "_id_"
    assert caught.value.value == "x"
    assert "x" in str(caught.value)
    assert await s.raw() == before
    assert await s.platform.db.find("c") == [{"_id": "x", "id": "x", "v": 1}]
    # another collection has its own ids
    await s.platform.db.insert_one("d", {"_id": "x"})


async def test_insert_many_is_all_or_nothing(s: Stored) -> None:
    await s.platform.db.insert_one("c", {"_id": "taken"})
    before = await s.raw()
    with pytest.raises(DuplicateKey):
        await s.platform.db.insert_many("c", [{"_id": "n1"}, {"_id": "taken"}, {"_id": "n2"}])
    with pytest.raises(DuplicateKey):
        await s.platform.db.insert_many("c", [{"_id": "n1"}, {"_id": "n2"}, {"_id": "n1"}])
    with pytest.raises(DuplicateKey):
        await s.platform.db.insert_many("c", [{"id": "n3"}, {"_id": "n3"}])
    assert await s.raw() == before
    assert [d["_id"] for d in await s.platform.db.find("c")] == ["taken"]
    ids = await s.platform.db.insert_many("c", [{"_id": "n1"}, {"v": 2}])
    assert ids[0] == "n1"
    assert [e["k"] for e in await s.of_type("db.document.created")] == ["taken", *ids]
    assert await s.platform.db.insert_many("c", []) == []


async def test_concurrent_inserts_of_one_id_from_two_clients(s: Stored) -> None:
    other = s.other()
    try:
        results = await asyncio.gather(
            s.platform.db.insert_one("c", {"_id": "same", "by": "first"}),
            other.db.insert_one("c", {"_id": "same", "by": "second"}),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["DuplicateKey", "str"]
        assert len(await s.of_type("db.document.created")) == 1
        await asyncio.sleep(0)
        assert await s.platform.db.find("c") == await other.db.find("c")
    finally:
        other.close()


# ------------------------------------------------------------------ updates/deletes


async def test_update_counts_and_events_carry_before(s: Stored) -> None:
    await s.platform.db.insert_many(
        "c", [{"_id": "a", "g": 1, "n": 0}, {"_id": "b", "g": 1, "n": 5}, {"_id": "c", "g": 2}]
    )
    assert await s.platform.db.update_one("c", {"g": 1}, {"$inc": {"n": 1}}) == {
        "matched": 1,
        "modified": 1,
    }
    assert await s.platform.db.update_many("c", {"g": 1}, {"$set": {"n": 5}}) == {
        "matched": 2,
        "modified": 1,  # b already had n=5
    }
    assert await s.platform.db.update_many("c", {"g": 9}, {"$set": {"n": 1}}) == {
        "matched": 0,
        "modified": 0,
    }
    assert await s.platform.db.update_one("c", {"_id": "b"}, {"$set": {"n": 5}}) == {
        "matched": 1,
        "modified": 0,
    }
    updated = await s.of_type("db.document.updated")
    assert len(updated) == 2  # an update that changes nothing writes nothing
    first, second = updated
    assert set(first) == EVENT_KEYS
    assert (first["r"], first["ns"], first["k"]) == ("db", "c", "a")
    assert first["data"]["before"] == {"_id": "a", "g": 1, "n": 0}
    assert first["data"]["doc"] == {"_id": "a", "g": 1, "n": 1}
    assert second["k"] == "a"
    assert second["data"]["before"]["n"] == 1
    assert second["data"]["doc"]["n"] == 5
    assert await s.platform.db.find_one("c", {"_id": "a"}) == {
        "_id": "a",
        "id": "a",
        "g": 1,
        "n": 5,
    }


async def test_plain_update_with_a_read_back_document(on_each_store: Platform) -> None:
    await on_each_store.db.insert_one("c", {"_id": "a", "n": 1})
    doc = await on_each_store.db.find_one("c", {"id": "a"})
    assert doc is not None
    doc["n"] = 2
    doc["extra"] = True
    assert await on_each_store.db.update_one("c", {"id": "a"}, doc) == {"matched": 1, "modified": 1}
    assert await on_each_store.db.find_one("c", {"_id": "a"}) == {
        "_id": "a",
        "id": "a",
        "n": 2,
        "extra": True,
    }
    with pytest.raises(ValueError, match="immutable"):
        await on_each_store.db.update_one("c", {"_id": "a"}, {"$set": {"id": "other"}})
    with pytest.raises(ValueError, match="immutable"):
        await on_each_store.db.update_one("c", {"_id": "a"}, {"$set": {"_id": "other"}})


async def test_update_many_writes_all_or_nothing(s: Stored) -> None:
    await s.platform.db.insert_many("c", [{"_id": "a", "v": 1}, {"_id": "b", "v": "text"}])
    before = await s.raw()
    with pytest.raises(ValueError, match=r"\$inc"):
        await s.platform.db.update_many("c", {}, {"$inc": {"v": 1}})
    assert await s.raw() == before
    assert [d["v"] for d in await s.platform.db.find("c")] == [1, "text"]


async def test_deletes(s: Stored) -> None:
    await s.platform.db.insert_many("c", [{"_id": str(i), "odd": i % 2 == 1} for i in range(6)])
    assert await s.platform.db.delete_one("c", {"odd": True}) == {"deleted": 1}
    assert [d["_id"] for d in await s.platform.db.find("c")] == ["0", "2", "3", "4", "5"]
    assert await s.platform.db.delete_many("c", {"odd": True}) == {"deleted": 2}
    before = await s.raw()
    assert await s.platform.db.delete_many("c", {"odd": True}) == {"deleted": 0}
    assert await s.platform.db.delete_one("c", {"_id": "nope"}) == {"deleted": 0}
    assert await s.raw() == before
    deleted = await s.of_type("db.document.deleted")
    assert [e["k"] for e in deleted] == ["1", "3", "5"]
    assert deleted[0]["data"] == {"doc": None, "before": {"_id": "1", "odd": True}}
    assert await s.platform.db.delete_many("c", {}) == {"deleted": 3}
    assert await s.platform.db.count("c") == 0
    # an id can be used again once its document is gone
    await s.platform.db.insert_one("c", {"_id": "1"})


async def test_updates_from_two_clients_are_computed_on_the_latest_document(s: Stored) -> None:
    other = s.other()
    try:
        await s.platform.db.insert_one("c", {"_id": "counter", "n": 0, "log": []})
        # neither client waits to see the other's writes before updating
        await asyncio.gather(
            *(
                client.db.update_one(
                    "c", {"_id": "counter"}, {"$inc": {"n": 1}, "$push": {"log": i}}
                )
                for i in range(20)
                for client in (s.platform, other)
            )
        )
        await asyncio.sleep(0)
        for client in (s.platform, other):
            doc = await client.db.find_one("c", {"_id": "counter"})
            assert doc is not None
            assert doc["n"] == 40
            assert sorted(doc["log"]) == sorted(list(range(20)) * 2)
        updates = await s.of_type("db.document.updated")
        assert [e["data"]["before"]["n"] for e in updates] == list(range(40))
    finally:
        other.close()


# ------------------------------------------------------------------- query options


async def test_sort_skip_limit_projection(on_each_store: Platform) -> None:
    await on_each_store.db.insert_many(
        "c",
        [
            {"_id": "a", "age": 30, "name": "Cy", "meta": {"x": 1, "y": 2}},
            {"_id": "b", "age": 20, "name": "Al", "meta": {"x": 2, "y": 3}},
            {"_id": "c", "age": 30, "name": "Bo", "meta": {"x": 3, "y": 4}},
            {"_id": "d", "age": 40, "name": "Di", "meta": {"x": 4, "y": 5}},
        ],
    )
    docs = await on_each_store.db.find("c", sort={"age": -1, "name": 1})
    assert [d["_id"] for d in docs] == ["d", "c", "a", "b"]
    docs = await on_each_store.db.find("c", sort=[("age", 1)], skip=1, limit=2)
    assert [d["_id"] for d in docs] == ["a", "c"]  # stable on the tie
    docs = await on_each_store.db.find("c", {"age": {"$gte": 30}}, skip=2)
    assert [d["_id"] for d in docs] == ["d"]
    docs = await on_each_store.db.find("c", sort={"name": 1}, projection={"name": 1, "meta.x": 1})
    assert docs[0] == {"_id": "b", "id": "b", "name": "Al", "meta": {"x": 2}}
    docs = await on_each_store.db.find("c", {"_id": "a"}, projection={"meta": 0, "age": 0})
    assert docs == [{"_id": "a", "id": "a", "name": "Cy"}]
    docs = await on_each_store.db.find("c", {"_id": "a"}, projection={"_id": 0, "name": 1})
    assert docs == [{"name": "Cy"}]
    one = await on_each_store.db.find_one("c", {"age": 30}, projection={"name": 1})
    assert one == {"_id": "a", "id": "a", "name": "Cy"}
    with pytest.raises(ValueError, match="limit"):
        await on_each_store.db.find("c", limit=-1)
    with pytest.raises(ValueError, match="skip"):
        await on_each_store.db.find("c", skip=1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("operator", ["$regex", "$where", "$elemMatch", "$size"])
async def test_unknown_query_operator_is_named(
    platform: Platform, data_dir: Path, operator: str
) -> None:
    await platform.db.insert_one("c", {"_id": "a", "name": "x"})
    before = raw(data_dir)
    bad = {"name": {operator: "x"}}
    with pytest.raises(ValueError, match=rf"\{operator}"):
        await platform.db.find("c", bad)
    with pytest.raises(ValueError, match=rf"\{operator}"):
        await platform.db.find("empty", bad)
    with pytest.raises(ValueError, match=rf"\{operator}"):
        await platform.db.count("c", bad)
    with pytest.raises(ValueError, match=rf"\{operator}"):
        await platform.db.update_many("c", bad, {"$set": {"y": 1}})
    with pytest.raises(ValueError, match=rf"\{operator}"):
        await platform.db.delete_many("c", bad)
    assert raw(data_dir) == before


async def test_top_level_where_and_unknown_update_operator(on_each_store: Platform) -> None:
    with pytest.raises(ValueError, match=r"\$where"):
        await on_each_store.db.find("c", {"$where": "this.a == 1"})
    with pytest.raises(ValueError, match=r"\$rename"):
        await on_each_store.db.update_one("c", {}, {"$rename": {"a": "b"}})


async def test_returned_documents_are_copies(on_each_store: Platform) -> None:
    doc: dict[str, Any] = {"_id": "a", "tags": ["x"], "nested": {"n": 1}}
    await on_each_store.db.insert_one("c", doc)
    doc["tags"].append("mutated after insert")
    found = await on_each_store.db.find_one("c", {"_id": "a"})
    assert found is not None
    found["tags"].append("y")
    found["nested"]["n"] = 2
    del found["_id"]
    (again,) = await on_each_store.db.find("c")
    assert again == {"_id": "a", "id": "a", "tags": ["x"], "nested": {"n": 1}}
    update = {"$set": {"list": [1]}}
    await on_each_store.db.update_one("c", {"_id": "a"}, update)
    update["$set"]["list"].append(2)
    assert (await on_each_store.db.find_one("c", {"_id": "a"}) or {})["list"] == [1]


# -------------------------------------------------------------------------- indexes


async def test_create_list_drop_index(s: Stored) -> None:
    assert [i["name"] for i in await s.platform.db.list_indexes("users")] == ["_id_"]
    name = await s.platform.db.create_index("users", {"keys": {"email": 1}, "unique": True})
    assert name == "email_1"
    named = await s.platform.db.create_index("users", {"keys": {"org": 1, "age": -1}, "name": "oa"})
    assert named == "oa"
    indexes = await s.platform.db.list_indexes("users")
    assert [i["name"] for i in indexes] == ["_id_", "email_1", "oa"]
    assert indexes[1]["unique"] is True
    assert indexes[1]["keys"] == [["email", 1]]
    assert indexes[2]["keys"] == [["org", 1], ["age", -1]]
    assert indexes[2]["unique"] is False
    (created, _) = await s.of_type("db.index.created")
    assert set(created) == EVENT_KEYS
    assert (created["r"], created["ns"], created["k"]) == ("db", "users", "email_1")
    assert created["data"]["index"]["name"] == "email_1"

    assert await s.platform.db.drop_index("users", "email_1") is True
    (dropped,) = await s.of_type("db.index.dropped")
    assert (dropped["ns"], dropped["k"], dropped["data"]) == ("users", "email_1", {})
    assert [i["name"] for i in await s.platform.db.list_indexes("users")] == ["_id_", "oa"]
    before = await s.raw()
    assert await s.platform.db.drop_index("users", "email_1") is False
    assert await s.platform.db.drop_index("nothing-here", "oa") is False
    assert await s.raw() == before
    with pytest.raises(ValueError, match="_id_"):
        await s.platform.db.drop_index("users", "_id_")
    # the unique constraint went with the index
    await s.platform.db.insert_many("users", [{"email": "a"}, {"email": "a"}])


async def test_index_name_clash(s: Stored) -> None:
    spec = {"keys": {"email": 1}, "unique": True}
    await s.platform.db.create_index("users", spec)
    before = await s.raw()
    # the same definition again (start-up code run twice) changes nothing
    assert await s.platform.db.create_index("users", dict(spec)) == "email_1"
    with pytest.raises(ValueError, match="email_1"):
        await s.platform.db.create_index("users", {"keys": {"email": 1}})
    with pytest.raises(ValueError, match="email_1"):
        await s.platform.db.create_index("users", {"keys": {"x": 1}, "name": "email_1"})
    assert await s.raw() == before
    assert len(await s.platform.db.list_indexes("users")) == 2


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"keys": {}},
        {"keys": {"a": 2}},
        {"keys": {"$a": 1}},
        {"keys": {"a..b": 1}},
        {"keys": {"a": 1}, "unique": "yes"},
        {"keys": {"a": 1}, "name": "_id_"},
        {"keys": {"a": 1}, "expireAfterSeconds": 5},
        {"keys": {"a": 1}, "partial": {"a": {"$regex": "x"}}},
        "a",
    ],
)
async def test_bad_index_spec(platform: Platform, data_dir: Path, spec: Any) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each spec is wrong its own way
        await platform.db.create_index("c", spec)
    assert raw(data_dir) == b""


async def test_unique_index_refuses_clash_on_insert(s: Stored) -> None:
    await s.platform.db.create_index("users", {"keys": {"email": 1}, "unique": True})
    await s.platform.db.insert_one("users", {"_id": "u1", "email": "a@x"})
    before = await s.raw()
    with pytest.raises(DuplicateKey) as caught:
        await s.platform.db.insert_one("users", {"_id": "u2", "email": "a@x"})
    assert caught.value.index == "email_1"
    assert caught.value.value == "a@x"
    with pytest.raises(DuplicateKey):
        await s.platform.db.insert_many("users", [{"email": "b@x"}, {"email": "b@x"}])
    with pytest.raises(DuplicateKey):
        await s.platform.db.insert_many("users", [{"email": "c@x"}, {"email": "a@x"}])
    assert await s.raw() == before
    assert await s.platform.db.count("users") == 1


async def test_unique_index_refuses_clash_on_update(s: Stored) -> None:
    await s.platform.db.create_index("users", {"keys": {"email": 1}, "unique": True})
    await s.platform.db.insert_many(
        "users", [{"_id": "u1", "email": "a"}, {"_id": "u2", "email": "b"}, {"_id": "u3"}]
    )
    before = await s.raw()
    with pytest.raises(DuplicateKey):
        await s.platform.db.update_one("users", {"_id": "u2"}, {"$set": {"email": "a"}})
    with pytest.raises(DuplicateKey):
        await s.platform.db.update_many("users", {}, {"$set": {"email": "same"}})
    with pytest.raises(DuplicateKey):  # u3 has no email: null, like u1 would after this
        await s.platform.db.update_one("users", {"_id": "u1"}, {"$unset": {"email": ""}})
    assert await s.raw() == before
    assert [d.get("email") for d in await s.platform.db.find("users")] == ["a", "b", None]
    # a document keeping its own value, and two documents swapping theirs, are fine
    assert (await s.platform.db.update_one("users", {"_id": "u1"}, {"$set": {"email": "a"}}))[
        "matched"
    ] == 1
    await s.platform.db.update_one("users", {"_id": "u1"}, {"$set": {"email": "c"}})
    await s.platform.db.insert_one("users", {"_id": "u4", "email": "a"})


async def test_unique_values_moving_between_documents_in_one_write_are_fine(s: Stored) -> None:
    """Uniqueness holds once the whole write is applied, not after each document: renumbering
    (``$inc`` over every document) passes through a moment where two documents share a value,
    and no other write sees that moment. On PostgreSQL this was refused, document by document."""
    await s.platform.db.create_index("tasks", {"keys": {"pos": 1}, "unique": True})
    await s.platform.db.insert_many("tasks", [{"_id": f"t{i}", "pos": i} for i in range(1, 6)])
    assert (await s.platform.db.update_many("tasks", {}, {"$inc": {"pos": 1}}))["modified"] == 5
    assert [d["pos"] for d in await s.platform.db.find("tasks", sort={"_id": 1})] == [2, 3, 4, 5, 6]
    before = await s.raw()
    # ...but a write that ends with two documents sharing a value is refused whole: one
    # another document holds, or one it gives two of its own documents.
    with pytest.raises(DuplicateKey):
        await s.platform.db.update_many("tasks", {"pos": {"$gte": 5}}, {"$set": {"pos": 2}})
    with pytest.raises(DuplicateKey) as caught:
        await s.platform.db.update_many("tasks", {"pos": {"$gte": 5}}, {"$set": {"pos": 99}})
    assert (caught.value.index, caught.value.value) == ("pos_1", 99)
    assert await s.raw() == before
    await s.platform.db.insert_one("tasks", {"_id": "t0", "pos": 1})


async def test_unique_index_that_documents_violate_is_refused(s: Stored) -> None:
    await s.platform.db.insert_many(
        "users", [{"email": "a"}, {"email": "b"}, {"email": ["c", "a"]}, {"other": 1}]
    )
    before = await s.raw()
    with pytest.raises(DuplicateKey) as caught:
        await s.platform.db.create_index("users", {"keys": {"email": 1}, "unique": True})
    assert caught.value.index == "email_1"
    assert caught.value.value == "a"
    assert await s.raw() == before
    assert [i["name"] for i in await s.platform.db.list_indexes("users")] == ["_id_"]
    # sparse leaves out the document without email, and a non-unique index is fine
    await s.platform.db.delete_one("users", {"email": "c"})
    await s.platform.db.create_index(
        "users", {"keys": {"email": 1}, "unique": True, "sparse": True}
    )
    await s.platform.db.create_index("users", {"keys": {"other": 1}, "name": "o"})
    await s.platform.db.insert_one("users", {"other": 1})
    with pytest.raises(DuplicateKey):
        await s.platform.db.insert_one("users", {"email": "b"})


async def test_unique_index_holds_against_another_client(s: Stored) -> None:
    other = s.other()
    try:
        await s.platform.db.create_index("users", {"keys": {"email": 1}, "unique": True})
        results = await asyncio.gather(
            s.platform.db.insert_one("users", {"email": "same"}),
            other.db.insert_one("users", {"email": "same"}),
            return_exceptions=True,
        )
        assert sorted(type(r).__name__ for r in results) == ["DuplicateKey", "str"]
        await asyncio.sleep(0)
        assert [i["name"] for i in await other.db.list_indexes("users")] == ["_id_", "email_1"]
        assert await other.db.count("users") == 1
    finally:
        other.close()


async def test_indexes_survive_a_reopen(
    platform: Platform, data_dir: Path, clock: FakeClock
) -> None:
    await platform.db.create_index("users", {"keys": {"email": 1}, "unique": True})
    await platform.db.create_index("users", {"keys": {"gone": 1}})
    await platform.db.drop_index("users", "gone_1")
    await platform.db.insert_one("users", {"email": "a"})
    reopened = open_client(data_dir, clock=clock)
    try:
        assert [i["name"] for i in await reopened.db.list_indexes("users")] == ["_id_", "email_1"]
        with pytest.raises(DuplicateKey):
            await reopened.db.insert_one("users", {"email": "a"})
    finally:
        reopened.close()


# ------------------------------------------------- an index never changes an answer

FIELDS = ("a", "b", "tag")


def random_value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(12 if depth < 2 else 8)
    if choice == 0:
        return None
    if choice in (1, 2):
        return rng.randrange(4)
    if choice == 3:
        return rng.choice([1.0, 2.5, -0.0])
    if choice in (4, 5):
        return rng.choice(["x", "y", "z", ""])
    if choice == 6:
        return rng.choice([True, False])
    if choice == 7:
        return rng.randrange(3) * 1.0
    if choice in (8, 9):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {k: random_value(rng, depth + 1) for k in rng.sample(["c", "a", "x"], rng.randrange(3))}


def random_doc(rng: random.Random, i: int) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": f"d{i:04d}"}
    for field in FIELDS:
        if rng.random() < 0.8:
            doc[field] = random_value(rng)
    if rng.random() < 0.5:
        doc["b"] = [{"c": random_value(rng, 2)} for _ in range(rng.randrange(3))]
        if rng.random() < 0.3:
            doc["b"].append(rng.choice([{}, 5, [1]]))
    return doc


def random_filter(rng: random.Random) -> dict[str, Any]:
    scalar = rng.choice([None, 0, 1, 2, 1.0, 2.5, "x", "y", "", True, False])
    path = rng.choice(["a", "tag", "b.c", "b.0.c", "a.c", "b"])
    shape = rng.randrange(5)
    if shape == 0:
        return {path: scalar}
    if shape == 1:
        return {path: {"$eq": scalar}}
    if shape == 2:
        return {path: scalar, "tag": rng.choice(["x", "y", None, 1])}
    if shape == 3:
        return {"$and": [{path: scalar}, {"a": {"$ne": rng.choice([0, "x"])}}]}
    return {"a": scalar, "tag": {"$eq": rng.choice(["x", "y", 1, None])}}


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_indexed_find_equals_unindexed_find(
    platform: Platform, data_dir: Path, clock: FakeClock, seed: int
) -> None:
    rng = random.Random(seed)
    docs = [random_doc(rng, i) for i in range(300)]
    await platform.db.insert_many("plain", docs)
    for spec in (
        {"keys": {"a": 1}},
        {"keys": {"b.c": 1}},
        {"keys": {"b.0.c": 1}},
        {"keys": {"a.c": 1}},
        {"keys": {"b": 1}},
        {"keys": {"a": 1, "tag": -1}, "name": "a_tag"},
    ):
        await platform.db.create_index("indexed", spec)
    await platform.db.insert_many("indexed", docs[:150])  # half before, half after the index
    await platform.db.insert_many("indexed", docs[150:])
    await platform.db.create_index("indexed", {"keys": {"tag": 1}, "sparse": True})

    async def compare(client: Platform, rounds: int) -> None:
        for _ in range(rounds):
            query = random_filter(rng)
            expected = await client.db.find("plain", query)
            got = await client.db.find("indexed", query)
            assert got == expected, query
            assert await client.db.count("indexed", query) == len(expected)

    await compare(platform, 150)
    # keep the indexes honest through updates and deletes
    for _ in range(60):
        doc_id = f"d{rng.randrange(300):04d}"
        update = {"$set": {rng.choice(FIELDS): random_value(rng)}}
        for coll in ("plain", "indexed"):
            await platform.db.update_one(coll, {"_id": doc_id}, update)
    for coll in ("plain", "indexed"):
        await platform.db.delete_many(coll, {"tag": "x"})
    await compare(platform, 150)
    reopened = open_client(data_dir, clock=clock)
    try:
        await compare(reopened, 100)
    finally:
        reopened.close()


async def test_index_lookup_finds_a_document_missing_the_field_in_one_element(
    platform: Platform,
) -> None:
    docs: list[dict[str, Any]] = [
        {"_id": "1", "a": [{"b": 1}, {}]},
        {"_id": "2", "a": [{"b": 1}]},
        {"_id": "3"},
        {"_id": "4", "a": [{"b": 1}, 5]},
    ]
    await platform.db.insert_many("plain", docs)
    await platform.db.create_index("indexed", {"keys": {"a.b": 1}})
    await platform.db.insert_many("indexed", docs)
    for query in ({"a.b": None}, {"a.b": 1}):
        expected = await platform.db.find("plain", query)
        assert await platform.db.find("indexed", query) == expected
    assert [d["_id"] for d in await platform.db.find("indexed", {"a.b": None})] == ["1", "3", "4"]


async def test_a_bad_sort_is_refused_where_the_collection_exists(on_each_store: Platform) -> None:
    db = on_each_store.database
    assert await db.find("nothing-here", {}, sort={"n": 2}) == []
    await db.insert_one("c", {"n": 1})
    with pytest.raises(ValueError, match="sort direction"):
        await db.find("c", {}, sort={"n": 2})
