"""Rewriting a log (compaction) off the event loop: the loop keeps serving, nothing appended
meanwhile is lost, a cancelled rewrite leaves the old file whole, the lock wait never blocks.

No timing is asserted: a thread the test holds on a ``threading.Event`` stands for a slow
serialization, and what the loop manages to do meanwhile is what is checked."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from platform_shim.store import FileStore
from platform_shim.store.lock import AppendLock
from tests.support.consumers import Recorder


def record(n: int) -> Any:
    return lambda: (orjson.dumps({"n": n}), None)


def numbers(data_dir: Path) -> list[int]:
    store = FileStore(data_dir)
    seen = Recorder()
    store.open_log("t", seen)
    store.close()
    return [r["n"] for r in seen.records]


class Gate:
    """Holds the thread that makes a rewrite's lines until the test lets it go."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def lines(self, values: list[int]) -> Iterator[bytes]:
        self.entered.set()
        if not self.release.wait(60):  # the test failed before releasing: do not hang
            raise RuntimeError("gate never released")
        for n in values:
            yield orjson.dumps({"n": n})

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 60)


async def test_appends_made_while_the_new_file_is_written_are_kept(data_dir: Path) -> None:
    store, other_store = FileStore(data_dir), FileStore(data_dir)
    log = store.open_log("t", Recorder())
    other = other_store.open_log("t", Recorder())  # another process's view of the same log
    for n in range(5):
        await log.submit(record(n))
    gate = Gate()
    rewriting = asyncio.ensure_future(log.rewrite(lambda: gate.lines([100])))
    await gate.wait_entered()
    # The rewrite's thread is held in the middle of making the new file: the loop still serves,
    # and these appends are acknowledged (written and fsync'd to the old file) meanwhile.
    await log.submit(record(5))
    await other.submit(record(6))
    await log.submit(record(7))
    assert not rewriting.done()
    gate.release.set()
    await rewriting
    await log.submit(record(8))
    other.refresh()
    await other.submit(record(9))
    store.close()
    other_store.close()
    assert numbers(data_dir) == [100, 5, 6, 7, 8, 9]
    assert not list(data_dir.glob("*.tmp"))


async def test_a_cancelled_rewrite_leaves_the_old_file_whole(data_dir: Path) -> None:
    store = FileStore(data_dir)
    log = store.open_log("t", Recorder())
    for n in range(3):
        await log.submit(record(n))
    gate = Gate()
    rewriting = asyncio.ensure_future(log.rewrite(lambda: gate.lines([100])))
    await gate.wait_entered()
    rewriting.cancel()
    await asyncio.sleep(0)
    assert not rewriting.done()  # it waits for its thread: the file work cannot stop halfway
    gate.release.set()
    with pytest.raises(asyncio.CancelledError):
        await rewriting
    await log.submit(record(3))
    # A later rewrite works: the first one let go of everything.
    await log.rewrite(lambda: [orjson.dumps({"n": n}) for n in (0, 1, 2, 3)])
    await log.submit(record(4))
    store.close()
    assert numbers(data_dir) == [0, 1, 2, 3, 4]
    assert not list(data_dir.glob("*.tmp"))


async def test_waiting_for_another_process_lock_does_not_block_the_loop(data_dir: Path) -> None:
    store = FileStore(data_dir)
    log = store.open_log("t", Recorder())
    await log.submit(record(1))
    holder = AppendLock(store.lock_dir / "t.lock")  # its own open file: another process's lock
    assert holder.try_acquire()
    rewriting = asyncio.ensure_future(log.rewrite(lambda: [orjson.dumps({"n": 2})]))
    turns = 0
    while turns < 50:  # the loop goes round while the rewrite waits for the lock
        await asyncio.sleep(0.001)
        turns += 1
    assert not rewriting.done()
    holder.release()
    await rewriting
    holder.close()
    store.close()
    assert numbers(data_dir) == [2]


async def test_one_rewrite_at_a_time(data_dir: Path) -> None:
    store = FileStore(data_dir)
    log = store.open_log("t", Recorder())
    gate = Gate()
    first = asyncio.ensure_future(log.rewrite(lambda: gate.lines([1])))
    await gate.wait_entered()
    with pytest.raises(RuntimeError, match="already being rewritten"):
        await log.rewrite(lambda: [])
    gate.release.set()
    await first
    store.close()
    assert numbers(data_dir) == [1]
