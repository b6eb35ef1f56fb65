"""The KV rows on PostgreSQL (``store/postgres/kvschema.py``, ``kvtable.py``): kept by the events
log's trigger in each event's commit, backfilled by the migration, the only copy of the keys
(the service folds none on this store), kept through compaction and a restart.

That the KV API answers as on a folder is ``tests/platform_shim/services/test_kv.py``'s job (its
``platform`` fixture runs on both stores).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from platform_shim.platform import Platform, open_client
from platform_shim.services.compaction import compact_stream
from platform_shim.store import open_store
from platform_shim.store.postgres.connect import connect
from platform_shim.store.postgres.kvtable import PostgresKv, prefix_end
from platform_shim.store.postgres.schema import MIGRATIONS, migrate
from platform_shim.testing import FakeClock
from tests.support.postgres import PostgresDatabase

# Values whose JSON text is easy to get subtly wrong: escapes, a NUL, non-ASCII, big and small
# numbers, key order, nesting.
TRICKY = [
    {"z": 1, "a": [1.5, -0.0, 1e300, None, True], "\u00e9": '\u0000 \\u0000 "q" \U0001f600'},
    "line\nbreak\ttab\\",
    2**63 - 1,
    -(2**63),
    0.1,
    [],
    {},
    None,
]


@pytest.fixture
async def platform(postgres_db: PostgresDatabase) -> AsyncIterator[Platform]:
    opened = Platform(open_store(postgres_db.url), FakeClock())
    yield opened
    opened.close()


def table(platform: Platform) -> PostgresKv:
    kv = platform.store.kv_table()
    assert isinstance(kv, PostgresKv)
    return kv


async def rows(platform: Platform) -> list[tuple[str, str, str, int | None]]:
    found = await table(platform)._fetch(
        "SELECT ns, key, value, expiration FROM platform.kv_entries ORDER BY ns, key"
    )
    return [(r["ns"], r["key"], r["value"], r["expiration"]) for r in found]


async def test_the_rows_follow_every_write_and_hold_the_text_a_folder_returns(
    platform: Platform, tmp_path: Path
) -> None:
    folder = open_client(tmp_path / "data")
    try:
        for n, value in enumerate(TRICKY):
            await platform.kv.put("ns", f"k{n}", value)
            await folder.kv.put("ns", f"k{n}", value)
            assert await platform.kv.get_raw("ns", f"k{n}") == await folder.kv.get_raw(
                "ns", f"k{n}"
            )
            assert await platform.kv.get("ns", f"k{n}") == orjson.loads(orjson.dumps(value))
    finally:
        folder.close()
    await platform.kv.put("ns", "t", 1, ttl=2)
    expiration = platform.clock.now_ms() + 2000
    assert (await rows(platform))[-1] == ("ns", "t", "1", expiration)
    await platform.kv.delete("ns", "k0")
    assert [r[1] for r in await rows(platform)] == [f"k{n}" for n in range(1, len(TRICKY))] + ["t"]
    # The fold keeps nothing on this store.
    assert platform.kv_state.spaces == {}


async def test_an_expiry_removes_only_the_version_it_names(platform: Platform) -> None:
    clock = platform.clock
    assert isinstance(clock, FakeClock)
    platform.kv.start_sweeper()
    try:
        await platform.kv.put("ns", "k", "old", ttl=1)
        await platform.kv.put("ns", "stays", "x", ttl=3600)
        clock.advance("2s")
        assert await platform.kv.get("ns", "k") is None
        for _ in range(50):
            if len(await rows(platform)) == 1:
                break
            await platform.stream.log.barrier()
        assert [r[1] for r in await rows(platform)] == ["stays"]
        expired = [e for e in platform.stream.events if e.t == "kv.expired"]
        assert [(e.ns, e.k) for e in expired] == [("ns", "k")]
    finally:
        platform.kv.stop_sweeper()
    # A kv.expired naming an older expiration leaves a newer put alone (as the fold does).
    await platform.kv.put("ns", "k", "new", ttl=60)
    await platform.stream.submit(
        "kv.expired", "kv", "ns", "k", b'{"value":"old","expiration":1}', None
    )
    assert await platform.kv.get("ns", "k") == "new"


async def test_a_nul_in_a_key_or_namespace_is_refused_on_this_store(platform: Platform) -> None:
    with pytest.raises(ValueError, match="NUL"):
        await platform.kv.put("ns", "a\x00b", 1)
    with pytest.raises(ValueError, match="NUL"):
        await platform.kv.put("n\x00s", "k", 1)
    await platform.kv.put("ns", "a", 1)
    await platform.kv.put("ns", "b", 2)
    assert await platform.kv.get("ns", "a\x00b") is None
    assert (await platform.kv.list("ns", prefix="a\x00"))["keys"] == []
    # A cursor past "a\x00..." goes on after "a", as on a folder.
    listed = await platform.kv.list("ns", cursor=_cursor("a\x00z"))
    assert [k["name"] for k in listed["keys"]] == ["b"]


def _cursor(key: str) -> str:
    import base64

    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def test_prefix_end_bounds_every_string_with_the_prefix() -> None:
    assert prefix_end("ab") == "ac"
    assert prefix_end("a\U0010ffff") == "b"
    assert prefix_end("\U0010ffff") is None
    assert prefix_end("a\ud7ff") == "a\ue000"
    for s in ["ab", "ab\U0010ffff\U0010ffff", "ab\x7f"]:
        assert "ab" <= s < "ac"


async def test_compaction_and_a_restart_keep_every_key(postgres_db: PostgresDatabase) -> None:
    clock = FakeClock()
    first = Platform(open_store(postgres_db.url), clock)
    try:
        for n in range(300):
            await first.kv.put(f"ns{n % 3}", f"k{n:03}", {"n": n}, ttl=3600 if n % 2 else None)
        for n in range(0, 300, 7):
            await first.kv.delete(f"ns{n % 3}", f"k{n:03}")
        before = {ns: (await first.kv.list(ns, limit=1000))["keys"] for ns in ("ns0", "ns1", "ns2")}
        await compact_stream(first.store, first.stream)
        snapshot = list(first.store.read_snapshot("kv"))
        assert len(snapshot) == 1 and "checkpoint" in snapshot[0]  # the header only
        await first.kv.put("ns0", "after", 1)
    finally:
        first.close()
    second = Platform(open_store(postgres_db.url), clock)
    try:
        after = {ns: (await second.kv.list(ns, limit=1000))["keys"] for ns in ("ns0", "ns1", "ns2")}
        assert [k for k in after["ns0"] if k["name"] != "after"] == before["ns0"]
        assert (after["ns1"], after["ns2"]) == (before["ns1"], before["ns2"])
        assert await second.kv.get("ns0", "after") == 1
        assert await second.kv.get("ns1", "k001") == {"n": 1}
        assert await second.kv.namespace_sizes() == {ns: len(keys) for ns, keys in after.items()}
    finally:
        second.close()


async def test_the_migration_backfills_from_the_snapshot_and_the_lines(
    postgres_db: PostgresDatabase,
) -> None:
    conn = await connect(postgres_db.url)
    try:
        await migrate(conn, MIGRATIONS[:3])
        snapshot = b"\n".join(
            [
                orjson.dumps({"checkpoint": 2, "format": 1}),
                b'{"ns":"a","k":"old","v":{"z":1,"a":2},"exp":null}',
                b'{"ns":"a","k":"gone","v":1,"exp":null}',
                b'{"ns":"a","k":"timed","v":"\\u0000","exp":50}',
                b"not json",
            ]
        )
        await conn.execute("INSERT INTO platform.snapshots VALUES ('kv', $1)", snapshot)
        lines: list[dict[str, Any]] = [
            {"id": 2, "t": "kv.put", "r": "kv", "ns": "a", "k": "old",
             "data": {"value": 0, "expiration": None}, "ts": 0},
            {"id": 3, "t": "kv.put", "r": "kv", "ns": "a", "k": "new",
             "data": {"value": [1, "x"], "expiration": 99}, "ts": 0},
            {"id": 4, "t": "kv.delete", "r": "kv", "ns": "a", "k": "gone",
             "data": {"value": 1}, "ts": 0},
            {"id": 5, "t": "kv.expired", "r": "kv", "ns": "a", "k": "timed",
             "data": {"value": "\u0000", "expiration": 49}, "ts": 0},
        ]  # fmt: skip
        await conn.execute("INSERT INTO platform.logs (name) VALUES ('events')")
        for seq, line in enumerate(lines, 1):
            await conn.execute(
                "INSERT INTO platform.log_lines VALUES ('events', 1, $1, $2)",
                seq,
                orjson.dumps(line),
            )
        await migrate(conn)
        found = await conn.fetch(
            "SELECT key, value, expiration FROM platform.kv_entries ORDER BY key"
        )
        # Line 2 is in the snapshot already (checkpoint 2): the snapshot's version stays; the
        # expiry of an older version leaves "timed" alone.
        assert [(r["key"], r["value"], r["expiration"]) for r in found] == [
            ("new", '[1,"x"]', 99),
            ("old", '{"z":1,"a":2}', None),
            ("timed", '"\\u0000"', 50),
        ]
        assert await conn.fetchval("SELECT to_regclass('platform.kv')") is None
    finally:
        await conn.close()


class _PutAfterDue:
    """The real table, but right after the sweeper reads the expired keys, another host puts
    the first of them again (with a later expiration): the race between the read and the
    announcement, made certain."""

    def __init__(self, table: PostgresKv, racer: Platform) -> None:
        self._table = table
        self._racer = racer
        self.raced: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    async def due(self, now: int, limit: int) -> list[tuple[str, str, bytes, int]]:
        found = await self._table.due(now, limit)
        if found and not self.raced:
            ns, key = found[0][0], found[0][1]
            await self._racer.kv.put(ns, key, "again", ttl=3600)
            self.raced.append(key)
        return found


async def test_a_put_racing_the_sweeper_is_not_announced_as_expired(
    postgres_db: PostgresDatabase,
) -> None:
    clock = FakeClock()
    worker = Platform(open_store(postgres_db.url), clock)
    other = Platform(open_store(postgres_db.url), clock)
    try:
        await worker.kv.put("ns", "a", 1, ttl=1)
        await worker.kv.put("ns", "b", 2, ttl=1)
        racing = _PutAfterDue(table(worker), other)
        rows_sweeper: Any = worker.kv._rows
        rows_sweeper._table = racing
        worker.kv.start_sweeper()
        clock.advance("2s")
        for _ in range(200):
            await worker.kv.idle()
            if racing.raced and [r[1] for r in await rows(worker)] == racing.raced:
                break
        assert racing.raced == ["a"]
        # The put that raced the announcement stays, and no event says its key expired: a
        # handler of kv changes would act on an expiry that did not happen.
        assert await other.kv.get("ns", "a") == "again"
        await worker.kv.idle()
        expired = [(e.ns, e.k) for e in worker.stream.events if e.t == "kv.expired"]
        assert expired == [("ns", "b")]
        # Once the new expiration passes, the key is announced after all.
        clock.advance("2h")
        for _ in range(200):
            await worker.kv.idle()
            if await rows(worker) == []:
                break
        expired = [(e.ns, e.k) for e in worker.stream.events if e.t == "kv.expired"]
        assert expired == [("ns", "b"), ("ns", "a")]
    finally:
        worker.kv.stop_sweeper()
        worker.close()
        other.close()


class _WriteAfterGet:
    """The real table, but right after the service reads a key, another host writes it once."""

    def __init__(self, table: PostgresKv, write: Any) -> None:
        self._table = table
        self._write = write
        self.raced = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)

    async def get(self, ns: str, key: str) -> tuple[bytes, int | None] | None:
        found = await self._table.get(ns, key)
        if not self.raced:
            self.raced = True
            await self._write()
        return found


@pytest.mark.parametrize("racer", ["delete", "put"])
async def test_a_delete_racing_another_hosts_write_is_announced_once_with_the_value_it_removed(
    postgres_db: PostgresDatabase, racer: str
) -> None:
    clock = FakeClock()
    first = Platform(open_store(postgres_db.url), clock)
    other = Platform(open_store(postgres_db.url), clock)
    try:
        await first.kv.put("ns", "k", "old")

        async def write() -> None:
            if racer == "delete":
                await other.kv.delete("ns", "k")
            else:
                await other.kv.put("ns", "k", "new")

        first.kv._table = _WriteAfterGet(table(first), write)  # type: ignore[assignment]
        await first.kv.delete("ns", "k")
        assert await other.kv.get("ns", "k") is None
        await first.stream.log.barrier()
        first.stream.fresh()
        deletes = [e.to_dict()["data"] for e in first.stream.events if e.t == "kv.delete"]
        # One announcement per removal, each naming the value it removed.
        assert deletes == ([{"value": "old"}] if racer == "delete" else [{"value": "new"}])
    finally:
        first.close()
        other.close()
