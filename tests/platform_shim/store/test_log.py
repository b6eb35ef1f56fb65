"""The append-only log: ordering, group commit, torn and corrupt lines, failures, tailing."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from platform_shim.errors import StoreError
from platform_shim.store import FileStore
from platform_shim.store import log as log_module


class Recorder:
    """A consumer that keeps every record it is given."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.resets = 0

    def apply(self, record: dict[str, Any], line: bytes) -> None:
        self.records.append(record)

    def reset(self) -> None:
        self.records.clear()
        self.resets += 1


def record(value: dict[str, Any], sink: list[dict[str, Any]] | None = None) -> Any:
    def prepare() -> tuple[bytes, Any]:
        def apply() -> int:
            if sink is not None:
                sink.append(value)
            return int(value.get("n", 0))

        return orjson.dumps(value), apply

    return prepare


def reopen(data_dir: Path, name: str = "t") -> Recorder:
    store = FileStore(data_dir)
    consumer = Recorder()
    store.open_log(name, consumer)
    store.close()
    return consumer


async def test_appends_come_back_in_order_after_reopen(data_dir: Path) -> None:
    store = FileStore(data_dir)
    log = store.open_log("t", Recorder())
    results = await asyncio.gather(*(log.submit(record({"n": i})) for i in range(50)))
    assert results == list(range(50))
    store.close()
    assert [r["n"] for r in reopen(data_dir).records] == list(range(50))


