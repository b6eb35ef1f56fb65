"""An in-memory ``Store``: the contract without files, for tests and embedding.

A ``MemorySpace`` is to this store what a data folder is to the file store: the shared state
(each log's lines, snapshots, blobs, archives, the worker lock and its advert). A
``MemoryStore`` is one connection to a space, as a ``FileStore`` is one process's view of a
folder: it has its own open logs, each with its own consumer and read position. So two stores on
one space behave as two processes on one folder, and a second store on a space is how a test
reopens it. Nothing outlives the process.

Invariants (the file store's promises; ``tests/platform_shim/store/test_contract.py`` checks
both implementations against one suite):

- **One commit cycle at a time per log, in submission order.** Submissions made during one
  turn of the loop are prepared and appended in one cycle, after the log applied what other
  connections appended; a ``prepare`` that raises fails alone, one that returns None writes
  nothing. The connection's own records are applied by their callbacks, never replayed into
  its consumer.
- **Acknowledged means appended.** Memory has no stable storage to wait for: under either
  durability a submission resolves in the cycle that appends it (the file store's ``flush``).
- **Compaction keeps every append.** ``rewrite`` takes the live lines, yields to the loop (as
  the file store writes them on a thread), then puts them in place followed by whatever was
  appended since ``take``; other connections see a new generation and replay from the start,
  as a file renamed over makes them do.
- **One worker per space**, whose pid is this process's; releasing the lock withdraws the advert.

Size (over 400 lines, on purpose): the whole store contract in memory (logs, snapshots, blobs,
lock, advert, watch), kept in one file so it reads against ``protocol.py`` line by line.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson

from platform_shim.errors import DataDirLocked, StoreError
from platform_shim.store.jsonl import Record, bulk_load
from platform_shim.store.memory_archive import ArchiveData, MemoryArchive
from platform_shim.store.protocol import Consumer, Durability, Prepare
from platform_shim.store.turns import CallbackWatch, OncePerTurn, apply_line

__all__ = [
    "MemoryArchive",
    "MemoryLog",
    "MemorySpace",
    "MemoryStore",
    "check_digest",
    "check_secret_name",
    "new_secret",
]

T = TypeVar("T")
log = logging.getLogger("platform_shim.store")


class _Lines:
    """One log's content, shared by every connection to the space."""

    __slots__ = ("generation", "lines", "size")

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.size = 0  # bytes, counting a newline per line (as the file would hold them)
        self.generation = 0  # bumped by a rewrite: readers replay from the start

    def append(self, line: bytes) -> None:
        self.lines.append(line)
        self.size += len(line) + 1

    def replace(self, lines: list[bytes]) -> None:
        self.lines = lines
        self.size = sum(len(line) + 1 for line in lines)
        self.generation += 1


class MemorySpace:
    """The state a set of ``MemoryStore`` connections share (what a data folder is)."""

    def __init__(self, name: str = "memory:") -> None:
        self.name = name
        self.logs: dict[str, _Lines] = {}
        self.snapshots: dict[str, list[bytes]] = {}
        self.blobs: dict[str, tuple[bytes, float]] = {}
        self.blob_lock = threading.Lock()  # blobs are put from threads
        self.archives: dict[str, ArchiveData] = {}
        self.secrets: dict[str, bytes] = {}
        self.worker: MemoryStore | None = None
        self.advert: bytes | None = None
        self.watches: list[MemoryWatch] = []
        # A folder for the few files that are not records (the auth secret, say): created only
        # by whoever writes one, removed with the space.
        self.data_dir = (
            Path(tempfile.gettempdir()) / f"platform-shim-memory-{os.getpid()}-{id(self)}"
        )
        weakref.finalize(self, shutil.rmtree, self.data_dir, ignore_errors=True)

    def lines(self, name: str) -> _Lines:
        found = self.logs.get(name)
        if found is None:
            found = self.logs[name] = _Lines()
        return found

    def ring(self, writer: MemoryStore) -> None:
        """Another connection appended: wake the watches (the worker's own appends do not)."""
        if self.worker is writer:
            return
        for watch in list(self.watches):
            watch.poke()

    def __repr__(self) -> str:
        return f"<MemorySpace {self.name!r}>"


