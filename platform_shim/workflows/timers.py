"""The engine's timers: one clock timer for every run's wake-up and deadline.

A parked run needs a few timers: one per pending step (a sleep's end, a wait's or invoke's
timeout; parallel steps may have several), one for a retry's backoff, and its deadline. Rather than one event-loop timer and a closure each — about 500
bytes a run, and 100,000 parked runs are a normal restart — the wheel keeps a heap of
``(when, token, run, purpose)`` tuples and arms a single clock timer for the earliest. The token
of a live timer is kept where it belongs (the run for ``"wake"`` and ``"deadline"``, the
pending step for a step's timer); re-arming or cancelling only changes that token, and stale
heap entries are skipped when they surface (or swept when they pile up).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable

from platform_shim.clock import Clock, TimerHandle
from platform_shim.workflows.state import RunState, StepState

__all__ = ["Purpose", "TimerWheel"]

# "wake" (a retry's backoff), "deadline" (timeoutSecs), or a pending step (its own timer).
Purpose = str | StepState

log = logging.getLogger("platform_shim.workflows")


class TimerWheel:
    """Keyed per-run timers on one clock timer; ``fire(run, purpose)`` runs when one is due."""

    def __init__(self, clock: Clock, fire: Callable[[RunState, Purpose], None]) -> None:
        self._clock = clock
        self._fire = fire
        self._heap: list[tuple[int, int, RunState, Purpose]] = []
        self._token = 0
        self._live = 0
        self._handle: TimerHandle | None = None
        self._armed_for: int | None = None
        self._stopped = False

    def set(self, run: RunState, purpose: Purpose, when: int) -> None:
        """Arm (or re-arm) ``run``'s timer for ``purpose`` at ``when`` (epoch ms)."""
        self._token += 1
        if _token(run, purpose) == 0:
            self._live += 1
        _set_token(run, purpose, self._token)
        heapq.heappush(self._heap, (when, self._token, run, purpose))
        if len(self._heap) > 2 * self._live + 1024:
            self._sweep()
        if self._armed_for is None or when < self._armed_for:
            self._arm(when)

    def cancel(self, run: RunState, purpose: Purpose) -> None:
        if _token(run, purpose) != 0:
            _set_token(run, purpose, 0)
            self._live -= 1

    def due(self, run: RunState, purpose: Purpose) -> bool:
        return _token(run, purpose) != 0

    def stop(self) -> None:
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._armed_for = None

    def __len__(self) -> int:
        return self._live

    def _arm(self, when: int) -> None:
        if self._stopped:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._armed_for = when
        self._handle = self._clock.call_at(when, self._tick)

    def _tick(self) -> None:
        self._handle = None
        self._armed_for = None
        now = self._clock.now_ms()
        heap = self._heap
        try:
            while heap and heap[0][0] <= now:
                _, token, run, purpose = heapq.heappop(heap)
                if _token(run, purpose) != token:
                    continue  # re-armed or cancelled since
                _set_token(run, purpose, 0)
                self._live -= 1
                try:
                    self._fire(run, purpose)
                except Exception:
                    # One run's failure must not keep every other parked run asleep.
                    log.exception("run %s: its %s timer failed", run.run_id, purpose)
        finally:
            # Always re-armed, whatever happened above: a wheel left unarmed wakes nobody.
            while heap and _token(heap[0][2], heap[0][3]) != heap[0][1]:
                heapq.heappop(heap)
            if heap:
                self._arm(heap[0][0])

    def _sweep(self) -> None:
        self._heap = [entry for entry in self._heap if _token(entry[2], entry[3]) == entry[1]]
        heapq.heapify(self._heap)


def _token(run: RunState, purpose: Purpose) -> int:
    if purpose == "wake":
        return run.wake_token
    if purpose == "deadline":
        return run.deadline_token
    assert isinstance(purpose, StepState)
    return purpose.timer


def _set_token(run: RunState, purpose: Purpose, token: int) -> None:
    if purpose == "wake":
        run.wake_token = token
    elif purpose == "deadline":
        run.deadline_token = token
    else:
        assert isinstance(purpose, StepState)
        purpose.timer = token
