"""The workflow routes (``host/api/workflows.py``) in ``/openapi.json``: merged by ``host/openapi.py``.

The run and step status enums are the Python enums' values, so the document cannot drift from
what the engine writes.
"""

from __future__ import annotations

from typing import Any

from host.openapi_parts import (
    ANY,
    MS,
    MS_OR_NULL,
    answers,
    body,
    json_answer,
    path_param,
    query_param,
    ref,
)
from platform_shim.workflows import RunStatus, StepKind, StepStatus

__all__ = ["WORKFLOW_PATHS", "WORKFLOW_SCHEMAS"]

_RUN = path_param("runId", "run id")
_LIMIT = {"type": "integer", "minimum": 1}

WORKFLOW_SCHEMAS: dict[str, Any] = {
    # From the enums in code, so the document cannot drift from what the engine writes.
    "RunStatus": {"type": "string", "enum": [status.value for status in RunStatus]},
    "RunError": {
        "type": ["object", "null"],
        "description": "why a run or step failed: its type and message (never a traceback)",
        "properties": {
            "type": {"type": "string"},
            "message": {"type": "string"},
            "step": {"type": "string"},
        },
    },
    "Run": {
        "type": "object",
        "required": ["runId", "workflowId", "status", "attempt", "createdAt", "updatedAt"],
        "properties": {
            "runId": {"type": "string"},
            "workflowId": {"type": "string"},
            "status": ref("RunStatus"),
            "input": ANY,
            "output": ANY,
            "error": ref("RunError"),
            "attempt": {"type": "integer", "minimum": 1},
            "createdAt": MS,
            "updatedAt": MS,
            "completedAt": MS_OR_NULL,
            "parentRunId": {"type": ["string", "null"]},
        },
    },
    "Step": {
        "type": "object",
        "required": ["name", "kind", "status", "startedAt"],
        "properties": {
            "name": {"type": "string"},
            "kind": {"type": "string", "enum": [kind.value for kind in StepKind]},
            "status": {"type": "string", "enum": [status.value for status in StepStatus]},
            "output": ANY,
            "error": ref("RunError"),
            "startedAt": MS,
            "completedAt": MS_OR_NULL,
            "wakeAt": MS_OR_NULL,
            "attempt": {"type": "integer"},
            "eventType": {"type": ["string", "null"]},
            "match": {"type": ["object", "null"]},
            "timeoutAt": MS_OR_NULL,
            "childRunId": {"type": ["string", "null"]},
        },
    },
    "RunId": {"type": "object", "required": ["runId"], "properties": {"runId": {"type": "string"}}},
    "Schedule": {
        "type": "object",
        "required": ["workflowId", "cron"],
        "properties": {
            "workflowId": {"type": "string"},
            "cron": {"type": "string"},
            "nextAt": MS_OR_NULL,
            "lastAt": MS_OR_NULL,
        },
    },
}

WORKFLOW_PATHS: dict[str, Any] = {
    "/api/workflows/{workflowId}/start": {
        "post": {
            "operationId": "workflowStart",
            "summary": "Start a run (with `runId`: idempotently)",
            "parameters": [
                path_param("workflowId", "a loaded workflow's id"),
                query_param(
                    "runId",
                    "a run id of the caller's choosing: at most 200 characters, no '/', '\\\\',"
                    " '?', '#', '%', control characters or surrounding spaces",
                    {"type": "string", "maxLength": 200},
                ),
            ],
            "requestBody": body(ANY, required=False, description="the run's input"),
            "responses": answers(json_answer(ref("RunId"), "the run's id"), "404", "409"),
        }
    },
    "/api/workflows/signal": {
        "post": {
            "operationId": "workflowSignal",
            "summary": "Send an event to runs waiting for it",
            "requestBody": body(
                {
                    "type": "object",
                    "required": ["eventType"],
                    "properties": {
                        "eventType": {"type": "string", "minLength": 1},
                        "payload": ANY,
                    },
                }
            ),
            "responses": answers(
                json_answer(
                    {
                        "type": "object",
                        "required": ["count"],
                        "properties": {"count": {"type": "integer"}},
                    },
                    "how many parked runs it resumed",
                )
            ),
        }
    },
    "/api/workflows/runs": {
        "get": {
            "operationId": "workflowRuns",
            "summary": "Runs, newest first",
            "parameters": [
                query_param("workflowId", "only this workflow's runs", {"type": "string"}),
                query_param("status", "only runs in this status", ref("RunStatus")),
                query_param("limit", "at most this many (default 100)", _LIMIT),
                query_param(
                    "before", "only runs older than this run id (paging)", {"type": "string"}
                ),
            ],
            "responses": answers(json_answer({"type": "array", "items": ref("Run")}, "runs")),
        }
    },
    "/api/workflows/runs/{runId}": {
        "get": {
            "operationId": "workflowRun",
            "summary": "A run",
            "parameters": [_RUN],
            "responses": answers(json_answer(ref("Run"), "the run"), "404"),
        }
    },
    "/api/workflows/runs/{runId}/history": {
        "get": {
            "operationId": "workflowHistory",
            "summary": "A run's steps, in the order they were first reached",
            "parameters": [_RUN],
            "responses": answers(
                json_answer({"type": "array", "items": ref("Step")}, "steps"), "404"
            ),
        }
    },
    "/api/workflows/runs/{runId}/cancel": {
        "post": {
            "operationId": "workflowCancel",
            "summary": "Cancel a run (and the children it waits on)",
            "parameters": [_RUN],
            "responses": answers(
                json_answer(
                    {
                        "type": "object",
                        "required": ["cancelled"],
                        "properties": {"cancelled": {"type": "boolean"}},
                    },
                    "whether the run changed state",
                ),
                "404",
            ),
        }
    },
    "/api/workflows/runs/{runId}/rerun": {
        "post": {
            "operationId": "workflowRerun",
            "summary": "A new run that replays the steps before `fromStep` and runs the rest again",
            "parameters": [_RUN],
            "requestBody": body(
                {
                    "type": "object",
                    "required": ["fromStep"],
                    "properties": {"fromStep": {"type": "string", "minLength": 1}},
                }
            ),
            "responses": answers(json_answer(ref("RunId"), "the new run's id"), "404"),
        }
    },
    "/api/workflows/schedules": {
        "get": {
            "operationId": "workflowSchedules",
            "summary": "Every cron trigger with its next and last tick",
            "responses": answers(
                json_answer({"type": "array", "items": ref("Schedule")}, "schedules")
            ),
        }
    },
}
