"""What the HTTP API and the dashboard say about the store's worker, answered alike on the worker
and on a standby host (``host.standby``).

The invariant: nothing here reads state only the worker's process has. The workflows are the
ones this host loaded (every host of an app runs the same code); the cron ticks are the ledger's
(a client folds them too) with the next tick computed by the cron rule the scheduler uses; which
process is the worker comes from the store's advert (``store.read_advert()``), which any process
can read.
"""

from __future__ import annotations

import os
from typing import Any

from starlette.requests import Request

from platform_shim.platform import Platform
from platform_shim.workflows.definition import ScheduleTrigger, WorkflowRegistry

__all__ = ["registry_of", "schedules_of", "worker_of"]


def registry_of(request: Request) -> WorkflowRegistry:
    """The workflows this host loaded (the worker's, when this host is it)."""
    registry: WorkflowRegistry = request.app.state.host.loader.registry
    return registry


async def schedules_of(request: Request) -> list[dict[str, Any]]:
    """``[{"workflowId", "cron", "nextAt", "lastAt"}]`` for every schedule trigger, sorted."""
    platform: Platform = request.app.state.platform
    worker = platform.worker
    if worker is not None:
        return worker.scheduler.schedules()
    ticks = await platform.workflows.ticks()
    now = platform.clock.now_ms()
    rows = []
    for workflow in sorted(registry_of(request), key=lambda w: w.id):
        trigger = workflow.trigger
        if not isinstance(trigger, ScheduleTrigger):
            continue
        last = ticks.get(workflow.id)
        # As the scheduler arms it: the first tick after now and after the last one fired.
        after = max(now, last or 0)
        rows.append(
            {
                "workflowId": workflow.id,
                "cron": trigger.cron,
                "nextAt": trigger.schedule.next_after(after),
                "lastAt": last,
            }
        )
    return rows


def worker_of(request: Request) -> dict[str, Any]:
    """``{"pid", "self", "role"}``: the pid of the process that is the store's worker (from its
    advert; None while no process is), whether that is this process, and this host's role:
    ``"worker"``, or ``"standby"`` (serving the API as a client until it can take over)."""
    platform: Platform = request.app.state.platform
    advert = platform.store.read_advert() or {}
    pid = advert.get("pid")
    pid = pid if isinstance(pid, int) else None
    return {
        "pid": pid,
        "self": pid == os.getpid(),
        "role": "worker" if platform.worker is not None else "standby",
    }