class MemoryLog(OncePerTurn):
    """A ``Log`` whose lines live in a ``MemorySpace``."""

    def __init__(self, store: MemoryStore, name: str, consumer: Consumer) -> None:
        self.name = name
        self._store = store
        self._shared = store.space.lines(name)
        self._consumer = consumer
        self._position = 0  # lines of the shared list this connection has applied or written
        self._generation = -1
        self._queue: deque[tuple[Prepare[Any], asyncio.Future[Any]]] = deque()
        self._cycle_scheduled = False
        self._rewriting = False
        self._swapping = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._load()

    def _load(self) -> None:
        with bulk_load():
            self._consumer.reset()
            self._generation = self._shared.generation
            self._position = 0
            self._apply_new()

    def _apply_new(self) -> int:
        """Apply the lines other connections appended since we last looked."""
        if self._generation != self._shared.generation:
            self._load()  # rewritten by the worker: replay the new content
            return 0
        lines = self._shared.lines
        consumer = self._consumer
        count = 0
        while self._position < len(lines):
            line = lines[self._position]
            self._position += 1
            count += apply_line(
                consumer, line, f"{self._store.location}/{self.name}:{self._position}"
            )
        return count

    def refresh(self) -> int:
        if self._swapping:
            return 0
        return self._apply_new()

    def has_pending(self) -> bool:
        return bool(self._queue)

    def size(self) -> int:
        return self._shared.size

    def line_count(self) -> int:
        return self._position

    def submit(self, prepare: Prepare[T], *, durable: bool = True) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            # A client outliving an ``asyncio.run``: what the old loop left was never acknowledged.
            self._queue.clear()
            self._cycle_scheduled = False
            self.loop = loop
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((prepare, future))
        if not self._cycle_scheduled:
            self._cycle_scheduled = True
            loop.call_soon(self._cycle)
        return future

    def _cycle(self) -> None:
        self._cycle_scheduled = False
        if not self._queue or self._swapping:
            return  # the swap's end (_resume) schedules the next cycle
        self._apply_new()
        released: list[tuple[asyncio.Future[Any], Any]] = []
        wrote = False
        queue = self._queue
        while queue:
            prepare, future = queue.popleft()
            if future.done():  # cancelled by its caller before we got to it
                continue
            try:
                line, apply = prepare()
            except Exception as exc:
                future.set_exception(exc)
                continue
            if line is not None:
                for part in line.split(b"\n"):
                    self._shared.append(part)
                self._position = len(self._shared.lines)
                wrote = True
            result = None
            if apply is not None:
                try:
                    result = apply()
                except Exception as exc:  # a bug in a fold; the record is in the log
                    log.exception("%s: applying a record this connection wrote failed", self.name)
                    future.set_exception(exc)
                    continue
            released.append((future, result))
        if wrote:
            self._store.space.ring(self._store)
        for future, result in released:
            if not future.done():
                future.set_result(result)

    async def barrier(self) -> None:
        """Everything appended is as durable as memory gets."""

    async def rewrite(
        self,
        take: Callable[[], Iterable[bytes]],
        *,
        before_rename: Callable[[], None] | None = None,
    ) -> None:
        if self._rewriting:
            raise RuntimeError(f"log {self.name!r} is already being rewritten")
        self._rewriting = True
        try:
            self._apply_new()
            lines = take()
            start, generation = self._position, self._shared.generation
            # Consumed off the loop, as the file store writes them: appends go on meanwhile.
            new = await asyncio.to_thread(_split, lines)
            if before_rename is not None:
                await asyncio.to_thread(before_rename)
            self._swapping = True
            self._apply_new()
            if self._shared.generation != generation:
                raise StoreError(None, f"log {self.name!r} was rewritten during its compaction")
            new.extend(self._shared.lines[start:])
            self._shared.replace(new)
            self._generation = self._shared.generation
            self._position = len(new)
        finally:
            self._rewriting = False
            self._swapping = False
            self._resume()

    def _resume(self) -> None:
        if self._queue and not self._cycle_scheduled and self.loop is not None:
            self._cycle_scheduled = True
            self.loop.call_soon(self._cycle)

    def close(self) -> None:
        self._queue.clear()


