"""A clock the ``dev`` host can move forward: the wall clock plus an offset.

``POST /api/dev/clock {"advance": "24h"}`` (only under ``dev``) adds to the offset and re-arms
every pending timer against the new time, so a sleeping run wakes, a wait times out and a cron
tick fires as if the time had passed. Timestamps written meanwhile carry the skipped time. The
offset lives as long as the process: a restart is back on the wall clock, and waits computed in
skipped time end that much later.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["SkippableClock"]


class _Timer:
    __slots__ = ("_callback", "_clock", "_handle", "_loop", "when")

    def __init__(self, clock: SkippableClock, when: int, callback: Callable[[], None]) -> None:
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self.when = when
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self.arm()

    def arm(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._clock.timers.add(self)
        delay = max(0, self.when - self._clock.now_ms()) / 1000
        self._handle = self._loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        if self._clock.now_ms() < self.when:
            self.arm()
            return
        self.cancel()
        self._callback()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._clock.timers.discard(self)


class SkippableClock:
    """The wall clock, plus an offset that only grows."""

    def __init__(self) -> None:
        self.offset_ms = 0
        self.timers: set[_Timer] = set()

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def call_at(self, when_ms: int, callback: Callable[[], None]) -> _Timer:
        return _Timer(self, when_ms, callback)

    def advance(self, ms: int) -> None:
        """Move time forward by ``ms`` and fire what came due."""
        if ms < 0:
            raise ValueError("time only moves forward")
        self.offset_ms += ms
        for timer in sorted(self.timers, key=lambda t: t.when):
            timer.arm()
