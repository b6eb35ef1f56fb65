"""The KV service through ``platform.kv``: values, namespaces, listing, expiry, events.

Every test runs on a data folder (the service's fold) and on PostgreSQL (its rows,
``store/postgres/kvschema.py``): the ``kv_store`` fixture."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from platform_shim.platform import Platform
from platform_shim.testing import FakeClock
from tests.support.eventlog import EVENT_KEYS
from tests.support.kv_backends import EventLog, KvStore, kv_store

__all__ = ["kv_store"]  # a fixture: every test here runs on a folder and on PostgreSQL


@pytest.fixture
async def platform(kv_store: KvStore, clock: FakeClock) -> AsyncIterator[Platform]:
    opened = kv_store.open(clock)
    yield opened
    opened.close()


@pytest.fixture
def events(kv_store: KvStore, platform: Platform) -> EventLog:
    return EventLog(kv_store, platform)


async def run_loop(platform: Platform) -> None:
    """Let callbacks the clock fired (the sweeper) reach the file."""
    for _ in range(5):
        await asyncio.sleep(0)
    await platform.kv.idle()  # a sweep of PostgreSQL's rows takes round trips
    await platform.stream.log.barrier()


# ------------------------------------------------------------------------- values


async def test_put_get_delete(platform: Platform) -> None:
    assert await platform.kv.get("users", "u1") is None
    await platform.kv.put("users", "u1", {"name": "Ada", "tags": ["x"], "n": 1.5})
    assert await platform.kv.get("users", "u1") == {"name": "Ada", "tags": ["x"], "n": 1.5}
    await platform.kv.delete("users", "u1")
    assert await platform.kv.get("users", "u1") is None


@pytest.mark.parametrize("value", [0, "", False, [], {}, "text", 12345678901234, -2.5, [None]])
async def test_every_json_value_round_trips(platform: Platform, value: Any) -> None:
    await platform.kv.put("ns", "k", value)
    got = await platform.kv.get("ns", "k")
    assert got == value
    assert type(got) is type(value)


async def test_none_value_is_stored_and_listed(platform: Platform, events: EventLog) -> None:
    await platform.kv.put("ns", "nothing", None)
    assert await platform.kv.get("ns", "nothing") is None
    listed = await platform.kv.list("ns")
    assert [key["name"] for key in listed["keys"]] == ["nothing"]
    (put,) = events.of_type("kv.put")
    assert put["data"]["value"] is None
    # a stored null is a key: deleting it is a change, unlike deleting a missing key
    await platform.kv.delete("ns", "nothing")
    assert len(events.of_type("kv.delete")) == 1
    assert (await platform.kv.list("ns"))["keys"] == []


async def test_overwrite_replaces_value_and_expiry(platform: Platform) -> None:
    await platform.kv.put("ns", "k", 1, ttl=60)
    await platform.kv.put("ns", "k", {"v": 2})
    assert await platform.kv.get("ns", "k") == {"v": 2}
    listed = await platform.kv.list("ns")
    assert listed["keys"] == [{"name": "k", "expiration": None}]


async def test_namespaces_are_isolated(platform: Platform) -> None:
    await platform.kv.put("a", "k", "in a")
    await platform.kv.put("b", "k", "in b")
    assert await platform.kv.get("a", "k") == "in a"
    assert await platform.kv.get("b", "k") == "in b"
    await platform.kv.delete("a", "k")
    assert await platform.kv.get("a", "k") is None
    assert await platform.kv.get("b", "k") == "in b"
    assert [k["name"] for k in (await platform.kv.list("b"))["keys"]] == ["k"]
    assert (await platform.kv.list("a"))["keys"] == []


async def test_namespace_object_is_bound_to_its_namespace(platform: Platform) -> None:
    invites = platform.kv.namespace("invites")
    assert invites.name == "invites"
    await invites.put("inv:1", {"email": "a@b.c"}, ttl=30)
    assert await invites.get("inv:1") == {"email": "a@b.c"}
    assert await platform.kv.get("invites", "inv:1") == {"email": "a@b.c"}
    assert await platform.kv.get("other", "inv:1") is None
    listed = await invites.list(prefix="inv:")
    assert [k["name"] for k in listed["keys"]] == ["inv:1"]
    assert listed["keys"][0]["expiration"] == platform.clock.now_ms() + 30_000
    await invites.delete("inv:1")
    assert await platform.kv.get("invites", "inv:1") is None
    with pytest.raises(ValueError, match="namespace"):
        platform.kv.namespace("")


async def test_delete_of_missing_key_emits_nothing(platform: Platform, events: EventLog) -> None:
    await platform.kv.put("ns", "present", 1)
    before = events.raw()
    await platform.kv.delete("ns", "absent")
    await platform.kv.delete("other-ns", "present")
    assert events.raw() == before
    await platform.kv.delete("ns", "present")
    await platform.kv.delete("ns", "present")  # the second is a no-op again
    assert len(events.of_type("kv.delete")) == 1


async def test_returned_values_are_copies(platform: Platform) -> None:
    value: dict[str, Any] = {"list": [1, 2], "nested": {"a": 1}}
    await platform.kv.put("ns", "k", value)
    value["list"].append("mutated after put")
    got = await platform.kv.get("ns", "k")
    got["list"].append(3)
    got["nested"]["a"] = 99
    assert await platform.kv.get("ns", "k") == {"list": [1, 2], "nested": {"a": 1}}


# ------------------------------------------------------------------------ events


async def test_every_write_is_one_event_line_of_the_documented_shape(
    platform: Platform, events: EventLog, clock: FakeClock
) -> None:
    await platform.kv.put("ns", "a", {"x": 1})
    clock.advance("1s")
    await platform.kv.put("ns", "b", [1], ttl=10)
    await platform.kv.delete("ns", "a")
    events = events.read()
    assert len(events) == 3
    for event in events:
        assert set(event) == EVENT_KEYS
        assert event["r"] == "kv"
        assert event["ns"] == "ns"
    assert [e["id"] for e in events] == sorted({e["id"] for e in events})
    put_a, put_b, delete_a = events
    start = clock.now_ms() - 1000
    assert (put_a["t"], put_a["k"], put_a["ts"]) == ("kv.put", "a", start)
    assert put_a["data"]["value"] == {"x": 1}
    assert put_a["data"]["expiration"] is None
    assert (put_b["t"], put_b["k"], put_b["ts"]) == ("kv.put", "b", start + 1000)
    assert put_b["data"] == {"value": [1], "expiration": start + 1000 + 10_000}
    assert (delete_a["t"], delete_a["k"]) == ("kv.delete", "a")
    assert delete_a["data"]["value"] == {"x": 1}


# --------------------------------------------------------------------- validation


class Opaque:
    pass


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        Opaque(),
        {"nested": [dt.date(2026, 1, 1)]},
        {1: "non-string key"},
        b"bytes",
    ],
    ids=["set", "datetime", "object", "nested-date", "int-key", "bytes"],
)
async def test_non_json_value_is_refused_naming_the_key(
    platform: Platform, events: EventLog, value: Any
) -> None:
    await platform.kv.put("ns", "existing", "keep")
    before = events.raw()
    with pytest.raises(TypeError, match="the-key"):
        await platform.kv.put("ns", "the-key", value)
    assert events.raw() == before
    assert await platform.kv.get("ns", "the-key") is None
    assert [k["name"] for k in (await platform.kv.list("ns"))["keys"]] == ["existing"]


@pytest.mark.parametrize("ttl", [0, -1, float("inf"), float("nan"), "10", True, [1]])
async def test_bad_ttl_is_a_value_error(platform: Platform, events: EventLog, ttl: Any) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await platform.kv.put("ns", "k", 1, ttl=ttl)
    assert events.raw() == b""


@pytest.mark.parametrize("name", ["", None, 5, "x" * 1025])
async def test_bad_namespace_or_key_is_a_value_error(
    platform: Platform, events: EventLog, name: Any
) -> None:
    with pytest.raises(ValueError, match="namespace"):
        await platform.kv.put(name, "k", 1)
    with pytest.raises(ValueError, match="key"):
        await platform.kv.put("ns", name, 1)
    with pytest.raises(ValueError, match="key"):
        await platform.kv.delete("ns", name)
    with pytest.raises(ValueError, match="namespace"):
        await platform.kv.list(name)
    with pytest.raises(ValueError, match="key"):
        await platform.kv.get("ns", name)
    assert events.raw() == b""


@pytest.mark.parametrize("cursor", ["!!!", "a", 5, "Zm9v!", "////"])
async def test_bad_cursor_is_a_value_error(platform: Platform, cursor: Any) -> None:
    await platform.kv.put("ns", "k", 1)
    with pytest.raises(ValueError, match="cursor"):
        await platform.kv.list("ns", cursor=cursor)


@pytest.mark.parametrize("limit", [0, -1, 1.5, "10", True])
async def test_bad_limit_is_a_value_error(platform: Platform, limit: Any) -> None:
    with pytest.raises(ValueError, match="limit"):
        await platform.kv.list("ns", limit=limit)


# ------------------------------------------------------------------------ listing


async def test_list_is_lexicographic_with_prefix(platform: Platform) -> None:
    names = ["b", "a", "a/b", "A", "aa", "é", "a0", "user:2", "user:10", "user:1", "ab"]
    await asyncio.gather(*(platform.kv.put("ns", name, name) for name in names))
    await platform.kv.put("other", "a-other", 1)
    listed = await platform.kv.list("ns")
    assert [k["name"] for k in listed["keys"]] == sorted(names)
    assert listed["list_complete"] is True
    assert listed["cursor"] is None
    by_prefix = await platform.kv.list("ns", prefix="user:")
    assert [k["name"] for k in by_prefix["keys"]] == ["user:1", "user:10", "user:2"]
    assert [k["name"] for k in (await platform.kv.list("ns", prefix="a"))["keys"]] == [
        "a",
        "a/b",
        "a0",
        "aa",
        "ab",
    ]
    assert (await platform.kv.list("ns", prefix="zzz"))["keys"] == []


async def test_limit_and_cursor_page_through_a_prefix(platform: Platform) -> None:
    names = [f"p:{i:02d}" for i in range(7)] + ["o:1", "q:1"]
    await asyncio.gather(*(platform.kv.put("ns", name, 1) for name in names))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await platform.kv.list("ns", prefix="p:", limit=3, cursor=cursor)
        pages += 1
        seen.extend(k["name"] for k in page["keys"])
        if page["list_complete"]:
            assert page["cursor"] is None
            break
        assert len(page["keys"]) == 3
        assert isinstance(page["cursor"], str)
        cursor = page["cursor"]
    assert seen == [f"p:{i:02d}" for i in range(7)]
    assert pages == 3


async def test_a_limit_past_any_count_lists_everything(platform: Platform) -> None:
    for key in ("b", "a", "c"):
        await platform.kv.put("ns", key, 1)
    listed = await platform.kv.list("ns", limit=10**30)
    assert ([k["name"] for k in listed["keys"]], listed["list_complete"]) == (["a", "b", "c"], True)


async def test_walking_2500_keys_with_limit_1000(platform: Platform) -> None:
    rng = random.Random(7)
    names = [f"key-{rng.randrange(10**9):09d}-{i}" for i in range(2500)]
    shuffled = names[:]
    rng.shuffle(shuffled)
    await asyncio.gather(*(platform.kv.put("big", name, i) for i, name in enumerate(shuffled)))
    await platform.kv.put("big-but-other", "key-0", 0)
    seen: list[str] = []
    cursor: str | None = None
    pages = []
    while True:
        page = await platform.kv.list("big", limit=1000, cursor=cursor)
        pages.append(len(page["keys"]))
        seen.extend(k["name"] for k in page["keys"])
        if page["list_complete"]:
            assert page["cursor"] is None
            break
        assert page["cursor"] is not None
        cursor = page["cursor"]
    assert pages == [1000, 1000, 500]
    assert seen == sorted(names)
    assert len(set(seen)) == 2500


async def test_keys_put_between_pages_are_seen_once(platform: Platform) -> None:
    await asyncio.gather(*(platform.kv.put("ns", f"k{i}", i) for i in range(0, 10, 2)))
    first = await platform.kv.list("ns", limit=2)
    assert [k["name"] for k in first["keys"]] == ["k0", "k2"]
    await platform.kv.put("ns", "k1", 1)  # before the cursor: not seen
    await platform.kv.put("ns", "k3", 3)  # after it: seen
    await platform.kv.delete("ns", "k4")
    rest = await platform.kv.list("ns", cursor=first["cursor"])
    assert [k["name"] for k in rest["keys"]] == ["k3", "k6", "k8"]


async def test_expired_keys_are_not_listed(platform: Platform, clock: FakeClock) -> None:
    await platform.kv.put("ns", "a", 1, ttl=1)
    await platform.kv.put("ns", "b", 2)
    await platform.kv.put("ns", "c", 3, ttl=100)
    clock.advance("2s")
    listed = await platform.kv.list("ns")
    assert [k["name"] for k in listed["keys"]] == ["b", "c"]
    assert listed["keys"][1]["expiration"] == clock.now_ms() - 2000 + 100_000
    # a page is still limited to live keys
    page = await platform.kv.list("ns", limit=1)
    assert [k["name"] for k in page["keys"]] == ["b"]
    rest = await platform.kv.list("ns", limit=1, cursor=page["cursor"])
    assert [k["name"] for k in rest["keys"]] == ["c"]


# ---------------------------------------------------------------------------- TTL


async def test_key_is_missing_after_its_ttl(platform: Platform, clock: FakeClock) -> None:
    await platform.kv.put("ns", "k", "v", ttl=1.5)
    clock.advance(1499)
    assert await platform.kv.get("ns", "k") == "v"
    clock.advance(1)
    assert await platform.kv.get("ns", "k") is None


async def test_sweeper_emits_one_kv_expired(
    platform: Platform, clock: FakeClock, events: EventLog
) -> None:
    platform.kv.start_sweeper()
    try:
        await platform.kv.put("ns", "k", {"v": 1}, ttl=1)
        await platform.kv.put("ns", "forever", 1)
        expiration = clock.now_ms() + 1000
        clock.advance("2s")
        await run_loop(platform)
        assert await platform.kv.get("ns", "k") is None
        expired = events.of_type("kv.expired")
        assert len(expired) == 1
        assert expired[0]["r"] == "kv"
        assert (expired[0]["ns"], expired[0]["k"]) == ("ns", "k")
        assert expired[0]["data"] == {"value": {"v": 1}, "expiration": expiration}
        # reading the expired key again, or more time passing, announces nothing more
        await platform.kv.get("ns", "k")
        clock.advance("1h")
        await run_loop(platform)
        assert len(events.of_type("kv.expired")) == 1
        assert await platform.kv.get("ns", "forever") == 1
    finally:
        platform.kv.stop_sweeper()


async def test_reput_with_new_ttl_outlives_the_old_timer(
    platform: Platform, clock: FakeClock, events: EventLog
) -> None:
    platform.kv.start_sweeper()
    try:
        await platform.kv.put("ns", "k", "old", ttl=1)
        clock.advance(500)
        await platform.kv.put("ns", "k", "new", ttl=10)
        clock.advance("2s")  # past the first expiry
        await run_loop(platform)
        assert events.of_type("kv.expired") == []
        assert await platform.kv.get("ns", "k") == "new"
        clock.advance("10s")
        await run_loop(platform)
        assert await platform.kv.get("ns", "k") is None
        (expired,) = events.of_type("kv.expired")
        assert expired["data"]["value"] == "new"
        # a re-put without ttl after that stays
        await platform.kv.put("ns", "k", "kept")
        clock.advance("1d")
        await run_loop(platform)
        assert await platform.kv.get("ns", "k") == "kept"
        assert len(events.of_type("kv.expired")) == 1
    finally:
        platform.kv.stop_sweeper()


async def test_the_expiry_heap_stays_bounded_by_the_keys_that_can_expire(
    platform: Platform, clock: FakeClock, events: EventLog
) -> None:
    platform.kv.start_sweeper()
    try:
        # A session refreshed on every request: one live key, thousands of TTL puts; and keys
        # put with a TTL and then deleted or overwritten without one.
        for round_ in range(30):
            clock.advance(1)  # each round's session expiry is a new instant
            await asyncio.gather(
                *(platform.kv.put("ns", "session", [round_, i], ttl=3600) for i in range(100)),
                *(platform.kv.put("ns", f"tmp{i}", i, ttl=60) for i in range(40)),
            )
            await asyncio.gather(*(platform.kv.delete("ns", f"tmp{i}") for i in range(20)))
            await asyncio.gather(*(platform.kv.put("ns", f"tmp{i}", i) for i in range(20, 40)))
        await platform.kv.put("ns", "short", 1, ttl=1)
        state = platform.kv_state
        assert len(state.expiring) <= 2 * 2 + 1024  # "session" and "short"; not 4,201 entries
        # On PostgreSQL the rows hold the expirations: this process holds none.
        assert state.timed == (2 if state.table is None else 0)
        # Rebuilding the heap lost no expiry: each key still goes at its own time, once.
        clock.advance("2s")
        await run_loop(platform)
        assert [(e["k"]) for e in events.of_type("kv.expired")] == ["short"]
        assert await platform.kv.get("ns", "session") == [29, 99]
        clock.advance("1h")
        await run_loop(platform)
        assert [(e["k"]) for e in events.of_type("kv.expired")] == ["short", "session"]
        assert await platform.kv.get("ns", "tmp25") == 25
        assert state.timed == 0
    finally:
        platform.kv.stop_sweeper()


async def test_put_without_ttl_cancels_the_expiry(
    platform: Platform, clock: FakeClock, events: EventLog
) -> None:
    platform.kv.start_sweeper()
    try:
        await platform.kv.put("ns", "k", 1, ttl=1)
        await platform.kv.put("ns", "k", 2)
        clock.advance("5s")
        await run_loop(platform)
        assert await platform.kv.get("ns", "k") == 2
        assert events.of_type("kv.expired") == []
    finally:
        platform.kv.stop_sweeper()


async def test_expiry_survives_a_reopen(kv_store: KvStore, clock: FakeClock) -> None:
    first = kv_store.open(clock)
    try:
        await first.kv.put("ns", "short", 1, ttl=5)
        await first.kv.put("ns", "long", 2, ttl=500)
    finally:
        first.close()
    clock.advance("10s")
    second = kv_store.open(clock)
    events = EventLog(kv_store, second)
    try:
        assert await second.kv.get("ns", "short") is None
        assert await second.kv.get("ns", "long") == 2
        second.kv.start_sweeper()
        clock.advance(0)  # a FakeClock fires due timers when it is advanced
        await run_loop(second)
        (expired,) = events.of_type("kv.expired")
        assert expired["k"] == "short"
    finally:
        second.kv.stop_sweeper()
        second.close()


async def test_a_key_whose_expiry_fails_stops_no_other_expiry(
    platform: Platform,
    clock: FakeClock,
    events: EventLog,
    kv_store: KvStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Fault injection: expiring one key raises (a bug, say); the sweeper must go on. The
    # folder's sweeper expires a key with _expire, PostgreSQL's (services/kvrows.py) announces
    # a row with _announce.
    target: Any = platform.kv if kv_store.name == "folder" else platform.kv._rows
    name = "_expire" if kv_store.name == "folder" else "_announce"
    real_expire = getattr(target, name)

    def expire(ns: str, key: str, *rest: Any) -> Any:
        if key == "bad":
            raise RuntimeError("injected")
        return real_expire(ns, key, *rest)

    monkeypatch.setattr(target, name, expire)
    platform.kv.start_sweeper()
    try:
        await platform.kv.put("ns", "bad", 1, ttl=1)
        await platform.kv.put("ns", "good", 2, ttl=1)
        await platform.kv.put("ns", "later", 3, ttl=5)
        clock.advance("2s")
        await run_loop(platform)
        clock.advance("5s")
        await run_loop(platform)
        assert sorted(event["k"] for event in events.of_type("kv.expired")) == [
            "good",
            "later",
        ]
    finally:
        platform.kv.stop_sweeper()