def _split(lines: Iterable[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for line in lines:
        if b"\n" in line:
            out.extend(line.split(b"\n"))
        else:
            out.append(line)
    return out


class MemoryWatch(CallbackWatch):
    """Calls ``on_change`` on the loop after another connection to the space appended.

    A space cannot miss a wake-up (the append itself rings), so there is no polling."""

    def __init__(self, space: MemorySpace, on_change: Callable[[], None]) -> None:
        self._space = space
        self._on_change = on_change
        self._loop: asyncio.AbstractEventLoop | None = None
        self._poked = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._space.watches.append(self)

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self._space.watches.remove(self)
        self._loop = None


def check_secret_name(name: str) -> None:
    """A secret's name is a plain word (it names a file in the folder store)."""
    if not name or not name.replace("-", "").isalnum():
        raise ValueError(f"not a secret name: {name!r}")


def new_secret() -> bytes:
    """A fresh random secret: 32 random bytes, hex-encoded."""
    return secrets.token_hex(32).encode()


def check_digest(digest: str) -> None:
    """Refuse anything but a sha256 hex digest (a blob name must never be a path)."""
    if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
        raise ValueError(f"not a blob digest: {digest!r}")


class MemoryStore:
    """A ``Store`` connection to a ``MemorySpace`` (a new space when none is given)."""

    def __init__(
        self, space: MemorySpace | None = None, *, durability: Durability = "fsync"
    ) -> None:
        if durability not in ("fsync", "flush"):
            raise ValueError(f"durability must be 'fsync' or 'flush', not {durability!r}")
        self.space = space if space is not None else MemorySpace()
        self.location = self.space.name
        self.data_dir = self.space.data_dir
        self.durability: Durability = durability
        self.worker = False
        self._logs: dict[str, MemoryLog] = {}

    def open_log(self, name: str, consumer: Consumer) -> MemoryLog:
        if name in self._logs:
            raise ValueError(f"log {name!r} is already open in this store")
        opened = MemoryLog(self, name, consumer)
        self._logs[name] = opened
        return opened

    def open_archive(self, name: str, *, writable: bool) -> MemoryArchive:
        if not name.replace("-", "").isalnum():
            raise ValueError(f"not an archive name: {name!r}")
        data = self.space.archives.get(name)
        if data is None:
            data = self.space.archives[name] = ArchiveData()
        return MemoryArchive(data, name, writable=writable)

    def read_snapshot(self, name: str) -> Iterator[Record]:
        for line in list(self.space.snapshots.get(name, ())):
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                log.warning("%s: skipped an unreadable snapshot line", name)
                continue
            if isinstance(record, dict):
                yield record

    def write_snapshot(self, name: str, lines: Iterable[bytes]) -> None:
        self.space.snapshots[name] = _split(lines)

    def put_blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        with self.space.blob_lock:
            # A put of bytes already stored refreshes their time, as the file store's touch
            # does: garbage collection spares young blobs.
            self.space.blobs[digest] = (bytes(data), time.time())
        return digest

    def read_blob(self, digest: str) -> bytes | None:
        check_digest(digest)
        found = self.space.blobs.get(digest)
        return found[0] if found is not None else None

    def blob_digests(self) -> Iterator[tuple[str, float]]:
        with self.space.blob_lock:
            listed = [(digest, mtime) for digest, (_, mtime) in self.space.blobs.items()]
        return iter(listed)

    def delete_blob(self, digest: str) -> None:
        check_digest(digest)
        with self.space.blob_lock:
            self.space.blobs.pop(digest, None)

    def secret(self, name: str, *, create: bool) -> bytes | None:
        check_secret_name(name)
        with self.space.blob_lock:
            if create:
                return self.space.secrets.setdefault(name, new_secret())
            return self.space.secrets.get(name)

    def acquire_worker_lock(self) -> None:
        holder = self.space.worker
        if holder is not None and holder is not self:
            raise DataDirLocked(self.location, os.getpid())
        self.space.worker = self
        self.worker = True

    def release_worker_lock(self) -> None:
        if self.space.worker is self:
            self.space.worker = None
            self.space.advert = None
        self.worker = False

    @property
    def lock_lost(self) -> bool:
        return False  # held by this process until it lets go or ends

    def worker_pid(self) -> int | None:
        return os.getpid() if self.space.worker is not None else None

    def write_advert(self, advert: dict[str, Any]) -> None:
        if not self.worker:
            raise StoreError(None, f"only the worker advertises on {self.location}")
        self.space.advert = orjson.dumps(advert)  # kept as JSON: a reader gets its own copy

    def read_advert(self) -> dict[str, Any] | None:
        if self.space.worker is None or self.space.advert is None:
            return None
        advert = orjson.loads(self.space.advert)
        return advert if isinstance(advert, dict) else None

    def watch(self, on_change: Callable[[], None], *, poll_interval: float) -> MemoryWatch:
        return MemoryWatch(self.space, on_change)

    def documents(self) -> None:
        return None  # the database service queries its own fold

    def kv_table(self) -> None:
        return None  # the KV service folds its keys

    def close(self) -> None:
        for opened in self._logs.values():
            opened.close()
        self._logs.clear()
        self.release_worker_lock()

    def __repr__(self) -> str:
        return f"<MemoryStore on {self.location!r}>"
