"""The dashboard's run endpoints: counts and workflow ids, pages of runs, one run in full.

``GET /_platform/api/runs`` pages through runs newest first with a ``before`` cursor (the last
run id of the previous page) and answers light summaries (no input or output), so the runs page
costs the same with a hundred runs or a hundred thousand. Actions (cancel, rerun, signal) go
through the host's ``/api/workflows/...`` endpoints, not through here: this module only reads.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from host.dashboard.common import bounded, query_limit, query_text
from host.dashboard.links import origin
from host.errors import ApiError, json_response
from host.workerinfo import registry_of, worker_of
from platform_shim.platform import Platform
from platform_shim.workflows.records import StepKind, StepRecord, WorkflowRun

__all__ = ["routes", "run_summary"]

PAGE_DEFAULT = 50
PAGE_MAX = 500
STEPS_MAX = 5000
MESSAGE_CHARS = 500


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


def run_summary(run: WorkflowRun) -> dict[str, Any]:
    """What the runs table shows of a run: everything but its input and output."""
    error = None
    if run.error is not None:
        error = {key: run.error.get(key) for key in ("type", "message", "step") if key in run.error}
        message = error.get("message")
        if isinstance(message, str) and len(message) > MESSAGE_CHARS:
            error["message"] = message[:MESSAGE_CHARS] + "…"
    return {
        "runId": run.run_id,
        "workflowId": run.workflow_id,
        "status": run.status.value,
        "attempt": run.attempt,
        "createdAt": run.created_at,
        "updatedAt": run.updated_at,
        "completedAt": run.completed_at,
        "parentRunId": run.parent_run_id,
        "error": error,
    }


async def overview(request: Request) -> Response:
    """Counts by status (of ``?workflowId=`` if given, so they match a filtered list), the
    total, the workflow ids the host knows, the host's clock (pages judge "5m ago" by it), and
    which process is the store's worker (``host.workerinfo.worker_of``)."""
    platform = _platform(request)
    counts = await platform.workflows.counts(query_text(request, "workflowId"))
    return json_response(
        {
            "counts": counts,
            "total": sum(counts.values()),
            "workflows": sorted(registry_of(request).ids()),
            "now": platform.clock.now_ms(),
            "worker": worker_of(request),
        }
    )


async def run_page(request: Request) -> Response:
    """``?workflowId=&status=&limit=&before=``: ``{"runs": [...], "next": cursor or null}``."""
    platform = _platform(request)
    limit = query_limit(request, PAGE_DEFAULT, PAGE_MAX)
    before = query_text(request, "before")
    workflows = platform.workflows
    if before is not None and await workflows.handle(before).status() is None:
        # An unknown cursor would silently give an empty page; say why instead.
        raise ApiError(400, f"'before' names no run: {before!r} (pruned, or a typo)")
    # One more than asked tells whether there is a next page without a second query.
    runs = await workflows.list(
        workflow_id=query_text(request, "workflowId"),
        status=query_text(request, "status"),
        limit=limit + 1,
        before=before,
    )
    page = runs[:limit]
    more = len(runs) > limit
    return json_response(
        {
            "runs": [run_summary(run) for run in page],
            "next": page[-1].run_id if more and page else None,
        }
    )


def _step(step: StepRecord, replayed: bool) -> dict[str, Any]:
    out = step.to_dict()
    out["output"], size = bounded(step.output)
    if size is not None:
        out["outputTruncated"] = size
    if replayed:
        out["replayed"] = True
    return out


def _replayed(history: list[StepRecord], rerun_of: dict[str, Any] | None) -> int:
    """How many of a rerun's first steps are copies of the original's (they come first, in
    order, up to the step it reran from); their times are the original run's."""
    if rerun_of is None:
        return 0
    for index, step in enumerate(history):
        if step.name == rerun_of.get("fromStep"):
            return index
    return len(history)


async def run_detail(request: Request) -> Response:
    """One run in full: the run, its steps (outputs bounded), its children's statuses, what it
    reran (``rerunOf``: ``{"runId", "fromStep"}``) and each failed attempt with its traceback
    (``failures``: ``[{"attempt", "at", "type", "message", "step"?, "trace"}]``)."""
    platform = _platform(request)
    run_id = request.path_params["run_id"]
    handle = platform.workflows.handle(run_id)
    run = await handle.status()
    if run is None:
        raise ApiError(404, f"unknown workflow run {run_id!r}")
    history = await handle.history()
    children: dict[str, dict[str, Any]] = {}
    for step in history:
        if step.kind is StepKind.INVOKE and step.child_run_id is not None:
            child = await platform.workflows.handle(step.child_run_id).status()
            if child is not None:
                children[child.run_id] = {
                    "workflowId": child.workflow_id,
                    "status": child.status.value,
                }
    detail = await platform.workflows.run_detail(run_id)
    rerun_of = detail.rerun_of if detail is not None else None
    # Tracebacks: only here, behind the dashboard's token, never in the public API.
    failures = detail.failures if detail is not None else []
    replayed = _replayed(history, rerun_of)
    body = run.to_dict()
    for key in ("input", "output"):
        body[key], size = bounded(body[key])
        if size is not None:
            body[f"{key}Truncated"] = size
    return json_response(
        {
            "run": body,
            "steps": [
                _step(step, index < replayed) for index, step in enumerate(history[:STEPS_MAX])
            ],
            "stepCount": len(history),
            "children": children,
            "rerunOf": rerun_of,
            "origin": origin(platform, run, rerun_of),
            "failures": failures,
            "now": platform.clock.now_ms(),
        }
    )


routes: list[BaseRoute] = [
    Route("/_platform/api/overview", overview, methods=["GET"]),
    Route("/_platform/api/runs", run_page, methods=["GET"]),
    Route("/_platform/api/runs/{run_id}", run_detail, methods=["GET"]),
]
