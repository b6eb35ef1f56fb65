"""``POST /_platform/api/runs/bulk``: cancel, or rerun from a step, every run of a filtered list
("cancel all waiting", "rerun every failed ``flaky-payment`` run from ``charge-card``").

Bounded: one request acts on at most ``BULK_MAX`` runs, found through the paged
``workflows.list`` newest first, and answers a cursor (``next``) for the following request;
the page repeats until there is none. Each run goes through the same service calls as the
single-run actions (``cancel``, ``rerun``), so a bulk action is exactly many single ones; a run
that cannot take the action (a step it never reached, say) is reported, not fatal.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from host.api.common import read_object
from host.errors import ApiError, json_response
from platform_shim.errors import UnknownRun, UnknownWorkflow
from platform_shim.platform import Platform
from platform_shim.workflows.records import RunStatus

__all__ = ["BULK_MAX", "routes"]

BULK_MAX = 200
"""Runs one request acts on at most."""

_SKIPPED_SHOWN = 20


def _text(body: dict[str, Any], name: str, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"{name!r} is required and must be a non-empty string, not {value!r}")
    return value


async def bulk(request: Request) -> Response:
    """Body ``{"action": "cancel"|"rerun", "status", "workflowId"?, "fromStep"? (rerun),
    "before"?}``; answers ``{"done", "skipped", "skippedRuns", "started", "next"}``."""
    platform: Platform = request.app.state.platform
    body = await read_object(request)
    unknown = set(body) - {"action", "status", "workflowId", "fromStep", "before"}
    if unknown:
        raise ApiError(400, f"unknown field(s) {sorted(unknown)}")
    action = _text(body, "action")
    if action not in ("cancel", "rerun"):
        raise ApiError(400, f"'action' must be 'cancel' or 'rerun', not {action!r}")
    raw_status = _text(body, "status") or ""
    try:
        status = RunStatus(raw_status)
    except ValueError:
        known = ", ".join(s.value for s in RunStatus)
        raise ApiError(400, f"'status' must be one of {known}, not {raw_status!r}") from None
    workflow_id = _text(body, "workflowId", required=False)
    from_step = None
    if action == "cancel" and status.terminal:
        raise ApiError(400, f"{status.value} runs have ended: there is nothing to cancel")
    if action == "rerun":
        if workflow_id is None:
            raise ApiError(400, "a bulk rerun needs 'workflowId' (steps are a workflow's)")
        from_step = _text(body, "fromStep")
    before = _text(body, "before", required=False)
    workflows = platform.workflows
    if before is not None and await workflows.handle(before).status() is None:
        raise ApiError(400, f"'before' names no run: {before!r}")

    runs = await workflows.list(
        workflow_id=workflow_id, status=status.value, limit=BULK_MAX + 1, before=before
    )
    page, more = runs[:BULK_MAX], len(runs) > BULK_MAX
    done = 0
    skipped: list[dict[str, str]] = []
    started: list[str] = []
    for run in page:
        try:
            if action == "cancel":
                if await workflows.handle(run.run_id).cancel():
                    done += 1
                else:
                    skipped.append({"runId": run.run_id, "reason": "it had already ended"})
            else:
                assert from_step is not None
                handle = await workflows.rerun(run.run_id, from_step)
                started.append(handle.run_id)
                done += 1
        except (ValueError, UnknownRun, UnknownWorkflow) as exc:
            skipped.append({"runId": run.run_id, "reason": str(exc)})
    return json_response(
        {
            "done": done,
            "skipped": len(skipped),
            "skippedRuns": skipped[:_SKIPPED_SHOWN],
            "started": started[:_SKIPPED_SHOWN],
            # The last run acted on still exists (cancelled or rerun), so it is a valid cursor.
            "next": page[-1].run_id if more and page else None,
        }
    )


routes: list[BaseRoute] = [Route("/_platform/api/runs/bulk", bulk, methods=["POST"])]
