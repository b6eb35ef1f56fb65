"""A service log that rewrites itself once its dead lines pile up (realtime, auth).

Invariant: only the worker rewrites (clients follow the swap), at most one rewrite runs at a
time, and it runs in the background: the write that noticed does not wait for it. A log is
rewritten when it holds more than twice its live lines plus ``slack``, so a log of mostly live
lines is never rewritten again and again, and the cost of a rewrite is spread over at least
``slack`` writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from platform_shim.store.protocol import Log

__all__ = ["DEFAULT_SLACK", "SelfCompacting"]

DEFAULT_SLACK = 10_000
"""Dead lines tolerated beyond twice the live ones before a rewrite."""


class SelfCompacting:
    """Call ``check()`` after a write; it starts ``compact()`` when the log deserves one."""

    def __init__(
        self,
        log: Log,
        live_count: Callable[[], int],
        compact: Callable[[], Awaitable[None]],
        is_worker: Callable[[], bool],
    ) -> None:
        self._log = log
        self._live_count = live_count
        self._compact = compact
        self._is_worker = is_worker
        self.slack = DEFAULT_SLACK
        self._task: asyncio.Task[None] | None = None

    def check(self) -> None:
        if not self._is_worker():
            return  # only the worker rewrites logs; clients follow the swap
        if self._task is not None and not self._task.done():
            return
        if self._log.line_count() > 2 * self._live_count() + self.slack:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        await self._compact()
