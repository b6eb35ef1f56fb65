"""HTTP API for workflows: start, signal, inspect, cancel, list, schedules (SPEC §3)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from host.api.common import endpoint, platform_of, query_int, read_json, read_object
from host.errors import ApiError, json_response
from host.workerinfo import schedules_of

__all__ = ["routes"]


async def start(request: Request) -> Response:
    workflow_id = request.path_params["workflow_id"]
    payload = await read_json(request, default=None)
    run_id = request.query_params.get("runId") or None
    # A run id of another workflow's run is a RunIdConflict (409), decided in the commit path.
    handle = await platform_of(request).workflows.start(workflow_id, payload, run_id=run_id)
    return json_response({"runId": handle.run_id})


async def signal(request: Request) -> Response:
    body = await read_object(request)
    event_type = body.get("eventType")
    if not isinstance(event_type, str) or not event_type:
        raise ApiError(400, "'eventType' is required and must be a non-empty string")
    count = await platform_of(request).workflows.send_event(event_type, body.get("payload"))
    return json_response({"count": count})


async def run_status(request: Request) -> Response:
    run_id = request.path_params["run_id"]
    run = await platform_of(request).workflows.handle(run_id).status()
    if run is None:
        raise ApiError(404, f"unknown workflow run {run_id!r}")
    return json_response(run.to_dict())


async def run_history(request: Request) -> Response:
    run_id = request.path_params["run_id"]
    workflows = platform_of(request).workflows
    handle = workflows.handle(run_id)
    if await handle.status() is None:
        raise ApiError(404, f"unknown workflow run {run_id!r}")
    return json_response([step.to_dict() for step in await handle.history()])


async def run_cancel(request: Request) -> Response:
    run_id = request.path_params["run_id"]
    handle = platform_of(request).workflows.handle(run_id)
    if await handle.status() is None:
        raise ApiError(404, f"unknown workflow run {run_id!r}")
    return json_response({"cancelled": await handle.cancel()})


async def run_rerun(request: Request) -> Response:
    """A new run that reuses the recorded results before ``fromStep``."""
    run_id = request.path_params["run_id"]
    body = await read_object(request)
    from_step = body.get("fromStep")
    if not isinstance(from_step, str) or not from_step:
        raise ApiError(400, "'fromStep' (the step to run again from) is required")
    handle = await platform_of(request).workflows.rerun(run_id, from_step)
    return json_response({"runId": handle.run_id})


async def run_list(request: Request) -> Response:
    limit = query_int(request, "limit", 100, minimum=1) or 100
    runs = await platform_of(request).workflows.list(
        workflow_id=request.query_params.get("workflowId") or None,
        status=request.query_params.get("status") or None,
        limit=limit,
        before=request.query_params.get("before") or None,
    )
    return json_response([run.to_dict() for run in runs])


async def schedules(request: Request) -> Response:
    return json_response(await schedules_of(request))


routes: list[BaseRoute] = [
    Route("/api/workflows/signal", endpoint(signal), methods=["POST"]),
    Route("/api/workflows/schedules", endpoint(schedules), methods=["GET"]),
    Route("/api/workflows/runs", endpoint(run_list), methods=["GET"]),
    Route("/api/workflows/runs/{run_id}", endpoint(run_status), methods=["GET"]),
    Route("/api/workflows/runs/{run_id}/history", endpoint(run_history), methods=["GET"]),
    Route("/api/workflows/runs/{run_id}/cancel", endpoint(run_cancel), methods=["POST"]),
    Route("/api/workflows/runs/{run_id}/rerun", endpoint(run_rerun), methods=["POST"]),
    Route("/api/workflows/{workflow_id}/start", endpoint(start), methods=["POST"]),
]
