"""An archive: records that no longer change, on disk, found by key or paged by tag.

The ledger keeps what is live; what is finished moves here and leaves memory. Layout of
``<data>/<name>/``:

    000001.jsonl, 000002.jsonl, …   segments, append-only, two lines per entry (their keys,
                                    today's and the old ones: ``store/segments.py``)
    index.sqlite                    the index (SQLite, WAL): key -> place, (tag, order) -> key

Invariants:

- **The segments are the archive; the index is derived.** An entry is appended to its segment
  before its index rows are committed, so the index never names bytes that are not written. A
  worker that opens the archive re-indexes whatever a segment holds past what the index covers
  (a crash between the two), cuts off a torn last entry, and rebuilds the whole index if it is
  missing, damaged, or claims more than the segments hold.
- **Nothing is archived twice**: ``add`` skips keys the index already has (the caller may hand
  an entry again after a crash; the first copy wins).
- **Durable only when asked**: appends are written (so they survive the process being killed)
  but fsync'd by ``sync``, which the caller runs before it drops its own copy of the entries
  (the ledger's compaction).
- **Pruning is exact, reclaiming is by segment**: ``prune`` drops the index rows of entries
  older than a cutoff at once; a segment file is deleted once every entry in it is that old.
  A segment holds at most a day of entries (by ``at``) or 64 MiB, so space comes back within a day.

Only the worker writes (``writable``); other processes open the index read-only and see the
entries committed so far. SQLite is the standard library's; it gives the B-trees (lookup by key,
newest-first pages per tag) that a page under 5 ms among hundreds of thousands of entries needs.

Size (over 400 lines, on purpose): the segment files and their SQLite index must change together
(append, re-index after a crash, prune); the line format is in ``segments.py``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from platform_shim.errors import StoreError
from platform_shim.store.jsonl import fsync_dir, write_all
from platform_shim.store.segments import ArchiveEntry, body_of, encode, entry_of, head_of

__all__ = ["ArchiveEntry", "FileArchive"]

log = logging.getLogger("platform_shim.store")

SEGMENT_BYTES = 64 * 1024 * 1024
SEGMENT_SPAN_MS = 24 * 3600 * 1000
_CHUNK = 500  # keys per ``IN (...)`` query
_ALL = 1 << 62  # above every order (and a limit that is no limit)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY, ord INTEGER NOT NULL, at INTEGER NOT NULL,
    seg INTEGER NOT NULL, off INTEGER NOT NULL, head INTEGER NOT NULL, body INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_ord ON entries (ord);
CREATE INDEX IF NOT EXISTS entries_at ON entries (at);
CREATE TABLE IF NOT EXISTS tags (
    tag TEXT NOT NULL, ord INTEGER NOT NULL, key TEXT NOT NULL, PRIMARY KEY (tag, ord, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counts (tag TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS segments (
    seg INTEGER PRIMARY KEY, indexed INTEGER NOT NULL, min_at INTEGER, max_at INTEGER
);
"""


@dataclass(frozen=True, slots=True)
class _Place:
    seg: int
    off: int
    head: int
    body: int


