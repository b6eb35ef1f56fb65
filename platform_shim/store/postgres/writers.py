"""Writer connections on the caller's event loop: the commit cycle's round trips without a
thread hop.

The store's reads go through its bridge thread (``bridge.py``) because the contract's reads are
synchronous; a commit cycle is asynchronous, so its two round trips can run on the loop that
submitted, which saves two thread wake-ups each (about 0.2 ms here, as much as the round trip).
The price is that a connection belongs to a loop that may end before the store is closed. The
invariant: a writer connection never outlives its loop open. ``Writers`` keeps one task per
loop that waits forever; when the loop shuts down (``asyncio.run`` and every runner cancel the
tasks left), that task closes the loop's connections, properly, before the loop goes. A
connection dropped while its loop runs is aborted at once (``terminate``: its session ends, and
with it any lock or transaction it held).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

__all__ = ["Writers"]


class _Keeper:
    """The connections of one loop, and the task that closes them when the loop ends."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.connections: set[asyncpg.Connection] = set()
        self.task = loop.create_task(self._keep(), name="postgres writers")

    async def _keep(self) -> None:
        try:
            await asyncio.Future()  # until the loop cancels us at its end (or the store closes)
        finally:
            pending, self.connections = self.connections, set()
            for conn in pending:
                if conn.is_closed():
                    continue
                try:
                    await asyncio.wait_for(asyncio.shield(conn.close()), timeout=2)
                except BaseException:
                    conn.terminate()


class Writers:
    """Hands out connections bound to the running loop; closes them before their loop ends."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]]) -> None:
        self._connect = connect
        self._keepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Keeper] = (
            weakref.WeakKeyDictionary()
        )

    async def open(self) -> asyncpg.Connection:
        """A new connection on the running loop."""
        loop = asyncio.get_running_loop()
        keeper = self._keepers.get(loop)
        if keeper is None or keeper.task.done():
            keeper = self._keepers[loop] = _Keeper(loop)
        conn = await self._connect()
        keeper.connections.add(conn)
        return conn

    def drop(self, conn: asyncpg.Connection, loop: asyncio.AbstractEventLoop) -> None:
        """End ``conn`` (of ``loop``) now: its session, locks and transaction go with it."""
        keeper = self._keepers.get(loop)
        if keeper is not None:
            keeper.connections.discard(conn)
        if conn.is_closed() or loop.is_closed():
            return  # closed with its loop, by its keeper
        with contextlib.suppress(RuntimeError):  # a loop closed under us
            conn.terminate()

    def close(self) -> None:
        """The store closes: end every connection, and the keepers' tasks."""
        for loop, keeper in list(self._keepers.items()):
            for conn in list(keeper.connections):
                self.drop(conn, loop)
            if not loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(keeper.task.cancel)
        self._keepers.clear()