async def test_concurrent_writers_share_fsyncs(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        nonlocal calls
        calls += 1
        real_fsync(fd)

    store = FileStore(data_dir)
    log = store.open_log("t", Recorder())
    monkeypatch.setattr(os, "fsync", counting_fsync)
    await asyncio.gather(*(log.submit(record({"n": i})) for i in range(200)))
    assert 1 <= calls <= 5, f"200 concurrent writes took {calls} fsyncs"
    assert log.synced == log.written
    store.close()


async def test_flush_durability_writes_without_fsync(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0

    def counting_fsync(fd: int) -> None:
        nonlocal calls
        calls += 1

    store = FileStore(data_dir, durability="flush")
    log = store.open_log("t", Recorder())
    monkeypatch.setattr(os, "fsync", counting_fsync)
    await asyncio.gather(*(log.submit(record({"n": i})) for i in range(20)))
    assert calls == 0
    monkeypatch.undo()
    store.close()
    assert len(reopen(data_dir).records) == 20


async def test_torn_tail_is_skipped_and_the_next_append_starts_a_fresh_line(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "t.jsonl").write_bytes(b'{"n":1}\n{"n":2}\n{"n":3,"pay')
    store = FileStore(data_dir)
    consumer = Recorder()
    log = store.open_log("t", consumer)
    assert [r["n"] for r in consumer.records] == [1, 2]
    with caplog.at_level(logging.WARNING, logger="platform_shim.store"):
        await log.submit(record({"n": 4}))
    assert any("t.jsonl:3: removed a torn line" in message for message in caplog.messages)
    store.close()
    assert (data_dir / "t.jsonl").read_bytes() == b'{"n":1}\n{"n":2}\n{"n":4}\n'
    assert [r["n"] for r in reopen(data_dir).records] == [1, 2, 4]


async def test_a_torn_tail_that_parses_does_not_come_back_to_life(data_dir: Path) -> None:
    # The writer died after the record's bytes but before its newline: never acknowledged.
    data_dir.mkdir(parents=True)
    (data_dir / "t.jsonl").write_bytes(b'{"n":1}\n{"n":2}')
    store = FileStore(data_dir)
    consumer = Recorder()
    log = store.open_log("t", consumer)
    await log.submit(record({"n": 3}))
    assert [r["n"] for r in consumer.records] == [1]
    store.close()
    assert [r["n"] for r in reopen(data_dir).records] == [1, 3]


async def test_corrupt_lines_are_skipped_with_file_and_line(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir.mkdir(parents=True)
    (data_dir / "t.jsonl").write_bytes(b'{"n":1}\nnot json\n[1,2]\n{"n":2}\n')
    with caplog.at_level(logging.WARNING, logger="platform_shim.store"):
        assert [r["n"] for r in reopen(data_dir).records] == [1, 2]
    assert any("t.jsonl:2" in m and "corrupt" in m for m in caplog.messages)
    assert any("t.jsonl:3" in m for m in caplog.messages)


async def test_a_failed_write_leaves_nothing_behind_and_the_next_one_works(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(data_dir)
    log = store.open_log("t", Recorder())
    await log.submit(record({"n": 1}))
    size = (data_dir / "t.jsonl").stat().st_size
    real_write = os.write

    def half_then_enospc(fd: int, data: Any) -> int:
        if len(data) > 4:
            real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(log_module.os, "write", half_then_enospc)
    with pytest.raises(StoreError, match=r"t\.jsonl.*No space left"):
        await log.submit(record({"n": 2, "payload": "x" * 100}))
    assert (data_dir / "t.jsonl").stat().st_size == size
    monkeypatch.undo()
    assert await log.submit(record({"n": 3})) == 3
    store.close()
    assert [r["n"] for r in reopen(data_dir).records] == [1, 3]


async def test_a_refused_record_fails_alone(data_dir: Path) -> None:
    store = FileStore(data_dir)
    log = store.open_log("t", Recorder())

    def refuse() -> tuple[bytes, None]:
        raise ValueError("refused")

    first = log.submit(record({"n": 1}))
    second = log.submit(refuse)
    third = log.submit(record({"n": 3}))
    assert await first == 1
    with pytest.raises(ValueError, match="refused"):
        await second
    assert await third == 3
    store.close()
    assert [r["n"] for r in reopen(data_dir).records] == [1, 3]


async def test_a_reader_catches_up_with_another_writer(data_dir: Path) -> None:
    writer_store, reader_store = FileStore(data_dir), FileStore(data_dir)
    writer = writer_store.open_log("t", Recorder())
    seen = Recorder()
    reader = reader_store.open_log("t", seen)
    await writer.submit(record({"n": 1}))
    await writer.submit(record({"n": 2}))
    assert reader.refresh() == 2
    assert [r["n"] for r in seen.records] == [1, 2]
    assert reader.refresh() == 0
    # The reader's own append lands after what it had not seen yet, and it sees both in order.
    await writer.submit(record({"n": 3}))
    await reader.submit(record({"n": 4}))
    assert [r["n"] for r in seen.records] == [1, 2, 3]
    writer_store.close()
    reader_store.close()
    assert [r["n"] for r in reopen(data_dir).records] == [1, 2, 3, 4]


async def test_a_reader_reloads_a_file_another_process_compacted(data_dir: Path) -> None:
    owner_store, reader_store = FileStore(data_dir), FileStore(data_dir)
    owner = owner_store.open_log("t", Recorder())
    seen = Recorder()
    reader = reader_store.open_log("t", seen)
    for n in range(5):
        await owner.submit(record({"n": n}))
    await owner.rewrite(lambda: [orjson.dumps({"n": 100})])
    reader.refresh()
    assert [r["n"] for r in seen.records] == [100]
    await reader.submit(record({"n": 101}))
    owner.refresh()
    owner_store.close()
    reader_store.close()
    assert [r["n"] for r in reopen(data_dir).records] == [100, 101]


async def test_barrier_waits_for_durability(data_dir: Path) -> None:
    store = FileStore(data_dir)
    log = store.open_log("t", Recorder())
    log.submit(record({"n": 1}), durable=False)
    await asyncio.sleep(0)
    await log.barrier()
    assert log.synced == log.written > 0
    store.close()


async def test_a_platform_survives_a_second_event_loop(data_dir: Path) -> None:
    store = FileStore(data_dir)
    log = store.open_log("t", Recorder())
    await log.submit(record({"n": 1}))

    def second_loop() -> int:
        async def go() -> int:
            result: int = await log.submit(record({"n": 2}))
            return result

        return asyncio.run(go())

    assert await asyncio.to_thread(second_loop) == 2
    store.close()
    assert [r["n"] for r in reopen(data_dir).records] == [1, 2]
