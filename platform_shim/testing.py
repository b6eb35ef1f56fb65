"""Test helpers for users' own tests: a clock that skips time instead of sleeping.

clock = FakeClock()
async with open_platform(tmp_path, workflows=[onboarding], clock=clock) as platform:
    handle = await platform.workflows.start("onboarding", {...})
    await platform.settle()
    clock.advance("24h")          # the run's step.sleep("grace-period", "24h") wakes
    await platform.settle()
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from datetime import datetime, timedelta

from platform_shim.durations import parse_duration_ms

__all__ = ["FakeClock"]


class _FakeTimer:
    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: int, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def fire(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.callback()


class FakeClock:
    """A clock that only moves when told to.

    ``advance`` moves time forward and runs every callback that came due, in time order, each
    with the clock set to its own due time; callbacks scheduled by those callbacks that are
    already due run too. Callbacks only schedule work on the loop, so await something (for
    instance ``platform.settle()``) after advancing to let that work happen.
    """

    def __init__(self, start: int | datetime | None = None) -> None:
        if start is None:
            self._now = 1_767_225_600_000  # 2026-01-01T00:00:00Z
        elif isinstance(start, datetime):
            if start.tzinfo is None:
                raise ValueError("FakeClock start must be an aware datetime (use timezone.utc)")
            self._now = int(start.timestamp() * 1000)
        else:
            self._now = int(start)
        self._timers: list[tuple[int, int, _FakeTimer]] = []
        self._seq = itertools.count()

    def now_ms(self) -> int:
        return self._now

    def call_at(self, when_ms: int, callback: Callable[[], None]) -> _FakeTimer:
        timer = _FakeTimer(when_ms, callback)
        if when_ms <= self._now:
            # Already due: run soon, as a real clock would, without waiting for an advance.
            asyncio.get_running_loop().call_soon(timer.fire)
            return timer
        heapq.heappush(self._timers, (when_ms, next(self._seq), timer))
        return timer

    def advance(self, duration: int | float | str | timedelta) -> None:
        """Move time forward by ``duration`` (ms, ``timedelta`` or ``"7d"``-style) and fire timers."""
        self.advance_to(self._now + parse_duration_ms(duration, "FakeClock.advance"))

    def advance_to(self, when_ms: int) -> None:
        """Move time forward to ``when_ms`` and fire the timers that came due."""
        if when_ms < self._now:
            raise ValueError(f"FakeClock cannot go back in time (now {self._now}, asked {when_ms})")
        timers = self._timers
        while timers and timers[0][0] <= when_ms:
            due, _, timer = heapq.heappop(timers)
            if timer.cancelled:
                continue
            self._now = max(self._now, due)
            timer.cancelled = True
            timer.callback()
        self._now = when_ms

    def pending(self) -> int:
        """How many timers are waiting (not cancelled)."""
        return sum(1 for _, _, timer in self._timers if not timer.cancelled)
