"""The store contract, one suite run against every implementation (as huey's storage tests).

Each test gets ``connect``: a function opening another connection to the same state, what a
second process opening the same data folder is (for the memory store: a second ``MemoryStore``
on the same ``MemorySpace``). A backend joins the suite by adding itself to ``BACKENDS``.
Implementation details (torn lines, fsync, file names) are tested beside each implementation.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from platform_shim.errors import DataDirLocked, StoreError
from platform_shim.store import FileStore, MemorySpace, MemoryStore, Store, open_store
from platform_shim.store.archive import ArchiveEntry

Connect = Callable[[], Store]
BACKENDS = ["file", "memory", "postgres"]


@pytest.fixture(params=BACKENDS)
def connect(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Connect]:
    location: Any
    if request.param == "file":
        location = tmp_path / "data"
    elif request.param == "memory":
        location = MemorySpace("memory:test")
    else:  # a fresh database of the session's PostgreSQL server (tests/support/postgres.py)
        location = request.getfixturevalue("postgres_db").url
    opened: list[Store] = []

    def opener() -> Store:
        store = open_store(location)
        opened.append(store)
        return store

    yield opener
    for store in reversed(opened):
        store.close()


class Recorder:
    """A consumer keeping every record it is handed, and how often it was reset."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.resets = 0

    def apply(self, record: dict[str, Any], line: bytes) -> None:
        assert orjson.loads(line) == record
        self.records.append(record)

    def reset(self) -> None:
        self.records.clear()
        self.resets += 1


def record(value: dict[str, Any], sink: list[dict[str, Any]] | None = None) -> Any:
    """A prepare writing ``value``; its apply appends it to ``sink`` and returns ``value["n"]``."""

    def prepare() -> tuple[bytes, Callable[[], int]]:
        def apply() -> int:
            if sink is not None:
                sink.append(value)
            return int(value["n"])

        return orjson.dumps(value), apply

    return prepare


def replay(connect: Connect, name: str = "t") -> list[dict[str, Any]]:
    """What a fresh connection loads from log ``name``."""
    consumer = Recorder()
    connect().open_log(name, consumer)
    return consumer.records


# ------------------------------------------------------------------------------- factory


def test_open_store_picks_the_implementation_from_the_location(tmp_path: Path) -> None:
    file_store = open_store(tmp_path / "data")
    memory_store = open_store("memory:")
    try:
        assert isinstance(file_store, FileStore)
        assert isinstance(memory_store, MemoryStore)
        assert memory_store.location == "memory:"
    finally:
        file_store.close()
        memory_store.close()
    with pytest.raises(ValueError, match="names no database"):
        open_store("postgresql://nowhere")
    with pytest.raises(ValueError, match="mysql://u:\\*\\*\\*@db/x"):
        open_store("mysql://u:secret@db/x")
    with pytest.raises(ValueError, match="durability"):
        open_store("memory:", durability="sometimes")  # type: ignore[arg-type]


def test_two_memory_locations_do_not_share_state() -> None:
    first, second = open_store("memory:"), open_store("memory:")
    first.acquire_worker_lock()
    second.acquire_worker_lock()  # a new space each time: no clash
    first.close()
    second.close()


# ---------------------------------------------------------------------------------- logs


async def test_submissions_are_written_and_applied_in_order(connect: Connect) -> None:
    applied: list[dict[str, Any]] = []
    own = Recorder()
    log = connect().open_log("t", own)
    results = await asyncio.gather(*(log.submit(record({"n": i}, applied)) for i in range(50)))
    assert results == list(range(50))
    assert [r["n"] for r in applied] == list(range(50))
    # A connection's own records reach its state through their callbacks, not the consumer.
    assert own.records == []
    assert [r["n"] for r in replay(connect)] == list(range(50))


