"""The dashboard, the dev-only routes and the realtime WebSocket in ``/openapi.json``.

Merged by ``host/openapi.py``, so the document lists every route the host serves (a test walks
``app.routes`` against it). The dashboard's JSON endpoints (``/_platform/api/``) serve its pages:
their answers are described by their keys, not pinned down field by field, since only the
pages read them. ``/api/dev/clock`` and the ``/`` redirect exist under ``python -m host dev``
only (elsewhere they answer 404); ``/_rt/ws`` is a WebSocket, described by its handshake.
"""

from __future__ import annotations

from typing import Any

from host.openapi_parts import MS, error, path_param, query_param, ref

__all__ = ["DASHBOARD_PATHS", "DEV_SCHEMAS"]

_STR = {"type": "string"}
_HTML = {"description": "the page", "content": {"text/html": {"schema": _STR}}}


def _limit(default: int, maximum: int) -> dict[str, Any]:
    return query_param(
        "limit",
        f"at most this many (default {default})",
        {"type": "integer", "minimum": 1, "maximum": maximum},
    )


def _keys(*required: str) -> dict[str, Any]:
    """A JSON object with these keys (their values are the dashboard's to read)."""
    return {"type": "object", "required": list(required)}


def _json_get(
    operation_id: str,
    summary: str,
    answer: dict[str, Any],
    parameters: list[dict[str, Any]] | None = None,
    errors: tuple[str, ...] = ("400",),
) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "200": {"description": "the answer", "content": {"application/json": {"schema": answer}}}
    }
    responses.update({code: error(code) for code in errors})
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "tags": ["dashboard"],
            "parameters": parameters or [],
            "responses": responses,
        }
    }


def _page(operation_id: str, summary: str, *errors: str) -> dict[str, Any]:
    responses = {"200": _HTML, **{code: error(code) for code in errors}}
    return {
        "get": {
            "operationId": operation_id,
            "summary": summary,
            "tags": ["dashboard"],
            "responses": responses,
        }
    }


_WORKFLOW = query_param("workflowId", "only this workflow's runs")
_STATUS = query_param("status", "only runs in this status", ref("RunStatus"))
_BEFORE = query_param("before", "the page after this run id (the previous answer's `next`)")
_RUN = path_param("runId", "run id")

_JSON_ENDPOINTS: dict[str, Any] = {
    "/_platform/api/overview": _json_get(
        "dashboardOverview",
        "Run counts by status, the workflow ids, the host's clock and which process is the"
        " store's worker",
        {
            "type": "object",
            "required": ["counts", "total", "workflows", "now", "worker"],
            "properties": {
                "counts": {
                    "type": "object",
                    "propertyNames": ref("RunStatus"),
                    "additionalProperties": {"type": "integer", "minimum": 0},
                },
                "total": {"type": "integer", "minimum": 0},
                "workflows": {"type": "array", "items": _STR},
                "now": MS,
                "worker": {
                    "type": "object",
                    "required": ["pid", "self", "role"],
                    "properties": {
                        "pid": {
                            "type": ["integer", "null"],
                            "description": "the worker's pid (its advert); null while none is",
                        },
                        "self": {"type": "boolean", "description": "this host is the worker"},
                        "role": {
                            "type": "string",
                            "enum": ["worker", "standby"],
                            "description": "a standby serves the API as a client of the store"
                            " and takes over when the worker dies",
                        },
                    },
                },
            },
        },
        [_WORKFLOW],
        errors=(),
    ),
    "/_platform/api/runs": _json_get(
        "dashboardRuns",
        "One page of runs, newest first",
        _keys("runs", "next"),
        [_WORKFLOW, _STATUS, _BEFORE, _limit(50, 500)],
    ),
    "/_platform/api/runs/search": _json_get(
        "dashboardSearch",
        "Runs whose id starts with, or whose input, output or error contains, `q`",
        _keys("runs", "next", "scanned", "exact"),
        [
            query_param("q", "a run id (or its start), or text to find", {"type": "string"}),
            query_param(
                "from", "created at or after (epoch ms)", {"type": "integer", "minimum": 0}
            ),
            query_param("to", "created at or before (epoch ms)", {"type": "integer", "minimum": 0}),
            _WORKFLOW,
            _STATUS,
            _BEFORE,
            _limit(50, 500),
        ],
    ),
    "/_platform/api/runs/{runId}": _json_get(
        "dashboardRun",
        "A run with its steps, children and origin",
        _keys("run", "steps", "stepCount", "children", "rerunOf", "origin", "failures", "now"),
        [_RUN],
        errors=("404",),
    ),
    "/_platform/api/workflows": _json_get(
        "dashboardWorkflows",
        "The loaded workflows with their triggers and run counts",
        _keys("workflows", "now"),
        errors=(),
    ),
    "/_platform/api/events/{eventId}/runs": _json_get(
        "dashboardEventRuns",
        "The runs an event started through event triggers",
        _keys("runs"),
        [path_param("eventId", "an event id (a non-negative integer)")],
    ),
    "/_platform/api/kv": _json_get(
        "dashboardKvNamespaces", "KV namespaces", _keys("items", "truncated"), [_limit(1000, 1000)]
    ),
    "/_platform/api/kv/keys": _json_get(
        "dashboardKvKeys",
        "One page of a namespace's keys with bounded values",
        _keys("keys", "cursor"),
        [
            query_param("ns", "the namespace (required)"),
            query_param("prefix", "only keys starting with this"),
            query_param("cursor", "the previous answer's `cursor`"),
            _limit(50, 500),
        ],
    ),
    "/_platform/api/db": _json_get(
        "dashboardCollections",
        "Database collections",
        _keys("items", "truncated"),
        [_limit(1000, 1000)],
    ),
    "/_platform/api/db/docs": _json_get(
        "dashboardDocuments",
        "One page of a collection's documents (bounded) and the matching total",
        _keys("docs", "total"),
        [
            query_param("coll", "the collection (required)"),
            query_param("filter", "a JSON object: a Mongo-style filter"),
            query_param("skip", "documents to skip", {"type": "integer", "minimum": 0}),
            _limit(50, 500),
        ],
    ),
    "/_platform/api/storage": _json_get(
        "dashboardObjects",
        "One page of stored objects",
        _keys("items", "next"),
        [
            query_param("prefix", "only keys starting with this"),
            query_param("after", "the previous answer's `next`"),
            _limit(50, 500),
        ],
    ),
    "/_platform/api/storage/preview": _json_get(
        "dashboardObjectPreview",
        "The start of a textual object, as text",
        _keys("key", "size", "contentType", "text", "truncated"),
        [query_param("key", "the object key (required)")],
        errors=("400", "404"),
    ),
    "/_platform/api/people": _json_get(
        "dashboardPeople",
        "Users and realtime channels with their members",
        _keys("users", "usersTotal", "channels"),
        errors=(),
    ),
    "/_platform/api/runs/bulk": {
        "post": {
            "operationId": "dashboardBulk",
            "summary": "Cancel or rerun the runs in one status (at most 200 per request)",
            "tags": ["dashboard"],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["action", "status"],
                            "properties": {
                                "action": {"enum": ["cancel", "rerun"]},
                                "status": ref("RunStatus"),
                                "workflowId": _STR,
                                "fromStep": _STR,
                                "before": _STR,
                            },
                            "additionalProperties": False,
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "what was done, and where the next request continues",
                    "content": {
                        "application/json": {
                            "schema": _keys("done", "skipped", "skippedRuns", "started", "next")
                        }
                    },
                },
                "400": error("400"),
            },
        }
    },
}

