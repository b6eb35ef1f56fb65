"""The storage contract every service is written against.

A store is a set of named, ordered, append-only logs of JSON records plus whole-file snapshots
and content-addressed blobs. The services never see files: they submit records to a log and
keep their in-memory state as a fold of the records the log hands them (their own, and those
other processes appended). The file store (``FileStore``) is the implementation we ship; a
PostgreSQL backend would map a log to a table with a sequence, ``submit`` to an insert inside a
group-committed transaction, ``refresh`` to reading rows past the last seen sequence
(LISTEN/NOTIFY to wake up), ``rewrite`` to a delete of superseded rows, and snapshots and blobs
to two more tables. ``MemoryStore`` (``store/memory.py``) is the second implementation; one
contract suite (``tests/platform_shim/store/test_contract.py``) runs against both.

The contract is the only door: nothing outside ``platform_shim/store/`` names a file, a path
under the data folder or an implementation; ``open_store`` (``store/__init__.py``) picks the
implementation from a location.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

if TYPE_CHECKING:
    from platform_shim.store.archive import ArchiveEntry

__all__ = [
    "Archive",
    "Consumer",
    "DocumentTable",
    "Durability",
    "KvPage",
    "KvTable",
    "Log",
    "OutOfOrder",
    "Prepare",
    "Record",
    "Selection",
    "Store",
    "Watch",
]

Record = dict[str, Any]
Durability = Literal["fsync", "flush"]
T = TypeVar("T")

Prepare = Callable[[], tuple[bytes | None, Callable[[], T] | None]]
"""Builds one record inside the log's commit cycle: returns the encoded line (no newline; several
records may be joined by newlines and are then written in one ``write``), or None to write
nothing (the change turned out to be a no-op), and a
callback that applies it to the in-memory state once it is written (its return value becomes the
result of ``submit``). It runs after the log has caught up with every other process, under the
cross-process lock, so it may validate against the latest state (a unique index, the next event
id). Raising fails that submission alone and writes nothing."""


class OutOfOrder(ValueError):
    """Raised by ``Consumer.apply`` for a record whose sequence number does not follow the last.

    When that happens while a log loads, the log finds the longest run of lines whose numbers
    increase (``store.order``), skips the others with a warning naming file and line, and loads
    again: a damaged line then costs itself alone, never the intact lines after it."""


class Consumer(Protocol):
    """The in-memory fold of one log.

    A consumer whose records carry a strictly increasing sequence number names its field in an
    ``order_key`` attribute and raises ``OutOfOrder`` for a record that does not follow.
    """

    def apply(self, record: Record, line: bytes) -> None:
        """Apply a record another process appended (or one read at load time)."""

    def reset(self) -> None:
        """Forget everything: the log is about to be replayed from its first record."""


class Log(Protocol):
    """An ordered, append-only sequence of records shared by every process on a data folder."""

    name: str

    def submit(self, prepare: Prepare[T], *, durable: bool = True) -> asyncio.Future[T]:
        """Append one record. The future resolves once the record is written and, with
        ``durable`` and the store's ``fsync`` durability, on stable storage; writers waiting at
        the same moment share one fsync."""

    def fresh(self) -> None:
        """``refresh``, at most once per turn of the event loop (cheap enough before every read)."""

    def has_pending(self) -> bool:
        """Whether submissions are still waiting to be written and applied."""

    def refresh(self) -> int:
        """Apply what other processes appended since the last look; returns how many records."""

    async def barrier(self) -> None:
        """Wait until everything written to this log so far is durable."""

    async def rewrite(
        self,
        take: Callable[[], Iterable[bytes]],
        *,
        before_rename: Callable[[], None] | None = None,
    ) -> None:
        """Replace the log's content with its live records, atomically, without holding the
        loop: ``take()`` runs on the loop, caught up, and returns lines made from a copy of the
        state, consumed off the loop; records appended meanwhile are kept after them.
        ``before_rename`` runs (on a thread) once the new content is durable, just before it
        takes over."""

    def size(self) -> int:
        """Bytes in the log (the compaction trigger)."""

    def line_count(self) -> int:
        """Records in the log, live or superseded (with the live count: whether to compact)."""


class Archive(Protocol):
    """Records that no longer change, kept on disk, found by key or paged by tag (newest
    first); see ``store/archive.py`` for the file implementation and its invariants."""

    def add(self, entries: list[ArchiveEntry]) -> int:
        """Append and index the entries whose key is not archived yet; returns how many."""

    def known(self, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` are archived."""

    def order_of(self, key: str) -> int | None:
        """The order (sort key) of ``key``'s entry."""

    def head(self, key: str) -> Any:
        """The head of ``key``'s entry, parsed (None when there is none)."""

    def entry(self, key: str) -> tuple[Any, Any] | None:
        """``(head, body)`` of ``key``'s entry, parsed."""

    def page(self, tag: str | None, before: int | None, limit: int) -> list[tuple[int, str, Any]]:
        """``(order, key, head)`` of up to ``limit`` entries with ``tag``, highest order first."""

    def count(self, tag: str = "") -> int:
        """How many entries carry ``tag`` ("" for all)."""

    def prune(self, cutoff: int) -> int:
        """Forget the entries whose ``at`` is before ``cutoff``; returns how many."""

    def oldest(self) -> int | None:
        """The smallest ``at`` of the entries (None when there are none)."""

    def sync(self) -> None:
        """Make every entry added so far durable."""

    def __iter__(self) -> Iterator[tuple[str, Any, Any]]:
        """Every entry ``(key, head, body)``."""

    def close(self) -> None:
        """Sync (a writer) and close."""


