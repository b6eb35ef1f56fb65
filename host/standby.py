"""A standby host: serves the HTTP API as a client of the store while another process is its
worker, and takes the worker lock when that process is gone.

The invariant: at every instant the host serves through exactly one platform that works. While
another process holds the store's worker lock, that is a *client* platform (its writes are
picked up by the worker, its reads fold the same logs); once this process holds the lock, the
caller's ``promote`` opens the engine on it and switches the host to the worker's platform. A
request that began on the client platform keeps it to its end: the client is closed only when
the last such request is done (``retire``), so no in-flight request loses its platform.

Polling: ``store.worker_pid()`` every ``interval`` seconds is a non-blocking probe that never
disturbs the worker; only when it finds no worker is the lock asked for, and on a thread,
because ``acquire_worker_lock`` may wait up to a second for other standbys' probes to end and
the loop must keep serving meanwhile. A lost race (another standby won) is a ``DataDirLocked``
and the polling goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator

from platform_shim.errors import DataDirLocked
from platform_shim.platform import Platform
from platform_shim.store import Location, open_store
from platform_shim.store.protocol import Store, Watch

__all__ = ["DEFAULT_POLL_S", "Standby"]

log = logging.getLogger("host")

DEFAULT_POLL_S = 0.5
"""How often a standby asks whether the worker is still there (seconds)."""


class Standby:
    """The client platform of a standby host and the task that watches for the lock."""

    def __init__(
        self,
        platform: Platform,
        location: Location,
        promote: Callable[[Store], Awaitable[bool]],
        *,
        interval: float = DEFAULT_POLL_S,
    ) -> None:
        self.platform = platform
        self._location = location
        self._promote = promote  # True once this process is the worker (False: back to polling)
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._watch: Watch | None = None
        self._in_flight = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._closed = False
        self.worker_pid: int | None = None

    @property
    def closed(self) -> bool:
        """Whether the client platform is closed (after a takeover, once drained; or stopped)."""
        return self._closed

    @property
    def location(self) -> str:
        return self.platform.store.location

    def start(self, holder: int | None) -> None:
        """Follow the store's changes (SSE, realtime) and begin polling for the lock."""
        self._note_worker(holder)
        store = self.platform.store
        # What the worker and other hosts append reaches this host's SSE streams and WebSocket
        # subscribers.
        self._watch = store.watch(self.platform.refresh, poll_interval=self.interval)
        self._watch.start()
        self._task = asyncio.get_running_loop().create_task(self._poll())

    def _note_worker(self, pid: int | None) -> None:
        if pid is not None and pid != self.worker_pid:
            log.info("standby: the worker on %s is pid %d", self.location, pid)
        self.worker_pid = pid

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                if await self._try_take_over():
                    break
            except Exception:
                # A store that cannot answer now (a network folder, a database restarting)
                # or an engine that does not start: still a standby, ask again next time.
                log.exception("standby: taking over as the worker on %s failed", self.location)
        # The host serves through the worker's platform now: the client goes once the
        # requests that began on it are done.
        await self._drained.wait()
        await self._close_client()

    async def _try_take_over(self) -> bool:
        """Become the worker if there is none; True once this process is."""
        pid = self.platform.store.worker_pid()
        if pid is not None:
            self._note_worker(pid)
            return False
        store = await self._try_lock()
        if store is None:
            return False  # another standby (or a restarted worker) was first
        return await self._promote(store)

    async def _try_lock(self) -> Store | None:
        """A new store on the location holding its worker lock, or None if it is taken."""
        store = open_store(self._location, durability=self.platform.store.durability)
        acquiring = asyncio.ensure_future(asyncio.to_thread(store.acquire_worker_lock))
        try:
            await asyncio.shield(acquiring)
        except DataDirLocked:
            store.close()
            return None
        except BaseException:
            # Cancelled (the host stops) while the thread waits: let it end, then let go.
            with contextlib.suppress(BaseException):
                await acquiring
            store.close()
            raise
        return store

    @contextlib.contextmanager
    def serving(self) -> Iterator[Platform]:
        """Count a request served through the client platform while it runs."""
        self._in_flight += 1
        self._drained.clear()
        try:
            yield self.platform
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._drained.set()

    async def close(self) -> None:
        """Stop polling and watching and close the client platform (at once)."""
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close_client()

    async def _close_client(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._watch is not None:
            await self._watch.stop()
            self._watch = None
        await self.platform.settle()  # a client's: its writes are on disk
        self.platform.close()