class FileArchive:
    """An archive in a folder of the data directory (see the module docstring)."""

    def __init__(self, folder: Path, *, writable: bool) -> None:
        self.folder = folder
        self.writable = writable
        self._fds: dict[int, int] = {}
        self._db: sqlite3.Connection | None = None  # reads (the caller's thread)
        self._wdb: sqlite3.Connection | None = None  # the writer's (under the write lock)
        self._seg = 0  # the segment appended to (writer)
        self._seg_size = 0
        self._seg_min_at: int | None = None
        self._unsynced: set[int] = set()
        self._new_file = False
        self._counts: dict[str, int] = {}
        # Writes (add, sync, prune) may come from a thread (the worker archives off its event
        # loop) and from the loop (compaction): one at a time. Reads take no lock: an entry is
        # indexed only once its bytes are written.
        self._write_lock = threading.Lock()
        if writable:
            folder.mkdir(parents=True, exist_ok=True)
            self._open_writer()

    # ----------------------------------------------------------------------------- opening

    def _index_path(self) -> Path:
        return self.folder / "index.sqlite"

    def _connect(self, *, readonly: bool) -> sqlite3.Connection:
        path = self._index_path()
        if readonly:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        else:
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            # Commits are not fsync'd (the segments are the archive; ``sync`` checkpoints).
            db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _open_writer(self) -> None:
        try:
            db = self._connect(readonly=False)
            self._wdb = db
            db.executescript(_SCHEMA)
            self._catch_up()
        except sqlite3.DatabaseError as exc:
            log.warning("%s: the index is damaged (%s); rebuilding it", self._index_path(), exc)
            self._rebuild()
        assert self._wdb is not None
        self._counts = dict(self._wdb.execute("SELECT tag, n FROM counts").fetchall())

    def _rebuild(self) -> None:
        if self._wdb is not None:
            with contextlib.suppress(sqlite3.Error):
                self._wdb.close()
            self._wdb = None
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self._index_path()}{suffix}").unlink(missing_ok=True)
        db = self._connect(readonly=False)
        db.executescript(_SCHEMA)
        self._wdb = db
        self._catch_up()

    def _segment_files(self) -> list[int]:
        segs = []
        for path in self.folder.glob("*.jsonl"):
            if path.stem.isdigit():
                segs.append(int(path.stem))
        return sorted(segs)

    def _seg_path(self, seg: int) -> Path:
        return self.folder / f"{seg:06d}.jsonl"

    def _catch_up(self) -> None:
        """Index what the segments hold past the index (a crash between append and commit)."""
        db = self._wdb
        assert db is not None
        known = {seg: indexed for seg, indexed in db.execute("SELECT seg, indexed FROM segments")}
        on_disk = self._segment_files()
        for seg in on_disk:
            size = self._seg_path(seg).stat().st_size
            indexed = known.get(seg, 0)
            if indexed > size:
                # The index claims bytes the segment lost (a power cut): start over from it.
                raise sqlite3.DatabaseError(f"segment {seg} is shorter than its index")
            if size > indexed:
                self._index_tail(seg, indexed, size)
        if on_disk:
            self._seg = on_disk[-1]
            self._seg_size = self._seg_path(self._seg).stat().st_size
            row = db.execute("SELECT min_at FROM segments WHERE seg = ?", (self._seg,)).fetchone()
            self._seg_min_at = row[0] if row else None
        else:
            self._seg, self._seg_size, self._seg_min_at = 0, 0, None

    def _index_tail(self, seg: int, start: int, size: int) -> None:
        path = self._seg_path(seg)
        with path.open("rb") as handle:
            handle.seek(start)
            data = handle.read(size - start)
        entries: list[tuple[ArchiveEntry, _Place]] = []
        pos = 0
        good = 0  # end of the last whole entry
        while True:
            end1 = data.find(b"\n", pos)
            if end1 < 0:
                break
            end2 = data.find(b"\n", end1 + 1)
            if end2 < 0:
                break
            try:
                entry = entry_of(data[pos:end1], data[end1 + 1 : end2])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                log.warning("%s at byte %d: skipped a damaged entry (%s)", path, start + pos, exc)
                pos = end2 + 1
                good = pos
                continue
            place = _Place(seg, start + pos, end1 + 1 - pos, end2 - end1)
            entries.append((entry, place))
            pos = end2 + 1
            good = pos
        if start + good < size:
            log.warning("%s: cut off a torn entry at byte %d", path, start + good)
            os.truncate(path, start + good)
        self._insert(entries, seg, start + good)

    # ------------------------------------------------------------------------ the index

    def _reader(self) -> sqlite3.Connection | None:
        if self._db is None:
            if not self._index_path().exists():
                return None
            try:
                self._db = self._connect(readonly=True)
            except sqlite3.Error:
                return None
        return self._db

    def _query(
        self, sql: str, params: Iterable[Any] = (), db: sqlite3.Connection | None = None
    ) -> list[Any]:
        db = db or self._reader()
        if db is None:
            return []
        try:
            return db.execute(sql, tuple(params)).fetchall()
        except sqlite3.OperationalError as exc:
            if self.writable or "no such table" not in str(exc):
                raise
            return []  # a reader that came before the writer created the tables

    def _insert(
        self,
        entries: list[tuple[ArchiveEntry, _Place]],
        seg: int,
        end: int,
        *,
        fresh: bool = False,
    ) -> None:
        db = self._wdb
        assert db is not None
        added: dict[str, int] = {}
        db.execute("BEGIN")
        try:
            if fresh:  # known to be new (``add`` checked): one statement per table
                db.executemany(
                    "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(e.key, e.order, e.at, seg, p.off, p.head, p.body) for e, p in entries],
                )
                new = [entry for entry, _ in entries]
            else:
                new = []
                for entry, place in entries:
                    cur = db.execute(
                        "INSERT OR IGNORE INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (entry.key, entry.order, entry.at, seg, place.off, place.head, place.body),
                    )
                    if cur.rowcount == 1:  # else archived before: the first copy wins
                        new.append(entry)
            db.executemany(
                "INSERT OR IGNORE INTO tags VALUES (?, ?, ?)",
                [(tag, entry.order, entry.key) for entry in new for tag in entry.tags],
            )
            for entry in new:
                for tag in ("", *entry.tags):
                    added[tag] = added.get(tag, 0) + 1
            db.executemany(
                "INSERT INTO counts VALUES (?, ?) ON CONFLICT(tag) DO UPDATE SET n = n + excluded.n",
                list(added.items()),
            )
            ats = [entry.at for entry, _ in entries]
            db.execute(
                "INSERT INTO segments VALUES (?, ?, ?, ?) ON CONFLICT(seg) DO UPDATE SET "
                "indexed = excluded.indexed, min_at = coalesce(min(min_at, excluded.min_at), "
                "min_at, excluded.min_at), max_at = coalesce(max(max_at, excluded.max_at), "
                "max_at, excluded.max_at)",
                (seg, end, min(ats, default=None), max(ats, default=None)),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        for tag, n in added.items():
            self._counts[tag] = self._counts.get(tag, 0) + n

    # --------------------------------------------------------------------------- writing

    def known(self, keys: Iterable[str]) -> set[str]:
        """Which of ``keys`` are archived."""
        return self._known(keys, None)

    def _known(self, keys: Iterable[str], db: sqlite3.Connection | None) -> set[str]:
        keys = list(keys)
        found: set[str] = set()
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            found.update(
                row[0]
                for row in self._query(f"SELECT key FROM entries WHERE key IN ({marks})", chunk, db)
            )
        return found

    def add(self, entries: list[ArchiveEntry]) -> int:
        """Append the entries not archived yet and index them; returns how many were added.
        Safe to call from another thread than the readers'."""
        if not self.writable:
            raise StoreError(None, f"{self.folder} is open read-only")
        with self._write_lock:
            return self._add(entries)

    def _add(self, entries: list[ArchiveEntry]) -> int:
        have = self._known((entry.key for entry in entries), self._wdb)
        fresh: list[ArchiveEntry] = []
        for entry in entries:
            if entry.key not in have:
                have.add(entry.key)
                fresh.append(entry)
        if not fresh:
            return 0
        first = fresh[0].at
        if (
            self._seg == 0
            or self._seg_size >= SEGMENT_BYTES
            or (self._seg_min_at is not None and first - self._seg_min_at > SEGMENT_SPAN_MS)
        ):
            self._seg += 1
            self._seg_size = 0
            self._seg_min_at = None
            self._new_file = True
        # One buffer, not a list of lines: orjson's output over-allocates (kilobytes a line),
        # so holding thousands of them at once would cost far more than their bytes.
        chunks = bytearray()
        placed: list[tuple[ArchiveEntry, _Place]] = []
        off = self._seg_size
        for entry in fresh:
            head, body = encode(entry)
            chunks += head
            chunks += b"\n"
            chunks += body
            chunks += b"\n"
            placed.append((entry, _Place(self._seg, off, len(head) + 1, len(body) + 1)))
            off += len(head) + len(body) + 2
        fd = self._fd(self._seg)
        try:
            write_all(fd, bytes(chunks))
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self._seg_size)
            raise StoreError(
                exc.errno, f"could not append to {self._seg_path(self._seg)}: {exc.strerror}"
            ) from exc
        self._seg_size = off
        if self._seg_min_at is None:
            self._seg_min_at = min(entry.at for entry in fresh)
        self._unsynced.add(self._seg)
        self._insert(placed, self._seg, off, fresh=True)
        return len(fresh)

    def sync(self) -> None:
        """Make everything added so far durable (segments, then the index)."""
        with self._write_lock:
            self._sync()

    def _sync(self) -> None:
        for seg in sorted(self._unsynced):
            fd = self._fds.get(seg)
            if fd is not None:
                os.fsync(fd)
        self._unsynced.clear()
        if self._new_file:
            fsync_dir(self.folder)
            self._new_file = False
        if self._wdb is not None:
            self._wdb.execute("PRAGMA wal_checkpoint(FULL)")

    def prune(self, cutoff: int) -> int:
        """Forget entries whose ``at`` is before ``cutoff``; returns how many."""
        with self._write_lock:
            return self._prune(cutoff)

    def _prune(self, cutoff: int) -> int:
        db = self._wdb
        if db is None:
            return 0
        db.execute("BEGIN")
        try:
            # Counted first, from the doomed rows only: pruning costs what it prunes.
            doomed = "SELECT key FROM entries WHERE at < ?"
            gone = db.execute(
                f"SELECT tag, count(*) FROM tags WHERE key IN ({doomed}) GROUP BY tag", (cutoff,)
            ).fetchall()
            db.execute(f"DELETE FROM tags WHERE key IN ({doomed})", (cutoff,))
            removed = db.execute("DELETE FROM entries WHERE at < ?", (cutoff,)).rowcount
            if removed > 0:
                db.executemany(
                    "UPDATE counts SET n = n - ? WHERE tag = ?",
                    [(n, tag) for tag, n in [*gone, ("", removed)]],
                )
            dead = [
                seg
                for (seg,) in db.execute(
                    "SELECT seg FROM segments WHERE max_at < ? AND seg != ?", (cutoff, self._seg)
                )
            ]
            db.executemany("DELETE FROM segments WHERE seg = ?", [(seg,) for seg in dead])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        for seg in dead:
            fd = self._fds.pop(seg, None)
            if fd is not None:
                os.close(fd)
            self._seg_path(seg).unlink(missing_ok=True)
        if removed:
            self._counts = dict(db.execute("SELECT tag, n FROM counts").fetchall())
        return max(removed, 0)

    # --------------------------------------------------------------------------- reading

    def _fd(self, seg: int) -> int:
        fd = self._fds.get(seg)
        if fd is None:
            # The writer's descriptors may be appended to, whichever call opened them first.
            flags = os.O_RDWR | os.O_APPEND | os.O_CREAT if self.writable else os.O_RDONLY
            fd = os.open(self._seg_path(seg), flags | os.O_CLOEXEC, 0o644)
            self._fds[seg] = fd
        return fd

    def _read(self, seg: int, off: int, length: int) -> Any:
        try:
            data = os.pread(self._fd(seg), length, off)
            return orjson.loads(data)
        except (OSError, orjson.JSONDecodeError):
            return None  # its segment was pruned meanwhile (by the worker)

    def _place(self, key: str) -> _Place | None:
        rows = self._query("SELECT seg, off, head, body FROM entries WHERE key = ?", (key,))
        return _Place(*rows[0]) if rows else None

    def order_of(self, key: str) -> int | None:
        rows = self._query("SELECT ord FROM entries WHERE key = ?", (key,))
        return int(rows[0][0]) if rows else None

    def head(self, key: str) -> Any:
        """The head of ``key``'s entry, parsed (None when there is no such entry)."""
        place = self._place(key)
        if place is None:
            return None
        record = self._read(place.seg, place.off, place.head)
        return head_of(record) if record is not None else None

    def entry(self, key: str) -> tuple[Any, Any] | None:
        """``(head, body)`` of ``key``'s entry, parsed."""
        place = self._place(key)
        if place is None:
            return None
        head = self._read(place.seg, place.off, place.head)
        body = self._read(place.seg, place.off + place.head, place.body)
        if head is None or body is None:
            return None
        return head_of(head), body_of(body)

    def page(self, tag: str | None, before: int | None, limit: int) -> list[tuple[int, str, Any]]:
        """Up to ``limit`` entries with ``tag`` (any, for None), highest order first, below
        ``before``: ``(order, key, head)``."""
        # SQLite's integers are 64-bit: a bound past them (a client's ?limit=10**23) means "all".
        below = _ALL if before is None else max(-_ALL, min(before, _ALL))
        limit = min(limit, _ALL)
        if tag is None:
            sql = (
                "SELECT ord, key, seg, off, head FROM entries WHERE ord < ? "
                "ORDER BY ord DESC LIMIT ?"
            )
            rows = self._query(sql, (below, limit))
        else:
            sql = (
                "SELECT t.ord, t.key, e.seg, e.off, e.head FROM tags t JOIN entries e "
                "ON e.key = t.key WHERE t.tag = ? AND t.ord < ? ORDER BY t.ord DESC LIMIT ?"
            )
            rows = self._query(sql, (tag, below, limit))
        out = []
        for order, key, seg, off, head_len in rows:
            record = self._read(seg, off, head_len)
            if record is not None:
                out.append((order, key, head_of(record)))
        return out

    def count(self, tag: str = "") -> int:
        """Entries with ``tag`` ("" for all)."""
        if self.writable:
            return self._counts.get(tag, 0)
        rows = self._query("SELECT n FROM counts WHERE tag = ?", (tag,))
        return int(rows[0][0]) if rows else 0

    def oldest(self) -> int | None:
        """The smallest ``at`` of the entries (None when there are none)."""
        rows = self._query("SELECT min(at) FROM entries", ())
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def __iter__(self) -> Iterator[tuple[str, Any, Any]]:
        """Every entry ``(key, head, body)``, in no particular order (tests, tools)."""
        for (key,) in self._query("SELECT key FROM entries"):
            found = self.entry(key)
            if found is not None:
                yield key, found[0], found[1]

    def close(self) -> None:
        if self.writable and self._unsynced:
            self.sync()
        self._write_lock.acquire()  # an add still running in a thread finishes first
        self._write_lock.release()
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        for db in (self._db, self._wdb):
            if db is not None:
                db.close()
        self._db = self._wdb = None
