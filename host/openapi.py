"""``GET /openapi.json``: every route the host serves, as an OpenAPI 3.1 document.

Written by hand, one module per group of routes (``openapi_data``, ``openapi_workflows``,
``openapi_realtime``, ``openapi_auth``, ``openapi_dashboard``; assembled here): every path,
method, parameter, body and answer of SPEC §3 (plus the host's additions: ``rerun``,
``GET /api/events``), the dashboard's and the dev-only routes. Tools that read OpenAPI (client generators,
``schemathesis``, which the test suite runs against this document) then know the API without
reading code. Every error answer is ``{"error": code, "detail": message}``.

What could drift is derived instead: the status enums from the Python enums, and the answers
the middleware gives before any route runs (401, 403, 413, 415, a bad ``Content-Length``'s
400) from each middleware's ``refusals`` (``REFUSING``), on every operation it guards.
``tests/host/test_openapi.py`` walks ``app.routes`` and the app's middleware against it.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from host.middleware import BearerTokenMiddleware, BodyLimitMiddleware, Refuses
from host.openapi_auth import AUTH_PATHS, AUTH_RESPONSES, AUTH_SCHEMAS
from host.openapi_dashboard import DASHBOARD_PATHS, DEV_SCHEMAS
from host.openapi_data import DATA_PATHS, DATA_SCHEMAS
from host.openapi_parts import (
    OBJECT,
    error,
    json_answer,
    ref,
)
from host.openapi_realtime import REALTIME_PATHS, REALTIME_SCHEMAS
from host.openapi_workflows import WORKFLOW_PATHS, WORKFLOW_SCHEMAS
from host.security import JsonBodyMiddleware, SameOriginMiddleware, TrustedHostMiddleware

__all__ = ["OPENAPI", "REFUSING", "routes"]


_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "detail"],
        "properties": {
            "error": {"type": "string", "description": "a short code: bad_request, not_found, ..."},
            "detail": {"description": "what was wrong, for a person"},
        },
    },
    "Ok": {"type": "object", "required": ["ok"], "properties": {"ok": {"const": True}}},
}

# What handlers answer; the middleware's refusals are merged in by ``_responses``.
_HANDLER_ERRORS: dict[str, str] = {
    "400": "bad input: malformed JSON, a wrong type, an unknown operator, a bad key",
    "404": "no such workflow, run, key, document or object",
    "405": "the path exists but not with this method",
    "409": "a duplicate key, or a run id that belongs to another workflow",
    "503": "the store could not be written (disk full, permissions, database unreachable): nothing was written",
}

_PATHS: dict[str, Any] = {
    "/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {"200": json_answer(OBJECT, "the OpenAPI 3.1 document")},
        }
    },
}

REFUSING: tuple[type[Refuses], ...] = (
    TrustedHostMiddleware,
    SameOriginMiddleware,
    JsonBodyMiddleware,
    BearerTokenMiddleware,
    BodyLimitMiddleware,
)
"""The middleware classes whose refusals the document lists (a test checks the app's stack)."""


def _refusals(paths: dict[str, Any], refusing: tuple[type[Refuses], ...]) -> dict[str, Any]:
    """``paths`` with each middleware refusal added to every operation it guards."""
    out: dict[str, Any] = {}
    for path, operations in paths.items():
        out[path] = {}
        for method, operation in operations.items():
            kind = "websocket" if operation.get("x-websocket") else "http"
            responses = dict(operation["responses"])
            for cls in refusing:
                for refusal in cls.refusals:
                    if refusal.guards(kind, method.upper(), path):
                        responses.setdefault(str(refusal.status), error(str(refusal.status)))
            out[path][method] = {**operation, "responses": dict(sorted(responses.items()))}
    return out


def _responses(
    refusing: tuple[type[Refuses], ...], *extra: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """The shared error answers: the handlers', each refusal's, and ``extra`` ones; one status
    that several give lists every reason."""
    reasons: dict[str, list[str]] = {code: [text] for code, text in _HANDLER_ERRORS.items()}
    for cls in refusing:
        for refusal in cls.refusals:
            reasons.setdefault(str(refusal.status), []).append(refusal.description)
    out: dict[str, dict[str, Any]] = {}
    for more in extra:
        for code, response in more.items():
            reasons.setdefault(code, []).insert(0, response["description"])
            out[code] = response
    for code, texts in sorted(reasons.items()):
        out[code] = {
            **out.get(code, json_answer(ref("Error"), "")),
            "description": "; or ".join(texts),
        }
    return out


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "platform-shim host",
        "version": "0.1.0",
        "description": "The local function host's HTTP API: KV, database, storage, the event"
        " stream and durable workflows. JSON in and out, epoch milliseconds, camelCase keys."
        " Off loopback every /api request needs `Authorization: Bearer <PLATFORM_TOKEN>`."
        " Every route the host serves is listed, the dashboard's (`/_platform`) and the"
        " dev-only ones included.",
    },
    "servers": [{"url": "/"}],
    "paths": _refusals(
        {
            **DATA_PATHS,
            **WORKFLOW_PATHS,
            **REALTIME_PATHS,
            **AUTH_PATHS,
            **DASHBOARD_PATHS,
            **_PATHS,
        },
        REFUSING,
    ),
    "components": {
        "schemas": {
            **_SCHEMAS,
            **DATA_SCHEMAS,
            **WORKFLOW_SCHEMAS,
            **REALTIME_SCHEMAS,
            **AUTH_SCHEMAS,
            **DEV_SCHEMAS,
        },
        "responses": _responses(REFUSING, AUTH_RESPONSES),
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
}

_BODY = orjson.dumps(OPENAPI)


async def openapi(request: Request) -> Response:
    return Response(_BODY, media_type="application/json")


routes: list[BaseRoute] = [Route("/openapi.json", openapi, methods=["GET"])]
