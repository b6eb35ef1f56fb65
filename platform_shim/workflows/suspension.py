"""Suspended activations: runs parked on a step whose coroutine is kept, within a bound.

A run that parks (sleep, wait, invoke) is suspended, not unwound: its handler's coroutine awaits
the step's outcome, so ``finally``/``with`` blocks run when the code around them ends, as Python
promises. Memory is bounded like Temporal's workflow cache: past ``max_suspended`` runs, the
least recently parked one is evicted, which unwinds it.

Invariants:

- **Only what can be replayed is evicted.** A run is evictable when its activation suspended in
  the handler's own task (not in a branch of ``asyncio.gather``/``TaskGroup``, whose siblings the
  engine cannot see) and is parked: no step call in flight, every awaited outcome still open.
- **Eviction records nothing.** It marks the activation ``unwinding`` before cancelling it, so
  every ``step.*`` call made by the cleanup code raises ``Stop``; the run replays from its ledger
  records when it wakes.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable

from platform_shim.workflows.state import RunState

__all__ = ["Stop", "SuspendedRuns", "busy", "evict", "parked"]


class Stop(BaseException):
    """Unwinds a handler whose run ended (cancelled, timed out) or whose activation is being
    unwound (evicted from the cache of suspended runs, or the worker stops): raised by every
    ``step.*`` call made then, so nothing runs or is recorded while the run unwinds. A
    ``BaseException``: a user's ``except Exception`` cannot swallow it."""


def parked(run: RunState) -> bool:
    """Whether ``run``'s activation is suspended on parked steps with nothing else to do."""
    step = run.activation
    return (
        step is not None
        and step.calls == 0
        and bool(step.waits)
        and not any(future.done() for future in step.waits)
    )


class SuspendedRuns:
    """The runs whose activation is suspended on a parked step, least recently parked first."""

    def __init__(self, max_suspended: int) -> None:
        self.max_suspended = max_suspended
        self._runs: OrderedDict[str, RunState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._runs)

    def suspending(self, run: RunState, *, evictable: bool) -> None:
        """``run``'s activation suspends on a parked step: keep it, within the bound (which
        counts only evictable activations; one inside a parallel section stays until it ends)."""
        if not evictable:
            self._runs.pop(run.run_id, None)
            return
        self._runs[run.run_id] = run
        self._runs.move_to_end(run.run_id)
        if len(self._runs) <= self.max_suspended:
            return
        for candidate in list(self._runs.values()):
            if parked(candidate):
                del self._runs[candidate.run_id]
                evict(candidate)
                if len(self._runs) <= self.max_suspended:
                    return

    def discard(self, run: RunState) -> None:
        """``run``'s activation resumed or ended: it no longer counts."""
        self._runs.pop(run.run_id, None)

    def clear(self) -> None:
        self._runs.clear()


def evict(run: RunState) -> None:
    """Unwind a suspended activation to free its memory; its wake-up replays it."""
    activation, task = run.activation, run.task
    if activation is None or task is None or task.done():
        return
    activation.unwinding = True
    task.cancel()


def busy(running: Iterable[tuple[asyncio.Task[None], RunState]]) -> list[asyncio.Task[None]]:
    """The activations among ``running`` doing work (not suspended on parked steps)."""
    return [task for task, run in running if not task.done() and not parked(run)]
