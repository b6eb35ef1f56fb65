"""Time, injected: every time the engine and the services read or wait on comes from a Clock.

Times are epoch milliseconds (ints). ``call_at`` schedules a callback on the running event loop
for a wall-clock instant; the system clock re-arms a timer that fires early (the wall clock was
set back), so a callback never runs before its time. Tests use ``platform_shim.testing.FakeClock``,
whose ``advance`` fires due callbacks at once: a week-long sleep takes no time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "SystemClock", "TimerHandle"]


class TimerHandle(Protocol):
    """What ``call_at`` returns."""

    def cancel(self) -> None:
        """Do not run the callback (a no-op once it ran)."""


class Clock(Protocol):
    """The source of time for one platform."""

    def now_ms(self) -> int:
        """Milliseconds since the epoch."""

    def call_at(self, when_ms: int, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` on the running loop once ``now_ms() >= when_ms``."""


class _SystemTimer:
    __slots__ = ("_callback", "_handle", "_loop", "_when")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, when_ms: int, callback: Callable[[], None]
    ) -> None:
        self._loop = loop
        self._when = when_ms
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self._arm()

    def _arm(self) -> None:
        delay = max(0, self._when - time.time_ns() // 1_000_000) / 1000
        self._handle = self._loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        if time.time_ns() // 1_000_000 < self._when:
            self._arm()
            return
        self._handle = None
        self._callback()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class SystemClock:
    """The wall clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def call_at(self, when_ms: int, callback: Callable[[], None]) -> TimerHandle:
        return _SystemTimer(asyncio.get_running_loop(), when_ms, callback)
