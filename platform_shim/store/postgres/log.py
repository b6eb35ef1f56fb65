"""One log of the PostgreSQL store: the rows of ``platform.log_lines`` for one name.

Invariants (the contract's, as this table keeps them):

- **Writers take turns per log, and sequence numbers commit in order.** A commit cycle runs in
  one transaction on the log's own connection: it locks the log's row in ``platform.logs``
  (``FOR UPDATE``), then, in a new statement (so its snapshot sees whatever the previous holder
  committed), reads the lines other connections appended since it last looked and applies them,
  prepares this turn's submissions against that state, inserts their lines as the next sequence
  numbers, notifies the other connections and commits. A reader paging by ``seq > last`` can
  never skip a line that commits later.
- **Acknowledged means committed.** A submission's future resolves after ``COMMIT`` returned
  (with ``synchronous_commit`` on under ``fsync`` durability: on the server's disk). Submissions
  made while a cycle is in flight wait for the next one, so one transaction carries many
  records (group commit).
- **The state only keeps committed records.** Applies run before the commit (the next prepare
  must see the previous one's record); if the commit fails, the log replays from the database
  and every submission of that cycle fails with ``StoreError``.
- **Compaction keeps every append.** ``rewrite`` writes the live lines as the next generation
  while appends go on, then, with the row locked, copies what was appended meanwhile after them
  and flips the generation in one transaction; a reader that sees a new generation replays it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from platform_shim.errors import StoreError
from platform_shim.store.jsonl import bulk_load
from platform_shim.store.protocol import Consumer, OutOfOrder, Prepare
from platform_shim.store.turns import OncePerTurn

if TYPE_CHECKING:
    import asyncpg

    from platform_shim.store.postgres.store import PostgresStore

__all__ = ["PostgresLog"]

T = TypeVar("T")
log = logging.getLogger("platform_shim.store")

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
_INSERT = f"""
WITH added AS (
    INSERT INTO platform.log_lines (log, generation, seq, line)
    SELECT $1, $2, s, l FROM unnest($3::bigint[], $4::bytea[]) AS t(s, l)
)
SELECT pg_notify('{CHANNEL}', $5)
"""


def _rows(found: list[asyncpg.Record]) -> tuple[int, Rows]:
    generation = int(found[0]["generation"])
    return generation, [(int(r["seq"]), bytes(r["line"])) for r in found if r["seq"] is not None]


class _Submission:
    __slots__ = ("durable", "future", "prepare", "result")

    def __init__(self, prepare: Prepare[Any], future: asyncio.Future[Any], durable: bool) -> None:
        self.prepare = prepare
        self.future = future
        self.durable = durable
        self.result: Any = None


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
        self._rewriting = False
        self._swapping = False  # a compaction step is under way: cycles wait for _resume
        self._conn: asyncpg.Connection | None = None  # the writer connection, on the bridge
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
        apply = self._consumer.apply
        count = 0
        for seq, line in rows:
            self._position = seq
            self._size += len(line) + 1
            where = f"{self._store.location} log {self.name!r} line {seq}"
            try:
                record = orjson.loads(line)
                if not isinstance(record, dict):
                    raise TypeError("not a JSON object")
                apply(record, line)
            except OutOfOrder as exc:
                log.warning("%s: skipped a record out of order (%s)", where, exc)
                continue
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
                log.warning("%s: skipped an unreadable record (%r)", where, exc)
                continue
            count += 1
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
            if self._busy:
                self._busy = False
                self._bridge.run(self._drop_writer())
                self._reload()
        self.loop = loop

    def _schedule(self) -> None:
        if self._task is None and not self._swapping and self._queue and self.loop is not None:
            self._task = self.loop.create_task(self._cycles(), name=f"commit {self.name}")

    async def _cycles(self) -> None:
        try:
            while self._queue and not self._swapping:
                batch = list(self._queue)
                self._queue.clear()
                await self._commit(batch)
        finally:
            self._task = None
            self._schedule()

    async def _commit(self, batch: list[_Submission]) -> None:
        batch = [sub for sub in batch if not sub.future.done()]
        if not batch:
            return
        if self._store.lock_lost:
            _fail(batch, StoreError(None, f"{self._store.location}: this worker lost its lock"))
            return
        self._busy = True
        try:
            try:
                generation, rows = await self._bridge.call(self._begin())
            except Exception as exc:
                await self._bridge.call(self._drop_writer())
                _fail(batch, self._error("could not begin a commit", exc))
                return
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
            first = self._position + 1
            try:
                await self._bridge.call(self._finish(generation, first, lines, durable))
            except Exception as exc:
                await self._bridge.call(self._drop_writer())
                self._busy = False
                self._reload()
                _fail(done, self._error("could not commit", exc))
                return
            self._position += len(lines)
            self._size += sum(len(line) + 1 for line in lines)
        finally:
            self._busy = False
        for sub in done:
            if not sub.future.done():
                sub.future.set_result(sub.result)

    def _error(self, what: str, exc: BaseException) -> StoreError:
        return StoreError(None, f"{what} to log {self.name!r} on {self._store.location}: {exc}")

    async def _writer(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await self._store.connect()
        return self._conn

    async def _drop_writer(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()  # an open transaction ends with it; its row lock goes

    async def _begin(self) -> tuple[int, Rows]:
        conn = await self._writer()
        await conn.execute("BEGIN")
        await conn.execute("SELECT 1 FROM platform.logs WHERE name = $1 FOR UPDATE", self.name)
        # A new statement: its snapshot sees what the lock's previous holder committed.
        return _rows(await conn.fetch(_FETCH, self.name, self._position, self._generation))

    async def _finish(self, generation: int, first: int, lines: list[bytes], durable: bool) -> None:
        conn = self._conn
        assert conn is not None
        if lines:
            if not durable and self._store.durability == "fsync":
                await conn.execute("SET LOCAL synchronous_commit = off")
            seqs = list(range(first, first + len(lines)))
            await conn.execute(
                _INSERT, self.name, generation, seqs, lines, f"{self._store.token} {self.name}"
            )
        await conn.execute("COMMIT")

    async def barrier(self) -> None:
        """Wait until every submission made so far is committed (a no-op record queued last)."""
        if self._queue or self._busy or self._task is not None:
            await self.submit(lambda: (None, None))

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
        if self._bridge.alive:
            self._bridge.run(self._drop_writer_gently())

    async def _drop_writer_gently(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            await conn.close(timeout=5)


def _fail(subs: list[_Submission], exc: BaseException) -> None:
    for sub in subs:
        if not sub.future.done():
            sub.future.set_exception(exc)


def _split(lines: Iterable[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for line in lines:
        out.extend(line.split(b"\n") if b"\n" in line else (line,))
    return out
