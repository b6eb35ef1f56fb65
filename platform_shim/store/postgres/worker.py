"""The worker's seat on a PostgreSQL store: one worker per database, across every host.

The worker holds a session advisory lock (``WORKER_LOCK``) on a connection of its own for as
long as it works. PostgreSQL releases it when that session ends, a SIGKILLed host's included
(its socket closes). The ``platform.worker`` row says who holds it (pid, host, backend) and what
it serves (the advert); the row counts only while its backend holds the lock, so a dead worker's
row is ignored without anyone cleaning it. Asking who the worker is reads ``pg_locks`` and takes
nothing: a probe never keeps a starting worker out. If the lock's connection is lost while we
hold it, ``lost`` is set and the store stops writing: another host may be the worker by then,
and two writers acting as the worker would race on the same runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

import orjson

from platform_shim.errors import DataDirLocked, StoreError

if TYPE_CHECKING:
    import asyncpg

    from platform_shim.store.postgres.store import PostgresStore

__all__ = ["WORKER_LOCK", "WorkerSeat"]

log = logging.getLogger("platform_shim.store")

WORKER_LOCK = 0x706C_6174_5F77_726B
"""The session advisory lock the worker holds ("plat_wrk" in ASCII)."""

# The worker's row, counted only while its backend holds the worker lock in this database
# (a bigint advisory key shows in pg_locks as classid = high half, objid = low half).
_HOLDER = f"""
SELECT w.pid, w.advert FROM platform.worker w
WHERE w.id = 1 AND EXISTS (
    SELECT 1 FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.granted AND l.pid = w.backend_pid
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = {WORKER_LOCK >> 32}::oid AND l.objid = {WORKER_LOCK & 0xFFFFFFFF}::oid
      AND l.objsubid = 1
)
"""


class WorkerSeat:
    """Taking, holding and leaving the worker lock of one ``PostgresStore``."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._conn: asyncpg.Connection | None = None
        self.lost = False

    def take(self) -> None:
        """Become the worker, or raise ``DataDirLocked`` naming the holder's pid."""
        if self._conn is not None:
            return
        if not self._store.bridge.run(self._take()):
            raise DataDirLocked(self._store.location, self.holder_pid())
        self.lost = False

    async def _take(self) -> bool:
        conn = await self._store.connect("seat")
        try:
            if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", WORKER_LOCK):
                await conn.close()
                return False
            await conn.execute(
                "INSERT INTO platform.worker (id, pid, hostname, backend_pid, advert)"
                " VALUES (1, $1, $2, pg_backend_pid(), NULL) ON CONFLICT (id) DO UPDATE SET"
                " pid = excluded.pid, hostname = excluded.hostname,"
                " backend_pid = excluded.backend_pid, advert = NULL",
                os.getpid(),
                socket.gethostname(),
            )
        except BaseException:
            conn.terminate()
            raise
        conn.add_termination_listener(self._on_lost)
        self._conn = conn
        return True

    def _on_lost(self, conn: Any) -> None:
        if conn is not self._conn:
            return
        self.lost = True
        log.error(
            "%s: the connection holding the worker lock was lost; this host stops writing"
            " (another host may be the worker now)",
            self._store.location,
        )

    def leave(self) -> None:
        """Stop being the worker (ending the lock's session releases the lock)."""
        conn, self._conn = self._conn, None
        if conn is not None and self._store.bridge.alive:
            self._store.bridge.run(self._leave(conn))

    async def _leave(self, conn: asyncpg.Connection) -> None:
        conn.remove_termination_listener(self._on_lost)
        if conn.is_closed():
            return
        with contextlib.suppress(Exception):
            await conn.execute("DELETE FROM platform.worker WHERE backend_pid = pg_backend_pid()")
        await conn.close(timeout=5)

    def _holder(self) -> Any:
        found = self._store.bridge.run(self._store.fetch(_HOLDER))
        return found[0] if found else None

    def holder_pid(self) -> int | None:
        row = self._holder()
        return int(row["pid"]) if row is not None else None

    def advertise(self, advert: dict[str, Any]) -> None:
        conn = self._conn
        if conn is None:
            raise StoreError(None, f"only the worker advertises on {self._store.location}")
        self._store.bridge.run(
            conn.execute(
                "UPDATE platform.worker SET advert = $1 WHERE backend_pid = pg_backend_pid()",
                orjson.dumps(advert),
            )
        )

    def advert(self) -> dict[str, Any] | None:
        row = self._holder()
        if row is None or row["advert"] is None:
            return None
        advert = orjson.loads(bytes(row["advert"]))
        return advert if isinstance(advert, dict) else None
