"""The store's LISTEN session: it wakes every watch when another connection commits.

Invariant: from ``start`` to ``close`` one session of the store LISTENs on ``CHANNEL``, except
while the database refuses a new one. When the database ends that session (a restart, a
failover, an administrator), a new one is opened at once (retrying, with a growing pause, while
the database refuses) and every watch is then poked, so what was committed while nobody
listened is caught up with. A notification carrying this store's own token (its own commit)
wakes nobody. Runs on the store's bridge loop; ``PostgresWatch.poke`` may be called from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from platform_shim.store.postgres.log import CHANNEL
from platform_shim.store.postgres.watch import PostgresWatch

if TYPE_CHECKING:
    import asyncpg

__all__ = ["RELISTEN_FIRST_S", "RELISTEN_MAX_S", "Listener"]

log = logging.getLogger("platform_shim.store")

RELISTEN_FIRST_S = 0.1
"""The pause before listening again after a refused attempt (doubling up to the next)."""
RELISTEN_MAX_S = 5.0


class Listener:
    """One store's LISTEN session and the watches it pokes."""

    def __init__(
        self, connect: Callable[[], Awaitable[asyncpg.Connection]], token: str, location: str
    ) -> None:
        self._connect = connect
        self._token = token
        self._location = location
        self.watches: list[PostgresWatch] = []
        self.conn: asyncpg.Connection | None = None
        self._again: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self, conn: asyncpg.Connection) -> None:
        """Listen on ``conn`` (a new connection of the store's)."""
        await conn.add_listener(CHANNEL, self._notified)
        conn.add_termination_listener(self._lost)
        self.conn = conn

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        token, _, _ = payload.partition(" ")
        if token != self._token:  # not our own commit
            self._poke_all()

    def _poke_all(self) -> None:
        for watch in list(self.watches):
            watch.poke()

    def _lost(self, conn: Any) -> None:
        if conn is self.conn and not self._closed:
            self.conn = None
            self._again = asyncio.get_running_loop().create_task(self._listen_again())

    def closed(self) -> bool:
        return self._closed

    async def _listen_again(self) -> None:
        pause = RELISTEN_FIRST_S
        while not self._closed:
            try:
                conn = await self._connect()
            except Exception as exc:
                log.warning("%s: listening again failed (%s); retrying", self._location, exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RELISTEN_MAX_S)
                continue
            if self.closed():  # closed while connecting
                await conn.close()
                return
            try:
                await self.start(conn)
            except Exception as exc:
                conn.terminate()
                log.warning("%s: listening again failed (%s); retrying", self._location, exc)
                await asyncio.sleep(pause)
                continue
            break
        self._poke_all()  # what was committed while nobody listened

    async def close(self) -> None:
        self._closed = True
        task, self._again = self._again, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.remove_termination_listener(self._lost)
            await conn.close(timeout=5)
