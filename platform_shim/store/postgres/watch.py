"""A watch on a PostgreSQL store: woken by the store's LISTEN connection, and by a poll.

Invariant: once started and until stopped, ``on_change`` runs on the watch's loop soon after
another connection committed to any log (the store's listener pokes every watch in its list on
a notification), and every ``poll_interval`` seconds besides, in case a notification was missed
(the listener's connection dropped, say). After ``stop`` it never runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from platform_shim.store.turns import CallbackWatch

__all__ = ["PostgresWatch"]


class PostgresWatch(CallbackWatch):
    """Calls ``on_change`` on the loop after another connection committed (LISTEN/NOTIFY),
    and every ``poll_interval`` seconds besides."""

    def __init__(
        self, watches: list[PostgresWatch], on_change: Callable[[], None], poll_interval: float
    ) -> None:
        self._watches = watches  # the store's: its listener pokes each one on a notification
        self._on_change = on_change
        self._poll_interval = poll_interval
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._watches.append(self)
        self._timer = self._loop.call_later(self._poll_interval, self._poll)

    def _poll(self) -> None:
        if self._loop is None:
            return
        self.poke()
        self._timer = self._loop.call_later(self._poll_interval, self._poll)

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            self._watches.remove(self)
        if self._timer is not None:
            self._timer.cancel()
        self._loop = None
