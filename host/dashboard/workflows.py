"""``GET /_platform/api/workflows``: every loaded workflow with its trigger, its next and last
cron tick, its options and its runs counted by status.

Bounded by the number of workflows a project defines: the counts come from the ledger's
running tallies (``workflows.counts(workflow_id)``), never from a scan of runs.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from host.errors import json_response
from host.workerinfo import registry_of, schedules_of
from platform_shim.platform import Platform

__all__ = ["routes"]


async def workflow_list(request: Request) -> Response:
    """``{"workflows": [{"id", "trigger", "nextAt", "lastAt", "options", "counts", "total"}],
    "now"}``; ``trigger`` is ``{"kind": "schedule", "cron"}``, ``{"kind": "event", "t", ...}``
    or null; ``nextAt``/``lastAt`` are the cron ticks (epoch ms) of a schedule."""
    platform: Platform = request.app.state.platform
    items: list[dict[str, Any]] = []
    ticks = {s["workflowId"]: s for s in await schedules_of(request)}
    for workflow in sorted(registry_of(request), key=lambda w: w.id):
        counts = await platform.workflows.counts(workflow.id)
        tick = ticks.get(workflow.id, {})
        items.append(
            {
                "id": workflow.id,
                "trigger": workflow.trigger.to_dict() if workflow.trigger else None,
                "nextAt": tick.get("nextAt"),
                "lastAt": tick.get("lastAt"),
                "options": workflow.options(),
                "counts": counts,
                "total": sum(counts.values()),
            }
        )
    return json_response({"workflows": items, "now": platform.clock.now_ms()})


routes: list[BaseRoute] = [Route("/_platform/api/workflows", workflow_list, methods=["GET"])]