async def test_seq_follows_from_the_state_each_prepare_sees(connect: Connect) -> None:
    """``prepare`` runs caught up with every other writer, so a seq from the state is unique."""

    class Seq(Recorder):
        last = 0

        def apply(self, record: dict[str, Any], line: bytes) -> None:
            super().apply(record, line)
            self.last = max(self.last, record["seq"])

    states = [Seq(), Seq()]
    logs = [connect().open_log("t", state) for state in states]

    def next_seq(state: Seq) -> Any:
        def prepare() -> tuple[bytes, Callable[[], int]]:
            seq = state.last + 1

            def apply() -> int:
                state.last = seq
                return seq

            return orjson.dumps({"seq": seq}), apply

        return prepare

    futures = [logs[i % 2].submit(next_seq(states[i % 2])) for i in range(20)]
    assert sorted(await asyncio.gather(*futures)) == list(range(1, 21))
    assert [r["seq"] for r in replay(connect)] == list(range(1, 21))


async def test_a_prepare_returning_none_writes_nothing(connect: Connect) -> None:
    log = connect().open_log("t", Recorder())
    await log.submit(record({"n": 1}))
    size, lines = log.size(), log.line_count()
    applied: list[int] = []

    def nothing() -> tuple[None, Callable[[], int]]:
        return None, lambda: applied.append(1) or 7

    assert await log.submit(nothing) == 7  # the callback still runs: a no-op has a result
    assert await log.submit(lambda: (None, None)) is None
    assert applied == [1]
    assert (log.size(), log.line_count()) == (size, lines)
    assert [r["n"] for r in replay(connect)] == [1]


async def test_a_raising_prepare_fails_alone(connect: Connect) -> None:
    log = connect().open_log("t", Recorder())

    def broken() -> tuple[bytes, None]:
        raise ValueError("duplicate key k")

    outcomes = await asyncio.gather(
        log.submit(record({"n": 1})),
        log.submit(broken),
        log.submit(record({"n": 3})),
        return_exceptions=True,
    )
    assert outcomes[0] == 1 and outcomes[2] == 3
    assert isinstance(outcomes[1], ValueError) and "duplicate key k" in str(outcomes[1])
    assert [r["n"] for r in replay(connect)] == [1, 3]


async def test_several_records_in_one_prepare_are_separate_records(connect: Connect) -> None:
    log = connect().open_log("t", Recorder())
    await log.submit(lambda: (b'{"n":1}\n{"n":2}', None))
    assert log.line_count() == 2
    assert [r["n"] for r in replay(connect)] == [1, 2]


async def test_barrier_returns_once_everything_is_written(connect: Connect) -> None:
    log = connect().open_log("t", Recorder())
    futures = [log.submit(record({"n": i}), durable=False) for i in range(5)]
    await asyncio.gather(*futures)
    await log.barrier()
    await log.barrier()  # nothing pending: returns at once
    assert not log.has_pending()
    assert len(replay(connect)) == 5


async def test_has_pending_until_the_commit_cycle_ran(connect: Connect) -> None:
    log = connect().open_log("t", Recorder())
    future = log.submit(record({"n": 1}))
    assert log.has_pending()
    await future
    assert not log.has_pending()


async def test_another_connection_replays_on_open_and_catches_up_on_refresh(
    connect: Connect,
) -> None:
    writer = connect().open_log("t", Recorder())
    for i in range(3):
        await writer.submit(record({"n": i}))
    reader_state = Recorder()
    reader = connect().open_log("t", reader_state)
    assert reader_state.resets == 1 and [r["n"] for r in reader_state.records] == [0, 1, 2]
    await writer.submit(record({"n": 3}))
    await writer.submit(record({"n": 4}))
    assert reader.refresh() == 2
    assert reader.refresh() == 0
    assert [r["n"] for r in reader_state.records] == [0, 1, 2, 3, 4]
    await writer.submit(record({"n": 5}))
    reader.fresh()  # at most once per loop turn, but this is the first in this turn
    assert reader_state.records[-1]["n"] == 5


async def test_a_write_catches_up_with_other_writers_first(connect: Connect) -> None:
    first_state, second_state = Recorder(), Recorder()
    first = connect().open_log("t", first_state)
    second = connect().open_log("t", second_state)
    await first.submit(record({"n": 1}))
    seen: list[int] = []

    def prepare() -> tuple[bytes, None]:
        seen.extend(r["n"] for r in second_state.records)
        return orjson.dumps({"n": 2}), None

    await second.submit(prepare)
    assert seen == [1]