_PAGES: dict[str, Any] = {
    "/_platform": {
        "get": {
            "operationId": "dashboardRedirect",
            "summary": "Redirects to `/_platform/` (keeping `?token=`)",
            "tags": ["dashboard"],
            "responses": {"308": {"description": "to /_platform/"}},
        }
    },
    "/_platform/": _page("dashboardRunsPage", "The runs page"),
    "/_platform/runs/{runId}": {
        "get": {
            **_page("dashboardRunPage", "One run's page (404 when there is no such run)")["get"],
            "parameters": [_RUN],
            "responses": {
                "200": _HTML,
                "404": {"description": "the page, saying there is no such run", **_HTML},
            },
        }
    },
    "/_platform/events": _page("dashboardEventsPage", "The events page"),
    "/_platform/workflows": _page("dashboardWorkflowsPage", "The workflows page"),
    "/_platform/data": _page("dashboardDataPage", "The data page"),
    "/_platform/static/{name}": {
        "get": {
            "operationId": "dashboardStatic",
            "summary": "A stylesheet or script of the dashboard",
            "tags": ["dashboard"],
            "parameters": [path_param("name", "a file name ending in .css or .js")],
            "responses": {
                "200": {
                    "description": "the file",
                    "content": {"text/css": {"schema": _STR}, "text/javascript": {"schema": _STR}},
                },
                "404": error("404"),
            },
        }
    },
}

_DEV_AND_SOCKETS: dict[str, Any] = {
    "/": {
        "get": {
            "operationId": "devRoot",
            "summary": "Under `dev`, when the app has no route at `/`: redirects to the dashboard",
            "tags": ["dev"],
            "responses": {
                "307": {"description": "to /_platform/"},
                "404": error("404"),
            },
        }
    },
    "/api/dev/clock": {
        "get": {
            "operationId": "devClock",
            "summary": "The dev host's clock (404 outside `python -m host dev`)",
            "tags": ["dev"],
            "responses": {
                "200": {
                    "description": "the clock",
                    "content": {"application/json": {"schema": ref("DevClock")}},
                },
                "404": error("404"),
            },
        },
        "post": {
            "operationId": "devClockAdvance",
            "summary": 'Skip the dev host\'s clock ahead (`{"advance": "24h"}`; `{}` reads it)',
            "tags": ["dev"],
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": {"advance": {"type": ["string", "integer"]}},
                            "additionalProperties": False,
                        }
                    }
                },
            },
            "responses": {
                "200": {
                    "description": "the clock after the skip",
                    "content": {"application/json": {"schema": ref("DevClock")}},
                },
                "400": error("400"),
                "404": error("404"),
            },
        },
    },
    "/_rt/ws": {
        "get": {
            "operationId": "realtimeSocket",
            "summary": "The realtime WebSocket (`?cid=<client id>`, `?token=` behind a token)",
            "x-websocket": True,
            "parameters": [
                query_param("cid", "the client's id (required)"),
                query_param("token", "the host's token, when it has one"),
            ],
            "responses": {
                "101": {"description": "the WebSocket handshake succeeded"},
                "404": error("404"),
            },
        }
    },
}

DASHBOARD_PATHS: dict[str, Any] = {**_JSON_ENDPOINTS, **_PAGES, **_DEV_AND_SOCKETS}

DEV_SCHEMAS: dict[str, Any] = {
    "DevClock": {
        "type": "object",
        "required": ["now", "offsetMs"],
        "properties": {"now": MS, "offsetMs": {"type": "integer"}},
    }
}