class Watch(Protocol):
    """Calls back on the loop soon after another process wrote to the store."""

    def start(self) -> None:
        """Begin watching (on the running loop)."""

    async def stop(self) -> None:
        """Stop watching; no callback runs after this returns."""


@dataclass(frozen=True, slots=True)
class Selection:
    """Documents as their JSON text; ``exact`` false: every document of the collection (in
    insertion order), which the caller filters, sorts and pages itself."""

    bodies: list[str]
    exact: bool


Doc = dict[str, Any]


class DocumentTable(Protocol):
    """A store that keeps the database service's documents queryable where they live (the
    PostgreSQL store); the answers equal the in-memory evaluator's (``services/query.py``)."""

    async def select(
        self,
        collection: str,
        filter: Mapping[str, Any],
        sort: Sequence[tuple[str, int]],
        skip: int,
        limit: int,
    ) -> Selection:
        """Documents matching a validated filter, sorted, skipped and limited (0: no limit)."""

    async def count(self, collection: str, filter: Mapping[str, Any]) -> int | None:
        """How many match; None when the caller must count in Python."""

    async def indexes(self, collection: str) -> list[str]:
        """The collection's index descriptors (JSON text), in the order they were created."""

    async def stats(self) -> list[tuple[str, int, int]]:
        """Every collection, by name: (name, documents, secondary indexes)."""

    async def clash(
        self, collection: str, docs: Sequence[Doc], *, new: bool
    ) -> tuple[str, Any] | None:
        """(index name, value) of a key one of ``docs`` would take from a document outside
        them (``_id_`` too when ``new``), as the store holds them now; None when none does."""

    def where_sql(self, partial: Mapping[str, Any]) -> str:
        """A partial index's filter as the store evaluates it (``ValueError`` if it cannot)."""


@dataclass(frozen=True, slots=True)
class KvPage:
    """A page of unexpired keys by key, with their expirations; ``more``: the page is full and
    some key follows it (the caller's cursor goes on after the page's last key)."""

    keys: list[tuple[str, int | None]]
    more: bool


