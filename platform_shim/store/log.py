"""One append-only JSON-lines log shared by every process on a data folder.

Invariants this module keeps:

- **Acknowledged means on disk.** A submission's future resolves only after its line was
  written and, under ``fsync`` durability, fsync'd. Writers that wait at the same moment share
  one fsync (group commit); the fsync runs on the store's flusher thread, never on the loop.
- **One commit cycle at a time, in order.** Submissions made during one turn of the event loop
  are written in one cycle, in submission order, under the cross-process append lock, after
  the log has caught up with every line other processes appended. So ``prepare`` validates
  against the latest state, and the file order is the order in which every process's in-memory
  state applies records.
- **Nothing half-written.** A write that fails (disk full, permissions) is truncated away and
  fails that submission alone with ``StoreError``; the state only ever holds records that are in
  the file. A torn line left by a process that died mid-append (nobody was told it was
  written) is cut off by the next writer holding the lock, so it can neither glue itself onto a
  good record nor, if it happens to parse, come back to life at the next load.
- **A damaged number costs one line.** A record its consumer finds out of order (``OutOfOrder``)
  while the log loads makes the load start again keeping the longest run of lines in order
  (``store.order``), so a line claiming too high a number never hides the intact ones after it.
  Lines appended later by live writers are in order; one that is not is skipped alone.
- **Compaction never holds the loop and never drops an append.** ``rewrite`` takes the live
  state on the loop, writes and fsyncs it on a thread while appends go on, then copies what was
  appended meanwhile after it and renames it in place (``store/rewrite.py``).
- **Tail by offset.** ``refresh`` applies whatever was appended since this process last looked;
  a file replaced by another process's compaction (new inode) is replayed from the start.

Size (over 400 lines, on purpose): the commit cycle, catching up with other processes and the
rewrite share the log's file position and lock; apart they would race.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from platform_shim.errors import StoreError
from platform_shim.store.jsonl import bulk_load, iter_records, write_all
from platform_shim.store.lock import AppendLock
from platform_shim.store.order import longest_increasing
from platform_shim.store.protocol import Consumer, OutOfOrder, Prepare
from platform_shim.store.rewrite import NewFile, in_thread
from platform_shim.store.turns import OncePerTurn

if TYPE_CHECKING:
    from platform_shim.store.filestore import FileStore

__all__ = ["FileLog"]

T = TypeVar("T")
log = logging.getLogger("platform_shim.store")

# How long to wait before retrying a commit cycle when another process holds the append lock.
_LOCK_RETRY_S = 0.0005


class _Submission:
    __slots__ = ("durable", "end", "future", "prepare", "result")

    def __init__(self, prepare: Prepare[Any], future: asyncio.Future[Any], durable: bool) -> None:
        self.prepare = prepare
        self.future = future
        self.durable = durable
        self.end = 0
        self.result: Any = None


class FileLog(OncePerTurn):
    """A ``Log`` backed by ``<data>/<name>.jsonl``."""

    def __init__(self, store: FileStore, name: str, consumer: Consumer) -> None:
        self.name = name
        self.path = store.log_path(name)
        self._store = store
        self._consumer = consumer
        self._lock = AppendLock(store.lock_dir / f"{name}.lock")
        self._fd = -1
        self._ino = 0
        self._offset = 0  # bytes of the file this process has applied (or written)
        self._lineno = 1  # number of the next line, for warnings
        self._disordered = 0  # the line of the first record out of order met while loading
        self._ordered = bool(getattr(consumer, "order_key", None))  # see _reload_in_order
        self._queue: deque[_Submission] = deque()
        self._unsynced: deque[_Submission] = deque()
        self._cycle_scheduled = False
        self._flush_stage = 0  # 0: none pending; 1, 2: loop turns left before asking for an fsync
        self.loop: asyncio.AbstractEventLoop | None = None
        self.generation = 0  # bumped when the fd changes, so a late fsync report is ignored
        self.written = 0  # end offset of our last write (read by the flusher thread)
        self.synced = 0  # everything before this offset is known durable
        self._rewriting = False  # a compaction is under way (one at a time)
        self._swapping = False  # its last step holds the append lock across awaits
        self._open_and_load()

    # ----------------------------------------------------------------- loading and tailing

    def _open_and_load(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        st = os.fstat(fd)
        self._fd, self._ino = fd, st.st_ino
        self.generation += 1
        self._offset = 0
        self._lineno = 1
        with bulk_load():  # the reset loads the snapshots: as many objects as the log, or more
            self._consumer.reset()
            self._disordered = 0
            self._read_to_end(final=False, loading=True)
            if self._disordered:
                self._reload_in_order()
        self.written = self.synced = self._offset

    def _reload_in_order(self) -> None:
        """Load again, skipping the lines that break the order of ``order_key`` (see
        ``store.order``): a line claiming a number too high must not push out the lines after it."""
        key: str = getattr(self._consumer, "order_key", "")
        data = os.pread(self._fd, self._offset, 0)
        numbered = [
            (lineno, record[key])
            for lineno, record, _ in iter_records(data, self.path, final=False, quiet_until=1 << 62)
            if type(record.get(key)) is int
        ]
        kept = longest_increasing([number for _, number in numbered])
        skip: dict[int, int] = {}
        for position, (lineno, number) in enumerate(numbered):
            if position not in kept:
                skip[lineno] = number
        for lineno, number in skip.items():  # in the order of the file
            log.warning(
                "%s:%d: skipped a record whose %s %d is out of order with the lines around it",
                self.path,
                lineno,
                key,
                number,
            )
        self._offset = 0
        self._lineno = 1
        self._consumer.reset()
        self._read_to_end(final=False, skip=skip, quiet_until=self._disordered)

    def _read_to_end(
        self,
        *,
        final: bool,
        loading: bool = False,
        skip: dict[int, int] | None = None,
        quiet_until: int = 0,
    ) -> int:
        """Apply the lines appended since ``_offset``.

        ``loading``: the first pass of a load, which stops at the first record out of order
        (the load is then redone by ``_reload_in_order``). ``skip``: that second pass, which
        skips the lines out of order; the first pass warned about the lines up to
        ``quiet_until`` already.
        """
        size = os.fstat(self._fd).st_size
        if size < self._offset:
            # Shrunk under us: only a failed write's truncation or a hand edit does that.
            log.warning(
                "%s shrank from %d to %d bytes; reloading it", self.path, self._offset, size
            )
            self._reopen()
            return 0
        if size == self._offset:
            return 0
        data = os.pread(self._fd, size - self._offset, self._offset)
        # The fragment after the last newline (a line still being written, or torn) is left
        # for later: iter_records without ``final`` skips it, so ``data`` is not copied to cut it.
        end = data.rfind(b"\n") + 1
        count = 0
        apply = self._consumer.apply
        records = iter_records(data, self.path, self._lineno, final=False, quiet_until=quiet_until)
        for lineno, record, line in records:
            if skip is not None and lineno in skip:
                continue
            try:
                apply(record, line)
            except OutOfOrder as exc:
                if loading and self._ordered:
                    # The load is redone in order (_reload_in_order): applying more is waste.
                    self._disordered = lineno
                    break
                log.warning("%s:%d: skipped a record out of order (%s)", self.path, lineno, exc)
                continue
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                if lineno > quiet_until:
                    log.warning("%s:%d: skipped an unreadable record (%r)", self.path, lineno, exc)
                continue
            count += 1
        self._lineno += data.count(b"\n")
        self._offset += end
        if end < len(data) and final:
            # We hold the append lock, so no live writer owns this fragment: its writer died
            # before the write ended, so nobody was told it was written. Cut it off: left in
            # place and terminated, a fragment that happens to be a whole record without its
            # newline would come back to life at the next load, unseen by this process now.
            log.warning(
                "%s:%d: removed a torn line (a writer died mid-append)", self.path, self._lineno
            )
            os.ftruncate(self._fd, self._offset)
        return count

    def _replaced(self) -> bool:
        try:
            return os.stat(self.path).st_ino != self._ino
        except FileNotFoundError:
            return True

    def _reopen(self) -> None:
        if self._unsynced:
            self._sync_now()
        os.close(self._fd)
        self._open_and_load()

    def refresh(self) -> int:
        """Apply what other processes appended since we last looked."""
        if self._swapping:
            return 0  # we hold the append lock and are caught up; the file is being renamed
        if self._replaced():
            self._reopen()
            return 0
        return self._read_to_end(final=False)

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def line_count(self) -> int:
        """Lines in the file as this process has read or written it."""
        return self._lineno - 1

    # -------------------------------------------------------------------------- appending

    def submit(self, prepare: Prepare[T], *, durable: bool = True) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            self._bind(loop)
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append(_Submission(prepare, future, durable))
        if not self._cycle_scheduled:
            self._cycle_scheduled = True
            loop.call_soon(self._cycle)
        return future

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        # A client platform outlives an ``asyncio.run``; whatever the old loop left pending
        # was written (and is synced here) or was never acknowledged to anyone.
        if self.loop is not None:
            self._queue.clear()
            self._unsynced.clear()
            if self.synced < self.written:
                os.fsync(self._fd)
                self.synced = self.written
            self._cycle_scheduled = False
            self._flush_stage = 0
        self.loop = loop

    def has_pending(self) -> bool:
        """Whether submissions wait for a commit cycle (not yet written nor applied)."""
        return bool(self._queue)

    def _cycle(self) -> None:
        self._cycle_scheduled = False
        if not self._queue or self._swapping:
            return  # the swap's end (_resume) schedules the next cycle
        if not self._lock.try_acquire():
            # Another process is appending; its critical section is a few writes long.
            assert self.loop is not None
            self._cycle_scheduled = True
            self.loop.call_later(_LOCK_RETRY_S, self._cycle)
            return
        released: list[_Submission] = []
        wrote = False
        try:
            if not self._store.worker and self._replaced():
                self._reopen()
            else:
                self._read_to_end(final=True)
            durable_mode = self._store.durability == "fsync"
            queue = self._queue
            while queue:
                sub = queue.popleft()
                if sub.future.done():  # cancelled by its caller before we got to it
                    continue
                try:
                    line, apply = sub.prepare()
                except Exception as exc:
                    sub.future.set_exception(exc)
                    continue
                if line is not None:
                    try:
                        self._append(line)
                    except StoreError as exc:
                        sub.future.set_exception(exc)
                        continue
                    wrote = True
                if apply is not None:
                    try:
                        sub.result = apply()
                    except Exception as exc:  # a bug in a fold; the record is in the file
                        log.exception("%s: applying a record this process wrote failed", self.path)
                        sub.future.set_exception(exc)
                        continue
                sub.end = self._offset
                if durable_mode and sub.durable and line is not None:
                    self._unsynced.append(sub)
                else:
                    released.append(sub)
        finally:
            self._lock.release()
        if wrote:
            self._store.ring()
        for sub in released:
            if not sub.future.done():
                sub.future.set_result(sub.result)
        if self._unsynced and not self._flush_stage:
            assert self.loop is not None
            self._flush_stage = 2
            self.loop.call_soon(self._flush_soon)

    def _flush_soon(self) -> None:
        # Ask for the fsync two loop turns after the write, not at once: work this write made
        # ready (a run started by this record finishing its first step, say) gets to append its
        # own records first, and one fsync covers them all. Each turn costs microseconds; each
        # fsync avoided saves ~200.
        self._flush_stage -= 1
        if self._flush_stage:
            assert self.loop is not None
            self.loop.call_soon(self._flush_soon)
        elif self._unsynced:
            self._store.flusher.request(self)

    def _append(self, line: bytes) -> None:
        data = line + b"\n"
        start = self._offset
        try:
            write_all(self._fd, data)
        except OSError as exc:
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                log.exception(
                    "%s: could not truncate a failed write at offset %d", self.path, start
                )
            raise StoreError(exc.errno, f"could not append to {self.path}: {exc.strerror}") from exc
        self._offset += len(data)
        self._lineno += data.count(b"\n")
        self.written = self._offset

    # ------------------------------------------------------------------------- durability

    def fd(self) -> int:
        return self._fd

    def on_synced(self, upto: int, generation: int, error: OSError | None) -> None:
        """Called on the loop by the flusher once everything before ``upto`` was fsync'd."""
        if generation != self.generation:
            # An fsync of a file we have since replaced; whoever waited was released then.
            if self._unsynced:
                self._store.flusher.request(self)
            return
        if error is None:
            self.synced = max(self.synced, upto)
        queue = self._unsynced
        while queue and queue[0].end <= upto:
            sub = queue.popleft()
            if sub.future.done():
                continue
            if error is None:
                sub.future.set_result(sub.result)
            else:
                sub.future.set_exception(
                    StoreError(error.errno, f"could not fsync {self.path}: {error.strerror}")
                )
        if queue:
            self._store.flusher.request(self)

    def _sync_now(self) -> None:
        os.fsync(self._fd)
        self.on_synced(self._offset, self.generation, None)

    async def barrier(self) -> None:
        if self._store.durability != "fsync" or self.synced >= self.written:
            return
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            self._bind(loop)
            return
        future: asyncio.Future[None] = loop.create_future()
        sub = _Submission(_never, future, True)
        sub.end = self.written
        self._unsynced.append(sub)
        self._store.flusher.request(self)
        await future

    # ------------------------------------------------------------------------- compaction

    async def rewrite(
        self,
        take: Callable[[], Iterable[bytes]],
        *,
        before_rename: Callable[[], None] | None = None,
    ) -> None:
        """Replace the file with the live records ``take()`` returns, without holding the loop.

        ``take`` runs on the loop, under the append lock, once the log has caught up with every
        process; it must return at once: lines made from a copy of the state (they are consumed
        on a thread while the state moves on). The lines are written beside the file and
        fsync'd off the loop while appends go on; then, under the lock, the records appended
        since ``take`` are copied after them and the new file is renamed over the old one
        (``platform_shim.store.rewrite``). Submissions made during that last step wait for it.
        """
        if self._rewriting:
            raise RuntimeError(f"{self.path} is already being rewritten")
        self._rewriting = True
        new = NewFile(self.path)
        cancelled = False
        try:
            await self._lock.acquire()
            try:
                self._catch_up()
                lines = take()
                start, generation = self._offset, self.generation
            finally:
                self._lock.release()
            _, cancelled = await in_thread(lambda: new.fill(lines))
            if cancelled:
                raise asyncio.CancelledError
            await self._lock.acquire()
            self._swapping = True
            try:
                self._catch_up()
                if self.generation != generation:
                    # Reloaded meanwhile (it shrank: a hand edit): ``start`` means nothing now.
                    raise StoreError(f"{self.path} was reloaded during its compaction")
                end = self._offset
                fd = self._fd
                _, cancelled = await in_thread(lambda: new.finish(fd, start, end, before_rename))
                self._swap(new)
            finally:
                self._swapping = False
                self._lock.release()
                self._resume()
            # The old file is unlinked: closing its last descriptor frees its blocks, which
            # takes tens of ms for a big file. Not on the loop.
            _, closed_late = await in_thread(lambda: os.close(fd))
            cancelled = cancelled or closed_late
        except BaseException:
            new.discard()
            raise
        finally:
            self._rewriting = False
        if cancelled:
            raise asyncio.CancelledError

    def _catch_up(self) -> None:
        if self._replaced():
            self._reopen()
        else:
            self._read_to_end(final=True)

    def _swap(self, new: NewFile) -> None:
        # The new file is in place and durable: append to it from now on (the caller closes
        # the old descriptor).
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        self._fd, self._ino = fd, os.fstat(fd).st_ino
        self.generation += 1
        self._offset = self.written = self.synced = new.size
        self._lineno = 1 + new.lines
        # Whatever waited for an fsync of the old file is in the new one, which is durable.
        self.on_synced(1 << 62, self.generation, None)
        self.synced = new.size
        if new.dir_error is not None:
            log.warning(
                "%s: compacted, but the folder could not be fsync'd (%s)", self.path, new.dir_error
            )

    def _resume(self) -> None:
        # Commit cycles deferred while the file was being swapped.
        if self._queue and not self._cycle_scheduled and self.loop is not None:
            self._cycle_scheduled = True
            self.loop.call_soon(self._cycle)

    def close(self) -> None:
        if self._fd >= 0:
            if self._unsynced or self.synced < self.written:
                self._sync_now()
            os.close(self._fd)
            self._fd = -1
        self._lock.close()


def _never() -> tuple[bytes, None]:  # pragma: no cover - barrier entries are never prepared
    raise AssertionError("a barrier is not a record")
