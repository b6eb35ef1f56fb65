"""A clock the ``dev`` host can move forward: the wall clock plus an offset.

``POST /api/dev/clock {"advance": "24h"}`` (only under ``dev``) adds to the offset and re-arms
every pending timer against the new time, so a sleeping run wakes, a wait times out and a cron
tick fires as if the time had passed. Timestamps written meanwhile carry the skipped time.

The offset belongs to the data folder, not the process: it is recorded there
(``platform_shim.clock.write_offset``), so the CLI and ``get_platform()`` scripts on the folder
read the same time as the host, and a restarted ``dev`` host goes on from it (waits computed in
skipped time end when they should). ``serve`` clears it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from platform_shim.clock import read_offset, write_offset

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
    """The wall clock, plus an offset that only grows (kept in ``data_dir`` when given)."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self._data_dir = data_dir
        self.offset_ms = read_offset(data_dir) if data_dir is not None else 0
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
        if self._data_dir is not None:
            write_offset(self._data_dir, self.offset_ms)
        for timer in sorted(self.timers, key=lambda t: t.when):
            timer.arm()
