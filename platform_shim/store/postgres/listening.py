"""A store's LISTEN connection, which listens only while another store is there to hear.

Every commit notifies ``CHANNEL`` with its writer's token, and PostgreSQL hands a notification
to every session listening on the channel, the sender's own included. A host alone on its
database used to be woken for each of its own commits (the listener's backend, then this
process's bridge thread, to drop a notification whose token is ours): ~0.4 ms of CPU per
1-step run on two shared cores, the largest cost after the run's own two commits.

Invariants:

- **Every store's listener is visible and hears hellos.** It is named ``NAME`` in
  ``pg_stat_activity`` (set before anything else) and listens on ``HELLO`` for as long as it
  is open; a store says hello (its token on ``HELLO``) once it has looked for others.
- **A store listens on ``CHANNEL`` whenever another store's listener is connected**, up to a
  notification's delivery: opening, it looks for others after it listens on ``HELLO``, so of
  two stores opening at once the later one to look sees the earlier one, and the earlier one
  hears the later one's hello. Hearing a hello (other than its own) starts listening, then
  calls ``on_notify``: whatever the newcomer committed before that is read by that catch-up,
  after which its notifications arrive.
- **It stops listening only when nobody is there**: every ``TEND_S`` it looks again; it
  unlistens only if no other listener is connected and no hello arrived meanwhile (a hello
  that comes during the unlisten starts listening again after it: every change of what we
  listen to holds one lock). A check that fails leaves things as they are; the watches' polls
  catch up in any case.
- **A session the database ends is replaced.** When the listening session ends under us (a
  restart of the database, a failover, an administrator), a new one is opened at once
  (retrying, with a growing pause, while the database refuses), starts as above, and the
  watches then catch up with what was committed while nobody listened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from platform_shim.store.postgres.log import CHANNEL

if TYPE_CHECKING:
    import asyncpg

__all__ = ["HELLO", "NAME", "RELISTEN_FIRST_S", "RELISTEN_MAX_S", "TEND_S", "Listener"]

log = logging.getLogger("platform_shim.store")

HELLO = "platform_store_hello"
"""The channel a store announces itself on (payload: its token)."""
NAME = "platform-shim listener"
"""The ``application_name`` of every store's listening connection."""
TEND_S = 1.0
"""Seconds between two looks for other stores' listeners."""
RELISTEN_FIRST_S = 0.1
"""The pause before connecting again after the listening session ended and a new one failed
(doubling up to the next)."""
RELISTEN_MAX_S = 5.0

_OTHERS = (
    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
    " AND application_name = $1 AND pid <> pg_backend_pid())"
)


class Listener:
    """The LISTEN side of one store (on its bridge loop): ``on_notify`` runs when another
    store committed, or when one appeared (to catch up with what it committed first)."""

    def __init__(
        self,
        conn: asyncpg.Connection,
        token: str,
        on_notify: Callable[[], None],
        connect: Callable[[], Awaitable[asyncpg.Connection]] | None = None,
    ):
        self.conn = conn
        self._token = token
        self._on_notify = on_notify
        self._connect = connect  # for a new session when the database ends ours
        self._closed = False
        self._tending = False
        self.listening = False  # LISTEN CHANNEL is in effect
        self.hellos = 0  # other stores' hellos heard so far
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._failing = False

    async def start(self) -> None:
        conn = self.conn
        await conn.execute(f"SET application_name = '{NAME}'")
        await conn.add_listener(HELLO, self._hello)
        conn.add_termination_listener(self._lost)
        async with self._lock:
            await self._tend()
        await conn.execute(f"SELECT pg_notify('{HELLO}', '{self._token}')")
        if not self._tending:
            self._tending = True
            self._spawn(self._tend_forever())

    def _lost(self, conn: Any) -> None:
        # The database ended our session (a restart, a failover, an administrator): listen on
        # a new one, or this store's watches would only ever wake by their poll.
        if conn is self.conn and not self._closed and self._connect is not None:
            self._spawn(self._listen_again())

    def closed(self) -> bool:
        return self._closed

    async def _listen_again(self) -> None:
        assert self._connect is not None
        pause = RELISTEN_FIRST_S
        while not self._closed:
            try:
                conn = await self._connect()
                if self.closed():  # closed while connecting
                    await conn.close()
                    return
                self.conn, self.listening = conn, False
                await self.start()
            except Exception as exc:
                log.warning("listening again failed (%s); retrying", exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, RELISTEN_MAX_S)
                continue
            break
        self._on_notify()  # what others committed while nobody listened

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        token, _, _ = payload.partition(" ")
        if token != self._token:
            self._on_notify()

    def _hello(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        if payload == self._token:
            return
        self.hellos += 1
        self._spawn(self._join())

    async def _join(self) -> None:
        async with self._lock:
            if not self.listening:
                await self._listen()

    async def _listen(self) -> None:
        await self.conn.add_listener(CHANNEL, self._notified)
        self.listening = True
        self._on_notify()  # what others committed before we listened

    async def _tend(self) -> None:
        """Listen if another store's listener is connected; stop if none is (with the lock)."""
        hellos = self.hellos
        others = await self.conn.fetchval(_OTHERS, NAME)
        if others and not self.listening:
            await self._listen()
        elif not others and self.listening and hellos == self.hellos:
            self.listening = False
            await self.conn.remove_listener(CHANNEL, self._notified)

    async def _tend_forever(self) -> None:
        while True:
            await asyncio.sleep(TEND_S)
            try:
                async with self._lock:
                    await self._tend()
            except Exception as exc:
                if not self._failing:
                    log.warning("looking for other stores' listeners failed: %s", exc)
                self._failing = True
            else:
                self._failing = False

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.conn.close(timeout=5)
