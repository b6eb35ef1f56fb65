"""One log of the PostgreSQL store: the rows of ``platform.log_lines`` for one name.

Invariants (the contract's, as this table keeps them):

- **Writers take turns per log, and sequence numbers commit in order.** A commit cycle is two
  round trips on the log's own connection. The first (``platform.log_enter``) takes the log's
  advisory lock, then, in a statement of its own (so its snapshot sees whatever the previous
  holder committed), reads the lines other connections appended since we last looked, which
  are applied; this turn's submissions are prepared against that state. The second inserts
  their lines as the next sequence numbers, notifies the other connections, commits, and only
  then releases the lock. While the lock is leased (below) that second round trip is one
  prepared statement in its own transaction (``_APPEND``: the server plans it once, not the
  script each time); the one that releases the lock sends the script, the release after its
  ``COMMIT``. A reader paging by ``seq > last`` can never skip a line that commits
  later. A cycle interrupted between the two ends its connection, which frees the lock.
- **Acknowledged means committed.** A submission's future resolves after ``COMMIT`` returned
  (with ``synchronous_commit`` on under ``fsync`` durability: on the server's disk). Submissions
  made while a cycle is in flight wait for the next one, so one transaction carries many
  records (group commit).
- **The state only keeps committed records.** Applies run before the commit (the next prepare
  must see the previous one's record); if the commit fails, the log replays from the database
  and every submission of that cycle fails with ``StoreError``, except when the database
  refused a document write (``docrules.py``): then each of the cycle's submissions is prepared
  again in a cycle of its own, so only the offending one fails, with the service's error
  (``DuplicateKey``, ``StaleWrite``, ``ValueError``).
- **Compaction keeps every append.** ``rewrite`` writes the live lines as the next generation
  while appends go on, then, with the row locked, copies what was appended meanwhile after them
  and flips the generation in one transaction; a reader that sees a new generation replays it.

Size (over 400 lines, on purpose): the commit cycle, its lease on the lock, catching up and the
rewrite share the log's position, generation and lock; apart they would race.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from platform_shim.errors import StoreError
from platform_shim.store.jsonl import bulk_load
from platform_shim.store.postgres.errors import refusal, session_ended
from platform_shim.store.protocol import Consumer, Prepare
from platform_shim.store.turns import OncePerTurn, apply_line

if TYPE_CHECKING:
    import asyncpg

    from platform_shim.store.postgres.store import PostgresStore

__all__ = ["CHANNEL", "PostgresLog", "log_lock_key"]

T = TypeVar("T")
log = logging.getLogger("platform_shim.store")

LEASE_GRACE_S = 0.003
"""How long a writer keeps a log's lock after a commit, for the next cycle to reuse."""
LEASE_MAX_S = 0.02
"""The longest a writer holds a log's lock across cycles before giving others a turn."""

CHANNEL = "platform_store"
"""The LISTEN/NOTIFY channel: payload ``"<connection token> <log name>"``."""

Rows = list[tuple[int, bytes]]

# Lines past ``$2`` of the current generation, or all of them when the caller's generation
# (``$3``) is not the current one. One row with a NULL seq when there is nothing new.
_FETCH = """
SELECT g.generation, l.seq, l.line FROM platform.logs g
LEFT JOIN platform.log_lines l ON l.log = g.name AND l.generation = g.generation
    AND l.seq > CASE WHEN g.generation = $3 THEN $2 ELSE 0 END
WHERE g.name = $1 ORDER BY l.seq
"""


# A leased cycle's insert, notify and commit: one statement, so one implicit transaction. A
# cycle whose records need not wait for the disk turns synchronous_commit off for it alone.
_APPEND = """
WITH added AS (
    INSERT INTO platform.log_lines (log, generation, seq, line)
    SELECT $1, $2, $3 + o - 1, l FROM unnest($4::bytea[]) WITH ORDINALITY AS t(l, o)
) SELECT pg_notify($5, $6)
"""
_APPEND_RELAXED = _APPEND.rstrip() + ", set_config('synchronous_commit', 'off', true)\n"


