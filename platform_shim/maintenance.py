"""When the worker compacts: its maintenance schedule, on the worker's clock.

Invariants:

- A pass runs every ``interval_ms`` of the worker's clock (so a ``FakeClock`` that skips a week
  runs one pass, at the end of the skip). It compacts when the worker says a log is past its
  size threshold and mostly dead lines, or when a finished run is past the retention, which is
  checked at most every ``retention_check_ms`` (the check reads every run) whatever the
  folder's size: the retention promise holds for a small folder too, not only past 64 MiB.
- Compaction runs in one background task at a time (``Worker.compact`` never holds the loop
  for the size of the state). A request (``python -m host compact`` against a running host)
  made while one runs is served by another pass right after it.
- A pass that fails is logged with its reason and the schedule goes on; nothing here can stop
  the timer for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable

from platform_shim.clock import Clock, TimerHandle

__all__ = ["Maintenance"]

log = logging.getLogger("platform_shim.runtime")

DEFAULT_INTERVAL_MS = 30_000
DEFAULT_RETENTION_CHECK_MS = 3_600_000


class Maintenance:
    """Runs ``compact`` when ``due(check_retention)`` says so, every ``interval_ms``."""

    def __init__(
        self,
        clock: Clock,
        due: Callable[[bool], bool],
        compact: Callable[[], Awaitable[object]],
        *,
        interval_ms: int = DEFAULT_INTERVAL_MS,
        retention_check_ms: int = DEFAULT_RETENTION_CHECK_MS,
        context: contextvars.Context | None = None,
    ) -> None:
        self._clock = clock
        self._due = due
        self._compact = compact
        self._interval_ms = interval_ms
        self._retention_check_ms = retention_check_ms
        self._context = context
        self._timer: TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._requested = False
        self._next_retention_check = 0
        self._running = False
        self.passes = 0  # passes that compacted (tests and the dashboard read it)

    def start(self) -> None:
        self._running = True
        self._next_retention_check = self._clock.now_ms() + self._retention_check_ms
        self._arm()

    async def stop(self) -> None:
        self._running = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def request(self) -> None:
        """Compact as soon as possible (after the pass under way, if any)."""
        self._requested = True
        self._spawn()

    def busy(self) -> bool:
        """Whether a pass is under way (``Worker.settle`` waits for it)."""
        return self._task is not None and not self._task.done()

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.wait([self._task])

    def _arm(self) -> None:
        if self._running and self._timer is None:
            self._timer = self._clock.call_at(self._clock.now_ms() + self._interval_ms, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._spawn()

    def _spawn(self) -> None:
        if self.busy():
            return  # the pass under way looks at _requested again before it ends
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._pass(), name="maintenance", context=self._context)

    async def _pass(self) -> None:
        try:
            while True:
                requested, self._requested = self._requested, False
                now = self._clock.now_ms()
                check_retention = now >= self._next_retention_check
                if check_retention:
                    self._next_retention_check = now + self._retention_check_ms
                try:
                    if requested or self._due(check_retention):
                        await self._compact()
                        self.passes += 1
                except Exception:
                    log.exception("background compaction failed; the logs are unchanged")
                if not self._requested:
                    break
        finally:
            self._arm()
