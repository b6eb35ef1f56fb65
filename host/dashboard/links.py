"""Runs and events linked both ways: what started a run, and which runs an event started.

A run started by a trigger has a derived id (``platform_shim.dispatch.derived_run_id``):
``<workflow>.evt<event id>`` for an event trigger, ``<workflow>.cron<tick ms>`` for a cron tick.
So a run's origin is read off its id (checked by deriving it again, so a user's run id that
merely looks alike is not taken for one), and an event's runs are the few derived ids of the
workflows whose event trigger it could have fired: lookups, never a scan of runs or events.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from host.errors import ApiError, json_response
from host.workerinfo import registry_of
from platform_shim.dispatch import derived_run_id
from platform_shim.platform import Platform
from platform_shim.workflows.definition import EventTrigger
from platform_shim.workflows.records import WorkflowRun

__all__ = ["origin", "routes"]

_DERIVED = re.compile(r"\.(evt|cron)([0-9]{1,19})$")


def _held_event(platform: Platform, event_id: int) -> dict[str, Any] | None:
    """The type and time of a stream event still held in memory, if it is."""
    event = platform.stream.held(event_id)
    return {"type": event.t, "ts": event.ts} if event is not None else None


def origin(platform: Platform, run: WorkflowRun, rerun_of: dict[str, Any] | None) -> dict[str, Any]:
    """What started ``run``: ``{"kind": "parent"|"rerun"|"event"|"cron"|"direct", ...}``."""
    if run.parent_run_id is not None:
        return {"kind": "parent", "runId": run.parent_run_id}
    if rerun_of is not None:
        return {"kind": "rerun", **rerun_of}
    found = _DERIVED.search(run.run_id)
    if found is not None:
        kind, number = found.group(1), int(found.group(2))
        if derived_run_id(run.workflow_id, kind, number) == run.run_id:
            if kind == "cron":
                return {"kind": "cron", "tick": number}
            return {"kind": "event", "eventId": number, "event": _held_event(platform, number)}
    return {"kind": "direct"}


async def event_runs(request: Request) -> Response:
    """``GET /_platform/api/events/{id}/runs``: ``{"runs": [{"runId", "workflowId",
    "status"}]}``, the runs the event started through a workflow's event trigger."""
    raw = request.path_params["event_id"]
    if not raw.isdigit() or len(raw) > 19:
        raise ApiError(400, f"an event id is a non-negative integer, not {raw!r}")
    event_id = int(raw)
    platform: Platform = request.app.state.platform
    runs = []
    for workflow in sorted(registry_of(request), key=lambda w: w.id):
        if not isinstance(workflow.trigger, EventTrigger):
            continue
        run_id = derived_run_id(workflow.id, "evt", event_id)
        run = await platform.workflows.handle(run_id).status()
        if run is not None:
            runs.append(
                {"runId": run.run_id, "workflowId": run.workflow_id, "status": run.status.value}
            )
    return json_response({"runs": runs})


routes: list[BaseRoute] = [
    Route("/_platform/api/events/{event_id}/runs", event_runs, methods=["GET"]),
]