def log_lock_key(name: str) -> int:
    """The advisory lock key of log ``name`` (a signed 64-bit hash of it)."""
    digest = hashlib.blake2b(f"platform.log:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _rows(found: list[asyncpg.Record]) -> tuple[int, Rows]:
    generation = int(found[0]["generation"])
    return generation, [(int(r["seq"]), bytes(r["line"])) for r in found if r["seq"] is not None]


class _Submission:
    __slots__ = ("durable", "future", "prepare", "result", "solo")

    def __init__(self, prepare: Prepare[Any], future: asyncio.Future[Any], durable: bool) -> None:
        self.prepare = prepare
        self.future = future
        self.durable = durable
        self.result: Any = None
        self.solo = False  # retried in a cycle of its own (its batch was refused)


class PostgresLog(OncePerTurn):
    """A ``Log`` whose records are rows of ``platform.log_lines``."""

    def __init__(self, store: PostgresStore, name: str, consumer: Consumer) -> None:
        self.name = name
        self._store = store
        self._bridge = store.bridge
        self._consumer = consumer
        self._generation = 0  # 0: nothing loaded yet
        self._position = 0  # seq of the last line applied or written, in ``_generation``
        self._size = 0
        self._queue: deque[_Submission] = deque()
        self._task: asyncio.Task[None] | None = None
        self._busy = False  # a cycle's transaction is open: refresh waits for it
        self._cycle_end: asyncio.Future[None] | None = None  # resolved when that cycle ends
        # The lease: after a commit we keep the log's lock for LEASE_GRACE_S in case another
        # cycle follows (it then skips the round trip that takes the lock and catches up), but
        # never past LEASE_MAX_S of holding it, so other writers get their turn.
        self._held = False
        self._held_since = 0.0
        self._release_due = False
        self._grace: asyncio.TimerHandle | None = None
        self._rewriting = False
        self._swapping = False  # a compaction step is under way: cycles wait for _resume
        # The writer's connection, on the loop that submits (``writers.py``): no thread hop.
        self._conn: asyncpg.Connection | None = None
        self._conn_loop: asyncio.AbstractEventLoop | None = None
        self._key = log_lock_key(name)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._bridge.run(
            store.execute(
                "INSERT INTO platform.logs (name) VALUES ($1) ON CONFLICT DO NOTHING", name
            )
        )
        with bulk_load():
            self._apply(*self._bridge.run(self._fetch()))

    # ------------------------------------------------------------------ reading and applying

    async def _fetch(self) -> tuple[int, Rows]:
        found = await self._store.fetch(_FETCH, self.name, self._position, self._generation)
        return _rows(found)

    def _apply(self, generation: int, rows: Rows) -> int:
        """Apply ``rows`` (replaying from the start when the generation moved on)."""
        if generation != self._generation:
            self._consumer.reset()
            self._generation, self._position, self._size = generation, 0, 0
        count = 0
        for seq, line in rows:
            self._position = seq
            self._size += len(line) + 1
            where = f"{self._store.location} log {self.name!r} line {seq}"
            count += apply_line(self._consumer, line, where)
        return count

    def refresh(self) -> int:
        if self._busy or self._swapping:
            return 0  # the cycle under way caught up when it began
        return self._apply(*self._bridge.run(self._fetch()))

    def _reload(self) -> None:
        """Replay everything: the state may hold records whose commit failed."""
        self._generation = 0
        with bulk_load():
            self._apply(*self._bridge.run(self._fetch()))

    def has_pending(self) -> bool:
        return bool(self._queue) or self._busy

    def size(self) -> int:
        return self._size

    def line_count(self) -> int:
        return self._position

    # ------------------------------------------------------------------------- appending

    def submit(self, prepare: Prepare[T], *, durable: bool = True) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            self._bind(loop)
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append(_Submission(prepare, future, durable))
        self._schedule()
        return future

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        # A client outliving an ``asyncio.run``: what the old loop left was never acknowledged,
        # and a transaction it left open must not keep the log's row locked.
        if self.loop is not None:
            self._queue.clear()
            self._task = None
            if self._busy or self._held:
                self._busy = False
                self._drop_writer()
                self._reload()
        self.loop = loop

    def _schedule(self) -> None:
        if (
            self._task is None
            and not self._swapping
            and (self._queue or (self._held and self._release_due))
            and self.loop is not None
        ):
            self._task = self.loop.create_task(self._cycles(), name=f"commit {self.name}")

    async def _cycles(self) -> None:
        try:
            while not self._swapping:
                if self._queue:
                    if self._queue[0].solo:
                        batch = [self._queue.popleft()]
                    else:
                        batch = list(self._queue)
                        self._queue.clear()
                    await self._commit(batch)
                elif self._held and self._release_due:
                    await self._release()
                else:
                    break
        finally:
            self._task = None
            self._schedule()

    def _grace_over(self) -> None:
        self._grace = None
        self._release_due = True
        self._schedule()

    async def _release(self) -> None:
        """End the lease: give the log's lock back (idle for a grace period, or compacting)."""
        self._release_due = False
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        if not self._held:
            return
        self._held = False
        conn = self._conn
        try:
            assert conn is not None
            await conn.execute(f"SELECT pg_advisory_unlock({self._key})")
        except Exception:
            self._drop_writer()  # the session is gone or going: the lock goes with it
        except BaseException:
            self._drop_writer()
            raise

    async def _commit(self, batch: list[_Submission]) -> None:
        batch = [sub for sub in batch if not sub.future.done()]
        if not batch:
            return
        if self._store.lock_lost:
            _fail(batch, StoreError(None, f"{self._store.location}: this worker lost its lock"))
            return
        self._busy = True
        assert self.loop is not None
        self._cycle_end = ended = self.loop.create_future()
        completed = False
        try:
            if self._held and (self._conn is None or self._conn.is_closed()):
                # The session ended during our lease (with it the lock); nothing was in flight,
                # so this cycle takes the lock again on a new one.
                self._drop_writer()
            if self._held:
                # Our lease: nobody appended since our last commit (they would need the lock).
                generation, rows = self._generation, list[tuple[int, bytes]]()
            else:
                try:
                    generation, rows = await self._enter()
                except Exception as exc:
                    _fail(batch, self._error("could not begin a commit", exc))
                    return
                self._held = True
                self._held_since = self.loop.time()
            self._apply(generation, rows)
            lines: list[bytes] = []
            done: list[_Submission] = []
            durable = False
            for sub in batch:
                if sub.future.done():
                    continue
                try:
                    line, apply = sub.prepare()
                except Exception as exc:
                    sub.future.set_exception(exc)
                    continue
                if line is not None:
                    lines.extend(line.split(b"\n"))
                    durable = durable or sub.durable
                if apply is not None:
                    try:
                        sub.result = apply()
                    except Exception as exc:  # a bug in a fold; the record is still written
                        log.exception(
                            "log %r: applying a record this process wrote failed", self.name
                        )
                        sub.future.set_exception(exc)
                        continue
                done.append(sub)
            keep = self.loop.time() - self._held_since < LEASE_MAX_S
            try:
                await self._leave(generation, self._position + 1, lines, durable, keep=keep)
            except Exception as exc:
                refused = refusal(exc)
                # A refusal leaves the session sound and the lock ours (the unlock after the
                # COMMIT never ran): end its transaction and keep both, so the retries below
                # need no new connection. Any other failure ends the session.
                if refused is None or not await self._roll_back():
                    self._drop_writer()
                self._busy = False
                self._reload()
                if self._held:
                    self._lease()
                completed = True
                if refused is not None and len(done) > 1:
                    # One write broke a document rule: the others must not fail with it. Each
                    # is prepared again, against the state as committed, in a cycle of its own
                    # (only stream submissions reach the events log, and preparing one again
                    # is what a later cycle would do).
                    for sub in reversed(done):
                        sub.solo = True
                        self._queue.appendleft(sub)
                    return
                _fail(done, refused or self._error("could not commit", exc))
                return
            self._position += len(lines)
            self._size += sum(len(line) + 1 for line in lines)
            self._held = keep
            if keep:
                self._lease()
            completed = True
        finally:
            self._busy = False
            if not completed and self._held:
                self._drop_writer()  # cancelled between the round trips: free the lock
            if not ended.done():
                ended.set_result(None)
        for sub in done:
            if not sub.future.done():
                sub.future.set_result(sub.result)

    def _lease(self) -> None:
        """Keep the log's lock for a grace period, for the next cycle."""
        assert self.loop is not None
        if self._grace is not None:
            self._grace.cancel()
        self._release_due = False
        self._grace = self.loop.call_later(LEASE_GRACE_S, self._grace_over)

    async def _roll_back(self) -> bool:
        """End a refused commit's transaction on the writer's session; False if that failed
        (the caller then ends the session)."""
        conn = self._conn
        if conn is None:
            return False
        try:
            await conn.execute("ROLLBACK")
        except Exception:
            return False
        return True

    def _error(self, what: str, exc: BaseException) -> StoreError:
        return StoreError(None, f"{what} to log {self.name!r} on {self._store.location}: {exc}")

    def _drop_writer(self) -> None:
        """End the writer's session (and with it any lock or transaction it holds)."""
        self._held = False
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        conn, self._conn = self._conn, None
        if conn is not None and self._conn_loop is not None:
            self._store.writers.drop(conn, self._conn_loop)

    async def _enter(self) -> tuple[int, Rows]:
        """Round trip 1: take the log's lock and read what others appended since we looked.
        It writes nothing, so when the session we kept turns out to have ended, it is tried
        once more on a new one."""
        loop = asyncio.get_running_loop()
        while True:
            fresh = False
            try:
                if self._conn is None or self._conn.is_closed() or self._conn_loop is not loop:
                    self._drop_writer()
                    self._conn = await self._store.writers.open()
                    self._conn_loop = loop
                    fresh = True
                found = await self._conn.fetch(
                    "SELECT * FROM platform.log_enter($1, $2, $3, $4)",
                    self.name,
                    self._key,
                    self._position,
                    self._generation,
                )
                break
            except Exception as exc:
                self._drop_writer()  # it may hold the lock by now
                if fresh or not session_ended(exc):
                    raise
            except BaseException:
                self._drop_writer()
                raise
        generation = int(found[0]["g"])
        return generation, [(int(r["s"]), bytes(r["l"])) for r in found if r["s"] is not None]

    async def _leave(
        self, generation: int, first: int, lines: list[bytes], durable: bool, *, keep: bool
    ) -> None:
        """Round trip 2, one simple-protocol message: insert, notify and commit in one
        transaction, then release the lock (after the commit, so the next holder sees it),
        unless we ``keep`` it as a lease for the next cycle."""
        unlock = "" if keep else f"SELECT pg_advisory_unlock({self._key})"
        conn = self._conn
        assert conn is not None
        relaxed = not durable and self._store.durability == "fsync"
        if lines and keep:
            await conn.fetch(
                _APPEND_RELAXED if relaxed else _APPEND,
                self.name,
                generation,
                first,
                lines,
                CHANNEL,
                f"{self._store.token} {self.name}",
            )
            return
        if lines:
            values = ",".join(
                f"({seq},decode('{line.hex()}','hex'))" for seq, line in enumerate(lines, first)
            )
            script = (
                "BEGIN;"
                + ("SET LOCAL synchronous_commit = off;" if relaxed else "")
                + "INSERT INTO platform.log_lines (log, generation, seq, line)"
                f" SELECT '{self.name}', {generation}, v.s, v.l FROM (VALUES {values}) AS v(s, l);"
                f"SELECT pg_notify('{CHANNEL}', '{self._store.token} {self.name}');"
                f"COMMIT;{unlock}"
            )
        else:
            script = unlock
        if script:
            await conn.execute(script)

    async def barrier(self) -> None:
        """Wait until every record applied so far is committed: the cycle under way, if any
        (queued submissions are neither written nor applied yet, as in the file store)."""
        ended = self._cycle_end
        if ended is not None and not ended.done():
            await asyncio.shield(ended)

    # ------------------------------------------------------------------------ compaction

    async def _quiesce(self) -> None:
        """With ``_swapping`` set: wait for the cycle under way (new ones wait for _resume)."""
        task = self._task
        if task is not None and not task.done():
            await asyncio.wait({task})

    def _resume(self) -> None:
        self._swapping = False
        self._schedule()

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
            self._swapping = True
            try:
                await self._quiesce()
                self._apply(*await self._bridge.call(self._fetch()))
                lines = take()
                start, generation = self._position, self._generation
            finally:
                self._resume()
            new = await asyncio.to_thread(_split, lines)
            await self._bridge.call(self._store.write_generation(self.name, generation, new))
            if before_rename is not None:
                await asyncio.to_thread(before_rename)
            self._swapping = True
            try:
                await self._quiesce()
                await self._release()  # the swap takes the log's lock itself
                moved = await self._bridge.call(
                    self._store.swap_generation(self.name, generation, start, len(new))
                )
                # What others appended since we last looked is applied; ours already was.
                self._apply(
                    generation, [(seq, line) for seq, line in moved if seq > self._position]
                )
                self._generation = generation + 1
                self._position = len(new) + len(moved)
                self._size = sum(len(line) + 1 for line in new)
                self._size += sum(len(line) + 1 for _, line in moved)
            finally:
                self._resume()
        finally:
            self._rewriting = False
        await self._bridge.call(self._store.drop_generations(self.name, generation + 1))

    def close(self) -> None:
        self._queue.clear()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
        self._drop_writer()


def _fail(subs: list[_Submission], exc: BaseException) -> None:
    for sub in subs:
        if not sub.future.done():
            sub.future.set_exception(exc)


def _split(lines: Iterable[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for line in lines:
        out.extend(line.split(b"\n") if b"\n" in line else (line,))
    return out