async def test_an_unreadable_record_is_skipped_alone(connect: Connect) -> None:
    class Picky(Recorder):
        def apply(self, record: dict[str, Any], line: bytes) -> None:
            if record["n"] == 2:
                raise KeyError("wanted")
            super().apply(record, line)

    log = connect().open_log("t", Recorder())
    for i in range(1, 4):
        await log.submit(record({"n": i}))
    picky = Picky()
    connect().open_log("t", picky)
    assert [r["n"] for r in picky.records] == [1, 3]


async def test_size_and_line_count_grow_with_appends(connect: Connect) -> None:
    log = connect().open_log("t", Recorder())
    assert (log.size(), log.line_count()) == (0, 0)
    await log.submit(record({"n": 1}))
    one = log.size()
    assert one >= len(orjson.dumps({"n": 1})) and log.line_count() == 1
    await log.submit(record({"n": 2}))
    assert log.size() > one and log.line_count() == 2


def test_a_log_is_opened_once_per_connection(connect: Connect) -> None:
    store = connect()
    store.open_log("t", Recorder())
    with pytest.raises(ValueError, match="already open"):
        store.open_log("t", Recorder())


# ---------------------------------------------------------------------------- compaction


async def test_rewrite_keeps_the_live_records_and_every_append_made_during_it(
    connect: Connect,
) -> None:
    state = Recorder()
    log = connect().open_log("t", state)
    for i in range(10):
        await log.submit(record({"n": i}))
    reader_state = Recorder()
    reader = connect().open_log("t", reader_state)
    during: list[asyncio.Future[int]] = []
    renamed: list[bool] = []

    def take() -> list[bytes]:
        # Submitted while the rewrite is under way: it must come after the live lines.
        during.append(log.submit(record({"n": 100})))
        return [orjson.dumps({"n": i}) for i in range(0, 10, 2)]

    await log.rewrite(take, before_rename=lambda: renamed.append(True))
    await asyncio.gather(*during)
    await log.submit(record({"n": 101}))
    expected = [0, 2, 4, 6, 8, 100, 101]
    assert renamed == [True]
    assert log.line_count() == len(expected)
    assert [r["n"] for r in replay(connect)] == expected
    # A reader that loaded the old content replays the new one on its next refresh.
    reader.refresh()
    reader.refresh()
    assert [r["n"] for r in reader_state.records] == expected


async def test_rewrite_shrinks_the_log(connect: Connect) -> None:
    log = connect().open_log("t", Recorder())
    for i in range(20):
        await log.submit(record({"n": i, "pad": "x" * 100}))
    before = log.size()
    await log.rewrite(lambda: [orjson.dumps({"n": 19})])
    assert log.size() < before
    assert [r["n"] for r in replay(connect)] == [19]


async def test_one_rewrite_at_a_time(connect: Connect) -> None:
    log = connect().open_log("t", Recorder())
    await log.submit(record({"n": 1}))
    first = asyncio.ensure_future(log.rewrite(lambda: [orjson.dumps({"n": 1})]))
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="already being rewritten"):
        await log.rewrite(lambda: [])
    await first


# ----------------------------------------------------------------------------- snapshots


def test_snapshots_round_trip_and_are_replaced_whole(connect: Connect) -> None:
    store = connect()
    assert list(store.read_snapshot("kv")) == []
    store.write_snapshot("kv", [orjson.dumps({"h": 1}), orjson.dumps({"k": "a"})])
    assert list(connect().read_snapshot("kv")) == [{"h": 1}, {"k": "a"}]
    store.write_snapshot("kv", (orjson.dumps({"h": n}) for n in range(2, 4)))
    assert list(connect().read_snapshot("kv")) == [{"h": 2}, {"h": 3}]
    assert list(store.read_snapshot("db")) == []