class KvTable(Protocol):
    """A store that keeps the KV service's keys where they live (the PostgreSQL store): the
    service folds no value then, and asks here. Expiry is judged against the ``now_ms`` the
    caller passes (its clock), and keys sort by code point (Python's ``str`` order)."""

    async def get(self, ns: str, key: str) -> tuple[bytes, int | None] | None:
        """The key's JSON bytes (as written) and expiration, expired or not; None: missing."""

    async def page(
        self, ns: str, prefix: str, after: str | None, now_ms: int, limit: int
    ) -> KvPage:
        """Up to ``limit`` keys of ``ns`` starting with ``prefix`` and above ``after`` that
        have not expired at ``now_ms``, by key."""

    async def sizes(self) -> dict[str, int]:
        """``{namespace: keys}`` by namespace, expired keys included (until swept)."""

    async def earliest(self) -> int | None:
        """The smallest expiration of any key (None when no key expires)."""

    async def due(self, now_ms: int, limit: int) -> list[tuple[str, str, bytes, int]]:
        """Up to ``limit`` keys expired at ``now_ms``, earliest first: (ns, key, value, exp)."""


class Store(Protocol):
    """A data folder: logs, snapshots, blobs, the single-worker lock and the worker's advert."""

    location: str
    """Where the state lives, as the user named it (a folder path, ``memory:…``): for messages."""
    data_dir: Path
    """A local folder for the few files that are not records (the auth secret, the dev clock's
    offset); the memory store gives a private temporary one."""
    durability: Durability

    def open_log(self, name: str, consumer: Consumer) -> Log:
        """Open (creating if needed) the log ``name`` and replay it into ``consumer``."""

    def open_archive(self, name: str, *, writable: bool) -> Archive:
        """Open the archive ``name`` (created if ``writable``; only the worker writes)."""

    def read_snapshot(self, name: str) -> Iterator[Record]:
        """Records of the snapshot ``name``, the header first (none when there is none)."""

    def write_snapshot(self, name: str, lines: Iterable[bytes]) -> None:
        """Atomically replace the snapshot ``name``."""

    def put_blob(self, data: bytes) -> str:
        """Store bytes durably under their digest (blocking: call it from a thread)."""

    def read_blob(self, digest: str) -> bytes | None:
        """The bytes stored under ``digest``."""

    def blob_digests(self) -> Iterable[tuple[str, float]]:
        """Every stored digest with its modification time (for garbage collection)."""

    def delete_blob(self, digest: str) -> None:
        """Remove a blob nothing refers to."""

    def secret(self, name: str, *, create: bool) -> bytes | None:
        """The store's random secret ``name`` (a signing key, say), the same for every process
        and host on the store: made once, by whoever first asks with ``create`` (the others
        then read that one); None when it was never made and ``create`` is false."""

    def acquire_worker_lock(self) -> None:
        """Become the folder's single worker, or raise ``DataDirLocked``."""

    def release_worker_lock(self) -> None:
        """Stop being the worker."""

    def worker_pid(self) -> int | None:
        """The pid of the process holding the worker lock, if any."""

    @property
    def lock_lost(self) -> bool:
        """Whether this store held the worker lock and lost it without releasing it (the
        database ended the session holding it): it writes nothing more, since another process
        may be the worker by then. A folder's lock is never lost."""

    def write_advert(self, advert: dict[str, Any]) -> None:
        """Publish what the worker serves (pid, workflows, handlers, schedules); the worker
        only. Releasing the worker lock withdraws it."""

    def read_advert(self) -> dict[str, Any] | None:
        """The live worker's advert; None when no worker holds the lock or it published none."""

    def watch(self, on_change: Callable[[], None], *, poll_interval: float) -> Watch:
        """A watch calling ``on_change`` on the loop soon after another process appended (and
        every ``poll_interval`` seconds, in case a wake-up was missed)."""

    def documents(self) -> DocumentTable | None:
        """Where the database service's queries run, if not in its own memory (None: the
        service evaluates them over its fold, as the file and memory stores want)."""

    def kv_table(self) -> KvTable | None:
        """Where the KV service's keys live, if not in its own memory (None: it folds them,
        as the file and memory stores want)."""

    def close(self) -> None:
        """Flush, fsync and close everything."""
