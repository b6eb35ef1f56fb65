"""Test helpers for users' own tests: a clock that skips time instead of sleeping.

clock = FakeClock()
async with open_platform(tmp_path, workflows=[onboarding], clock=clock) as platform:
    handle = await platform.workflows.start("onboarding", {...})
    await platform.settle()
    clock.advance("24h")          # the run's step.sleep("grace-period", "24h") wakes
    await platform.settle()

Or let it skip by itself, as Temporal's test environment does: with ``clock.auto_advance =
True``, whenever the worker is idle (every run parked, every handler caught up) and some run is
still parked, the clock jumps to the next due timer. ``await handle.result()`` on a run that
sleeps 24 h and waits 7 days then returns at once. The jumps are made by a task that runs while
a worker is attached (``Worker.begin`` attaches the clock it was given, ``stop`` detaches it).
The pytest plugin (``host.pytest_plugin``) gives tests a ``clock`` and a ``platform`` fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from platform_shim.durations import parse_duration_ms

if TYPE_CHECKING:
    from platform_shim.runtime import Worker

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
        self._auto = False
        self._worker: Worker | None = None
        self._skipper: asyncio.Task[None] | None = None

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

    def next_due(self) -> int | None:
        """When the earliest waiting timer is due, or None when none waits."""
        timers = self._timers
        while timers and timers[0][2].cancelled:
            heapq.heappop(timers)
        return timers[0][0] if timers else None

    # ------------------------------------------------------------------- time skipping

    @property
    def auto_advance(self) -> bool:
        """Skip to the next due timer whenever the attached worker is idle with runs parked."""
        return self._auto

    @auto_advance.setter
    def auto_advance(self, on: bool) -> None:
        self._auto = bool(on)
        self._sync_skipper()

    def attach(self, worker: Worker) -> None:
        """Called by ``Worker.begin``: the worker whose idleness ``auto_advance`` watches."""
        self._worker = worker
        self._sync_skipper()

    async def detach(self, worker: Worker) -> None:
        """Called by ``Worker.stop`` (first): no more skipping for that worker."""
        if self._worker is worker:
            self._worker = None
            skipper, self._skipper = self._skipper, None
            if skipper is not None:
                skipper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await skipper

    def _sync_skipper(self) -> None:
        if self._auto and self._worker is not None and self._skipper is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # set outside the loop: attach() starts it from the loop
            self._skipper = loop.create_task(self._skip(self._worker), name="FakeClock.skip")
        elif not self._auto and self._skipper is not None:
            self._skipper.cancel()
            self._skipper = None

    async def _skip(self, worker: Worker) -> None:
        """While on: wait until the worker is idle; then, if a run is parked, jump to the
        next timer (which wakes it, times its wait out, or fires whatever comes first)."""
        from platform_shim.workflows.records import RunStatus

        terminal = {s.value for s in RunStatus if s.terminal}
        while self._auto:
            try:
                await worker.settle(timeout=3600)
            except TimeoutError:
                continue
            counts = await worker.platform.workflows.counts()
            parked = any(n for status, n in counts.items() if status not in terminal)
            due = self.next_due()
            if parked and due is not None:
                self.advance_to(due)
                await asyncio.sleep(0)
            else:
                # Nothing to skip to: look again soon (the test may start or send something).
                await asyncio.sleep(0.002)