# --------------------------------------------------------------------------------- blobs


def test_blobs_put_read_list_delete(connect: Connect) -> None:
    store = connect()
    data = b"\x00bytes of an object\xff"
    digest = store.put_blob(data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert store.put_blob(data) == digest  # the same bytes, the same blob
    other = connect()
    assert other.read_blob(digest) == data
    listed = dict(other.blob_digests())
    assert list(listed) == [digest] and isinstance(listed[digest], float)
    other.delete_blob(digest)
    assert store.read_blob(digest) is None
    assert list(store.blob_digests()) == []
    store.delete_blob(digest)  # deleting what is gone is fine
    with pytest.raises(ValueError, match="not a blob digest"):
        store.read_blob("../../etc/passwd")


# ------------------------------------------------------------------------------- archive


def _entry(key: str, order: int, at: int, *tags: str) -> ArchiveEntry:
    return ArchiveEntry(
        key=key,
        order=order,
        at=at,
        tags=tags,
        head=orjson.dumps({"key": key}),
        body=orjson.dumps([key, order]),
    )


def test_archive_add_find_page_count(connect: Connect) -> None:
    writer = connect().open_archive("runs-archive", writable=True)
    entries = [_entry(f"r{i}", i, 1000 + i, "w:a" if i % 2 else "w:b") for i in range(1, 7)]
    assert writer.add(entries) == 6
    assert writer.add([entries[0], _entry("r7", 7, 1007, "w:a")]) == 1  # the first copy wins
    reader = connect().open_archive("runs-archive", writable=False)
    assert reader.known(["r1", "r7", "nope"]) == {"r1", "r7"}
    assert reader.order_of("r3") == 3 and reader.order_of("nope") is None
    assert reader.head("r2") == {"key": "r2"} and reader.head("nope") is None
    assert reader.entry("r2") == ({"key": "r2"}, ["r2", 2])
    assert reader.entry("nope") is None
    assert [key for _, key, _ in reader.page(None, None, 3)] == ["r7", "r6", "r5"]
    assert [key for _, key, _ in reader.page("w:a", None, 10)] == ["r7", "r5", "r3", "r1"]
    assert [(o, k, h) for o, k, h in reader.page("w:a", 5, 1)] == [(3, "r3", {"key": "r3"})]
    assert (reader.count(), reader.count("w:a"), reader.count("w:b")) == (7, 4, 3)
    assert reader.count("w:none") == 0
    assert sorted(key for key, _, _ in reader) == [f"r{i}" for i in range(1, 8)]
    with pytest.raises(StoreError):
        reader.add([_entry("r9", 9, 1009)])


def test_archive_prune_and_oldest(connect: Connect) -> None:
    archive = connect().open_archive("runs-archive", writable=True)
    assert archive.oldest() is None
    archive.add([_entry(f"r{i}", i, 1000 * i, "w:a") for i in range(1, 6)])
    archive.sync()
    assert archive.oldest() == 1000
    assert archive.prune(3000) == 2
    assert archive.oldest() == 3000
    assert archive.known(["r1", "r2", "r3"]) == {"r3"}
    assert (archive.count(), archive.count("w:a")) == (3, 3)
    assert [key for _, key, _ in archive.page("w:a", None, 10)] == ["r5", "r4", "r3"]
    assert archive.prune(3000) == 0


def test_archive_names_are_checked(connect: Connect) -> None:
    with pytest.raises(ValueError, match="not an archive name"):
        connect().open_archive("../x", writable=True)


# ------------------------------------------------------------------------------- secrets


def test_a_secret_is_made_once_and_shared(connect: Connect) -> None:
    first, second = connect(), connect()
    assert first.secret("signing", create=False) is None  # asking does not make it
    made = first.secret("signing", create=True)
    assert made is not None and len(made) >= 32
    assert second.secret("signing", create=True) == made  # the second asker reads the first's
    assert connect().secret("signing", create=False) == made
    assert first.secret("other", create=True) != made
    with pytest.raises(ValueError, match="not a secret name"):
        first.secret("../x", create=True)


# -------------------------------------------------------------- worker lock and advert


def test_one_worker_at_a_time(connect: Connect) -> None:
    first, second = connect(), connect()
    assert first.worker_pid() is None
    first.acquire_worker_lock()
    assert second.worker_pid() == os.getpid() == first.worker_pid()
    with pytest.raises(DataDirLocked) as caught:
        second.acquire_worker_lock()
    assert caught.value.pid == os.getpid()
    first.release_worker_lock()
    assert second.worker_pid() is None
    second.acquire_worker_lock()
    with pytest.raises(DataDirLocked):
        first.acquire_worker_lock()


def test_closing_the_worker_releases_the_lock(connect: Connect) -> None:
    first = connect()
    first.acquire_worker_lock()
    first.close()
    second = connect()
    second.acquire_worker_lock()
    assert second.worker_pid() == os.getpid()


def test_the_advert_is_the_live_workers(connect: Connect) -> None:
    worker, client = connect(), connect()
    assert client.read_advert() is None
    with pytest.raises(StoreError, match="only the worker"):
        client.write_advert({"pid": 1})
    worker.acquire_worker_lock()
    assert client.read_advert() is None  # locked, nothing published yet
    advert = {"pid": os.getpid(), "workflows": ["a", "b"], "schedules": []}
    worker.write_advert(advert)
    assert client.read_advert() == advert
    worker.write_advert({**advert, "workflows": ["c"]})
    assert client.read_advert() == {**advert, "workflows": ["c"]}
    worker.release_worker_lock()
    assert client.read_advert() is None  # withdrawn with the lock


# ---------------------------------------------------------------------------------- watch


async def test_a_watch_wakes_on_another_connections_append(connect: Connect) -> None:
    worker, client = connect(), connect()
    worker.acquire_worker_lock()
    state = Recorder()
    log = worker.open_log("t", state)
    woke = asyncio.Event()

    def on_change() -> None:
        log.refresh()
        if state.records:
            woke.set()

    watch = worker.watch(on_change, poll_interval=0.05)
    watch.start()
    try:
        await client.open_log("t", Recorder()).submit(record({"n": 1}))
        # A bound for a broken watch, not a timing assertion: it normally wakes at once.
        await asyncio.wait_for(woke.wait(), timeout=30)
    finally:
        await watch.stop()
    assert [r["n"] for r in state.records] == [1]


# ------------------------------------------------------------------------ the only door

_STORE_INTERNALS = (
    "FileStore",
    "FileLog",
    "filestore",
    ".locks",
    "worker.json",
    "doorbell",
    "lock_dir",
    "blob_path",
    "log_path",
)


def test_nothing_outside_the_store_package_reaches_past_the_contract() -> None:
    """The worker, the services, the engine and the host use ``open_store`` and the protocol:
    no file store class, lock folder or advert file is named anywhere else."""
    root = Path(__file__).resolve().parents[3]
    store_package = root / "platform_shim" / "store"
    offenders = []
    for package in ("platform_shim", "host"):
        for path in sorted((root / package).rglob("*.py")):
            if store_package in path.parents:
                continue
            text = path.read_text()
            offenders += [
                f"{path.relative_to(root)}: {name}" for name in _STORE_INTERNALS if name in text
            ]
    assert offenders == []


def test_the_archive_finds_nothing_under_a_key_or_tag_it_cannot_hold(connect: Connect) -> None:
    """A run id from a URL may hold any character, NUL included (which PostgreSQL's text cannot
    store): looking it up finds nothing, on every store, rather than failing (a 500 found by
    the hostile-input fuzz on PostgreSQL)."""
    archive = connect().open_archive("runs-archive", writable=True)
    archive.add([_entry("r1", 1, 1000, "w:a")])
    odd = "r1\x00"
    assert archive.known([odd, "r1"]) == {"r1"}
    assert (archive.order_of(odd), archive.head(odd), archive.entry(odd)) == (None, None, None)
    assert archive.page("w:a\x00", None, 10) == [] and archive.count("w:a\x00") == 0
