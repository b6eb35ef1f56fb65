"""The thread that owns a PostgreSQL store's connections.

The store contract is partly synchronous (``refresh``, loading a log, snapshots, the archive,
blobs put from threads) and the driver, asyncpg, is asynchronous and bound to one event loop.
So the store's reading connections (its pool, its listener, the worker's lock) live on a loop
of its own, run by one daemon thread: callers on any other thread block on ``run``, callers on
another loop ``await call(...)``. (The commit cycles' connections live on the loop that
submits: ``writers.py``.) Invariant:
nothing on the bridge's own thread ever waits for the bridge (``run`` refuses it: it would
deadlock).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["Bridge"]

T = TypeVar("T")


class Bridge:
    """An event loop on a daemon thread; coroutines are handed to it from anywhere else."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        # Stopped: whatever is still pending is cancelled, then the loop closes.
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        with contextlib.suppress(Exception):
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the bridge and wait for its result (from any other thread)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("the bridge thread cannot wait for itself")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the bridge and await its result (from another event loop)."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def soon(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Start ``coro`` on the bridge without waiting for it."""
        asyncio.run_coroutine_threadsafe(coro, self.loop)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        """Stop the loop (after the caller closed its connections) and join the thread."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
