"""Time, injected: every time the engine and the services read or wait on comes from a Clock.

Times are epoch milliseconds (ints). ``call_at`` schedules a callback on the running event loop
for a wall-clock instant; the system clock re-arms a timer that fires early (the wall clock was
set back), so a callback never runs before its time. Tests use ``platform_shim.testing.FakeClock``,
whose ``advance`` fires due callbacks at once: a week-long sleep takes no time. A client on a
data folder uses ``FolderClock``: the wall clock plus the offset a ``dev`` host skipped ahead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import orjson

__all__ = [
    "OFFSET_FILE",
    "Clock",
    "FolderClock",
    "SystemClock",
    "TimerHandle",
    "read_offset",
    "write_offset",
]


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


# ---------------------------------------------------------------- a folder's clock offset

OFFSET_FILE = "devclock.json"
"""In the data folder: ``{"offsetMs": N}``, how far a ``dev`` host has skipped its clock ahead.

Every process on the folder adds it to the wall clock (the host's ``SkippableClock`` writes it,
clients' ``FolderClock`` reads it), so a TTL written by the CLI, a schedule's next tick and a
run started by a script all agree with the host on what time it is. ``serve`` removes it: a
production-like host runs on the wall clock."""


def read_offset(data_dir: Path) -> int:
    """The folder's clock offset in ms (0 when none is recorded or the file is unreadable)."""
    try:
        value = orjson.loads((data_dir / OFFSET_FILE).read_bytes()).get("offsetMs", 0)
    except (OSError, orjson.JSONDecodeError, AttributeError):
        return 0
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def write_offset(data_dir: Path, offset_ms: int) -> None:
    """Record the folder's clock offset (crash-safe replace); 0 removes the record."""
    from platform_shim.store.jsonl import replace_file_bytes

    path = data_dir / OFFSET_FILE
    if offset_ms == 0:
        path.unlink(missing_ok=True)
        return
    replace_file_bytes(path, orjson.dumps({"offsetMs": offset_ms}))


class FolderClock(SystemClock):
    """The wall clock plus the offset recorded in a data folder (re-read at most twice a
    second, so a long-running script follows a dev host that skips ahead)."""

    RECHECK_S = 0.5

    def __init__(self, data_dir: Path) -> None:
        self._path = Path(data_dir) / OFFSET_FILE
        self._data_dir = Path(data_dir)
        self._offset = 0
        self._seen: int | None = None  # the file's mtime when last read
        self._next_check = 0.0
        self._recheck()

    def _recheck(self) -> None:
        self._next_check = time.monotonic() + self.RECHECK_S
        try:
            mtime: int | None = self._path.stat().st_mtime_ns
        except OSError:
            mtime = None
        if mtime != self._seen:
            self._seen = mtime
            self._offset = read_offset(self._data_dir) if mtime is not None else 0

    @property
    def offset_ms(self) -> int:
        if time.monotonic() >= self._next_check:
            self._recheck()
        return self._offset

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000 + self.offset_ms

    def call_at(self, when_ms: int, callback: Callable[[], None]) -> TimerHandle:
        # A timer for a folder time is a timer for that time minus the offset on the wall clock.
        return _SystemTimer(asyncio.get_running_loop(), when_ms - self.offset_ms, callback)
