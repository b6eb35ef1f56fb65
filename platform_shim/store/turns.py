"""Two ways a store coalesces work into turns of the event loop, shared by the file and the
memory implementations.

- ``OncePerTurn.fresh``: catch up with other writers at most once per loop turn. Whatever
  another writer did before we could hear of it reaches us through I/O, which a later turn
  handles; so once per turn sees every write we can know about, and a tight loop of reads pays
  for one catch-up instead of one per read.
- ``Coalescer.poke``: from any thread, ask for one call of ``_run`` on the loop; pokes that come
  before it runs are folded into it.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["Coalescer", "OncePerTurn"]


class OncePerTurn:
    """Mixed into a log: ``fresh()`` is ``refresh()`` at most once per turn of the loop."""

    _fresh = False

    def refresh(self) -> int:
        raise NotImplementedError

    def fresh(self) -> None:
        if self._fresh:
            return
        self.refresh()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._fresh = True
        loop.call_soon(self._stale)

    def _stale(self) -> None:
        self._fresh = False


class Coalescer:
    """Mixed into a watcher: ``poke()`` (thread-safe) schedules one ``_run`` on ``_loop``."""

    _loop: asyncio.AbstractEventLoop | None = None
    _poked = False

    def _run(self) -> None:
        raise NotImplementedError

    def poke(self) -> None:
        if self._poked or self._loop is None:
            return
        self._poked = True
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self._loop.call_soon_threadsafe(self._run)
