"""Cron triggers: one run per tick, never two, ticks missed while down caught up once.

Each tick starts its run under an id derived from the tick's time, and the tick is recorded in
the ledger after the start; so a crash between the two re-fires the same tick at the next start,
and the derived id makes that a no-op. At start, if ticks came due while nothing ran, one run
fires for the latest of them with ``missedTicks`` in its input. A workflow seen for the first
time starts ticking from now: its schedule's past is not "missed".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from platform_shim.clock import Clock, TimerHandle
from platform_shim.dispatch import derived_run_id
from platform_shim.workflows.definition import ScheduleTrigger, Workflow
from platform_shim.workflows.engine import Engine

__all__ = ["Scheduler"]

log = logging.getLogger("platform_shim.scheduler")


class Scheduler:
    """Fires the schedule triggers of the registered workflows."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self._timers: dict[str, TimerHandle] = {}
        self._next: dict[str, int] = {}
        self._workflows: dict[str, Workflow] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._running = False

    def configure(self, workflows: Iterable[Workflow]) -> None:
        """Schedule exactly these workflows' cron triggers (called again on reload)."""
        wanted = {w.id: w for w in workflows if isinstance(w.trigger, ScheduleTrigger)}
        for workflow_id in list(self._workflows):
            old = self._workflows[workflow_id]
            new = wanted.get(workflow_id)
            if new is None or new.trigger != old.trigger:
                self._cancel(workflow_id)
                del self._workflows[workflow_id]
        for workflow_id, workflow in wanted.items():
            self._workflows[workflow_id] = workflow
            if self._running and workflow_id not in self._timers:
                self._catch_up(workflow)

    def start(self) -> None:
        self._running = True
        for workflow in self._workflows.values():
            self._catch_up(workflow)

    async def stop(self) -> None:
        self._running = False
        for workflow_id in list(self._timers):
            self._cancel(workflow_id)
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

    def idle(self) -> bool:
        return not self._pending

    def _cancel(self, workflow_id: str) -> None:
        timer = self._timers.pop(workflow_id, None)
        if timer is not None:
            timer.cancel()
        self._next.pop(workflow_id, None)

    def _trigger(self, workflow: Workflow) -> ScheduleTrigger:
        assert isinstance(workflow.trigger, ScheduleTrigger)
        return workflow.trigger

    def _catch_up(self, workflow: Workflow) -> None:
        schedule = self._trigger(workflow).schedule
        now = self.clock.now_ms()
        last = self.engine.state.ticks.get(workflow.id, (None, 0))[0]
        if last is not None:
            latest = schedule.latest_at_or_before(now)
            if latest is not None and latest > last:
                missed = schedule.ticks_between(last, latest)
                log.info(
                    "workflow %r missed %d cron tick(s) while down; firing the latest",
                    workflow.id,
                    missed,
                )
                self._fire(workflow, latest, missed)
                return
        self._arm(workflow, schedule.next_after(now))

    def _arm(self, workflow: Workflow, when: int) -> None:
        self._next[workflow.id] = when
        self._timers[workflow.id] = self.clock.call_at(when, lambda: self._due(workflow.id, when))

    def _due(self, workflow_id: str, when: int) -> None:
        self._timers.pop(workflow_id, None)
        workflow = self._workflows.get(workflow_id)
        if workflow is None or not self._running:
            return
        try:
            self._fire(workflow, when, 0)
        except Exception:
            # Logged, and the schedule goes on from the next tick rather than stopping for good.
            log.exception("cron tick %d of workflow %r failed", when, workflow_id)
            if workflow_id not in self._timers:
                self._arm(workflow, self._trigger(workflow).schedule.next_after(when))

    def _fire(self, workflow: Workflow, tick: int, missed: int) -> None:
        task = asyncio.get_running_loop().create_task(
            self._start(workflow, tick, missed), context=self.engine.platform.context
        )
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        self._arm(
            workflow, self._trigger(workflow).schedule.next_after(max(tick, self.clock.now_ms()))
        )

    async def _start(self, workflow: Workflow, tick: int, missed: int) -> None:
        payload: dict[str, Any] = {"scheduledAt": tick, "firedAt": self.clock.now_ms()}
        if missed:
            payload["missedTicks"] = missed
        try:
            await self.engine.start_run(
                workflow.id, payload, run_id=derived_run_id(workflow.id, "cron", tick)
            )
            await self._record_tick(workflow.id, tick)
        except Exception:
            log.exception("cron tick %d of workflow %r could not start its run", tick, workflow.id)

    def _record_tick(self, workflow_id: str, tick: int) -> asyncio.Future[None]:
        return self.engine.writer.tick(workflow_id, tick)

    def schedules(self) -> list[dict[str, Any]]:
        """``[{"workflowId", "cron", "nextAt", "lastAt"}]`` for every schedule trigger."""
        ticks = self.engine.state.ticks
        return [
            {
                "workflowId": workflow_id,
                "cron": self._trigger(workflow).cron,
                "nextAt": self._next.get(workflow_id),
                "lastAt": ticks.get(workflow_id, (None, 0))[0],
            }
            for workflow_id, workflow in sorted(self._workflows.items())
        ]
