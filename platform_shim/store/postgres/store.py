"""``PostgresStore``: the storage contract on one PostgreSQL database, shared by many hosts.

What the file store keeps in a folder, this keeps in the tables of schema version 2
(``schema.py``): each log in ``platform.log_lines`` (``log.py``), snapshots, blobs, the archive
(``archive.py``), and the worker's row. Opening a store migrates the database (safe when several
hosts start at once). Invariants beyond the logs':

- **One worker per database** (``worker.py``): a session advisory lock, held on a connection
  of its own; if that connection is lost, this store stops writing (``lock_lost``).
- **Wake-ups by LISTEN/NOTIFY.** Every commit notifies ``platform_store`` with the writer's
  token; a watch wakes on other stores' notifications, and polls besides, in case one was
  missed; a listening session the database ends is replaced at once.
- **A store alone on its database listens to nobody** (``listening.py``): it listens on
  ``platform_store`` only while another store's listener is connected (a newcomer says hello),
  so a lone host is not woken for each of its own commits.

- **Pooled connections carry no session state**: what runs on them takes transaction-scoped
  locks only and sets nothing but what ``_init_connection`` sets once. So the pool does not
  reset a connection it gets back (asyncpg's default costs a round trip per use: unlock all,
  close cursors, unlisten, reset settings, the last of which would undo ``_init_connection``);
  a transaction left open is still rolled back.

The pool, the listener and the worker's lock live on the store's ``Bridge`` thread
(``bridge.py``); each log's writer lives on the loop that submits (``writers.py``). ``location`` is the URL
with its password hidden; ``data_dir`` is a private temporary folder, as the memory store's.
``statements`` counts the statements each kind of connection sent (``"pool"``, ``"writer"``,
``"listener"``, ``"seat"``): a round trip each, once the statement is prepared.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from platform_shim.errors import StoreError
from platform_shim.store.jsonl import Record
from platform_shim.store.memory import check_digest, check_secret_name, new_secret
from platform_shim.store.postgres.archive import PostgresArchive
from platform_shim.store.postgres.bridge import Bridge
from platform_shim.store.postgres.connect import check_url, connect, redact
from platform_shim.store.postgres.documents import PostgresDocuments
from platform_shim.store.postgres.kvtable import PostgresKv
from platform_shim.store.postgres.listening import Listener
from platform_shim.store.postgres.log import CHANNEL, PostgresLog, log_lock_key
from platform_shim.store.postgres.schema import migrate
from platform_shim.store.postgres.watch import PostgresWatch
from platform_shim.store.postgres.worker import WorkerSeat
from platform_shim.store.postgres.writers import Writers
from platform_shim.store.protocol import Consumer, Durability

if TYPE_CHECKING:
    import asyncpg

__all__ = ["PostgresStore", "PostgresWatch"]

log = logging.getLogger("platform_shim.store")

_LOG_NAME = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")


class PostgresStore:
    """A ``Store`` on the PostgreSQL database at ``url`` (``postgresql://…/database``)."""

    def __init__(self, url: str, *, durability: Durability = "fsync") -> None:
        if durability not in ("fsync", "flush"):
            raise ValueError(f"durability must be 'fsync' or 'flush', not {durability!r}")
        check_url(url)
        self.url = url
        self.location = redact(url)
        self.durability: Durability = durability
        self.token = uuid.uuid4().hex[:16]  # tells our own notifications from others'
        self.worker = False
        self._closing = False
        self._logs: dict[str, PostgresLog] = {}
        self._watches: list[PostgresWatch] = []
        self.listener: Listener | None = None
        self._pool: asyncpg.Pool | None = None
        self.statements: Counter[str] = Counter()
        self.bridge = Bridge(f"postgres {self.location}")
        self.seat = WorkerSeat(self)
        self.writers = Writers(functools.partial(self.connect, "writer"))
        self._documents = PostgresDocuments(self)
        self._kv = PostgresKv(self)
        try:
            self.bridge.run(self._open())
        except BaseException:
            self.bridge.close()
            raise
        self.data_dir = Path(tempfile.mkdtemp(prefix="platform-shim-postgres-"))

    async def _open(self) -> None:
        import asyncpg

        conn = await self.connect("listener")
        try:
            await migrate(conn, where=self.location)
            listener = Listener(
                conn,
                self.token,
                self._poke_watches,
                functools.partial(self.connect, "listener"),
            )
            await listener.start()
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=4,
                init=self._init_pooled,
                reset=_keep_session,
                # Each execution planned for its parameters: a document query's best plan
                # depends on them (which partial index, how selective a value); a generic plan
                # chosen after five executions can be ten times slower (bench.docs_memory).
                server_settings={"plan_cache_mode": "force_custom_plan"},
            )
        except BaseException:
            await conn.close()
            raise
        self.listener = listener

    async def _init_connection(self, conn: asyncpg.Connection, role: str) -> None:
        conn.add_query_logger(functools.partial(_count, self.statements, role))
        if self.durability == "flush":
            # Acknowledged once written to the server, before its WAL reaches the disk: what
            # the file store's "flush" is (written to the OS, not fsync'd).
            await conn.execute("SET synchronous_commit = off")

    async def _init_pooled(self, conn: asyncpg.Connection) -> None:
        await self._init_connection(conn, "pool")

    async def connect(self, role: str) -> asyncpg.Connection:
        """A new connection of this store's for ``role`` (counted under that name in
        ``statements``), set up like the pool's."""
        conn = await connect(self.url)
        await self._init_connection(conn, role)
        return conn

    def pool_connection(self) -> Any:
        """``async with store.pool_connection() as conn``: a pooled connection (on the bridge)."""
        if self._pool is None:
            raise StoreError(None, f"the store on {self.location} is closed")
        return self._pool.acquire()

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self.pool_connection() as conn:
            rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
            return rows

    async def execute(self, sql: str, *args: Any) -> None:
        async with self.pool_connection() as conn:
            await conn.execute(sql, *args)

    def _poke_watches(self) -> None:
        """Another store committed (or appeared): every watch catches up."""
        for watch in list(self._watches):
            watch.poke()

    # ---------------------------------------------------------------------------- logs

    def open_log(self, name: str, consumer: Consumer) -> PostgresLog:
        if name in self._logs:
            raise ValueError(f"log {name!r} is already open in this store")
        if not name or not set(name) <= _LOG_NAME:
            raise ValueError(f"not a log name: {name!r}")
        opened = PostgresLog(self, name, consumer)
        self._logs[name] = opened
        return opened

    async def write_generation(self, name: str, generation: int, lines: list[bytes]) -> None:
        """Write ``lines`` as generation ``generation + 1`` of log ``name`` (not live yet),
        after removing what an earlier, interrupted compaction left."""
        async with self.pool_connection() as conn:
            await conn.execute(
                "DELETE FROM platform.log_lines WHERE log = $1 AND generation > $2",
                name,
                generation,
            )
            await conn.copy_records_to_table(
                "log_lines",
                schema_name="platform",
                records=((name, generation + 1, seq, line) for seq, line in enumerate(lines, 1)),
                columns=("log", "generation", "seq", "line"),
            )

    async def swap_generation(
        self, name: str, generation: int, start: int, count: int
    ) -> list[tuple[int, bytes]]:
        """Make generation ``generation + 1`` live, after copying into it the lines appended
        to ``generation`` past ``start``; returns those lines ``(old seq, line)``."""
        async with self.pool_connection() as conn, conn.transaction():
            # The log's lock, as a commit cycle takes it: no cycle runs while we swap.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", log_lock_key(name))
            current = await conn.fetchval(
                "SELECT generation FROM platform.logs WHERE name = $1", name
            )
            if current != generation:
                raise StoreError(None, f"log {name!r} was rewritten during its compaction")
            found = await conn.fetch(
                "SELECT seq, line FROM platform.log_lines"
                " WHERE log = $1 AND generation = $2 AND seq > $3 ORDER BY seq",
                name,
                generation,
                start,
            )
            moved = [(int(r["seq"]), bytes(r["line"])) for r in found]
            if moved:
                await conn.execute(
                    "INSERT INTO platform.log_lines (log, generation, seq, line)"
                    " SELECT $1, $2, s, l FROM unnest($3::bigint[], $4::bytea[]) AS t(s, l)",
                    name,
                    generation + 1,
                    list(range(count + 1, count + 1 + len(moved))),
                    [line for _, line in moved],
                )
            await conn.execute(
                "UPDATE platform.logs SET generation = $2 WHERE name = $1", name, generation + 1
            )
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, f"{self.token} {name}")
        return moved

    async def drop_generations(self, name: str, live: int) -> None:
        """Delete the lines of every generation of ``name`` but ``live`` (off the row lock)."""
        await self.execute(
            "DELETE FROM platform.log_lines WHERE log = $1 AND generation <> $2", name, live
        )

    # ------------------------------------------------------------------ archive, snapshots

    def open_archive(self, name: str, *, writable: bool) -> PostgresArchive:
        if not name.replace("-", "").isalnum():
            raise ValueError(f"not an archive name: {name!r}")
        return PostgresArchive(self, name, writable=writable)

    def read_snapshot(self, name: str) -> Iterator[Record]:
        found = self.bridge.run(
            self.fetch("SELECT lines FROM platform.snapshots WHERE name = $1", name)
        )
        if not found:
            return
        for line in bytes(found[0]["lines"]).split(b"\n"):
            if not line:
                continue
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                log.warning("%s: skipped an unreadable line of snapshot %r", self.location, name)
                continue
            if isinstance(record, dict):
                yield record

    def write_snapshot(self, name: str, lines: Iterable[bytes]) -> None:
        data = b"\n".join(lines)
        self.bridge.run(
            self.execute(
                "INSERT INTO platform.snapshots (name, lines) VALUES ($1, $2)"
                " ON CONFLICT (name) DO UPDATE SET lines = excluded.lines",
                name,
                data,
            )
        )

    # --------------------------------------------------------------------------- blobs

    def put_blob(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        self.bridge.run(
            self.execute(
                "INSERT INTO platform.blobs (digest, data, touched_at) VALUES ($1, $2, $3)"
                " ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at",
                digest,
                bytes(data),
                time.time(),
            )
        )
        return digest

    def read_blob(self, digest: str) -> bytes | None:
        check_digest(digest)
        found = self.bridge.run(
            self.fetch("SELECT data FROM platform.blobs WHERE digest = $1", digest)
        )
        return bytes(found[0]["data"]) if found else None

    def blob_digests(self) -> Iterator[tuple[str, float]]:
        found = self.bridge.run(self.fetch("SELECT digest, touched_at FROM platform.blobs"))
        return iter([(str(r["digest"]), float(r["touched_at"])) for r in found])

    def delete_blob(self, digest: str) -> None:
        check_digest(digest)
        self.bridge.run(self.execute("DELETE FROM platform.blobs WHERE digest = $1", digest))

    # --------------------------------------------------------------------------- secrets

    def secret(self, name: str, *, create: bool) -> bytes | None:
        check_secret_name(name)
        if create:  # the first insert wins; everyone reads the winner's
            self.bridge.run(
                self.execute(
                    "INSERT INTO platform.secrets (name, value) VALUES ($1, $2)"
                    " ON CONFLICT (name) DO NOTHING",
                    name,
                    new_secret(),
                )
            )
        found = self.bridge.run(
            self.fetch("SELECT value FROM platform.secrets WHERE name = $1", name)
        )
        return bytes(found[0]["value"]) if found else None

    # ------------------------------------------------------------------------- the worker

    def acquire_worker_lock(self) -> None:
        self.seat.take()
        self.worker = True

    def release_worker_lock(self) -> None:
        self.worker = False
        self.seat.leave()

    def worker_pid(self) -> int | None:
        return self.seat.holder_pid()

    def write_advert(self, advert: dict[str, Any]) -> None:
        self.seat.advertise(advert)

    def read_advert(self) -> dict[str, Any] | None:
        return self.seat.advert()

    @property
    def lock_lost(self) -> bool:
        return self.seat.lost

    # ---------------------------------------------------------------------------- watch

    def watch(self, on_change: Callable[[], None], *, poll_interval: float) -> PostgresWatch:
        return PostgresWatch(self._watches, on_change, poll_interval)

    def documents(self) -> PostgresDocuments:
        return self._documents

    def kv_table(self) -> PostgresKv:
        return self._kv

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        for opened in self._logs.values():
            opened.close()
        self._logs.clear()
        self.writers.close()
        self.release_worker_lock()
        if self.bridge.alive:
            with contextlib.suppress(Exception):
                self.bridge.run(self._close_connections(), timeout=15)
        self.bridge.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    async def _close_connections(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            await listener.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def __repr__(self) -> str:
        return f"<PostgresStore on {self.location!r}>"


def _count(statements: Counter[str], role: str, _: object) -> None:
    statements[role] += 1


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset: nothing (see the module's docstring; asyncpg still rolls back a
    transaction left open before it calls this)."""
