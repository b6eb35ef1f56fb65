"""``GET /openapi.json``: every route the host serves, as an OpenAPI 3.1 document.

Written by hand, beside the routes it describes: every path, method, parameter, body and answer
of SPEC §3 (plus the host's additions: ``rerun``, ``GET /api/events``), the dashboard's and the
dev-only routes (``host/openapi_dashboard.py``). Tools that read OpenAPI (client generators,
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
from host.openapi_parts import (
    ANY,
    MS,
    MS_OR_NULL,
    OBJECT,
    answers,
    body,
    error,
    json_answer,
    path_param,
    query_param,
    ref,
)
from host.openapi_realtime import REALTIME_PATHS, REALTIME_SCHEMAS
from host.openapi_workflows import WORKFLOW_PATHS, WORKFLOW_SCHEMAS
from host.security import JsonBodyMiddleware, SameOriginMiddleware, TrustedHostMiddleware

__all__ = ["OPENAPI", "REFUSING", "routes"]


_NS = path_param("ns", "KV namespace (at most 1024 bytes)")
_KEY = path_param("key", "KV key (at most 1024 bytes; may contain '/')")
_COLL = path_param("coll", "collection name (at most 256 characters)")
_STORAGE_KEY = path_param(
    "key",
    "object key: '/'-separated names, no empty, '.' or '..' segment, no leading '/', no NUL,"
    " at most 1024 bytes",
)
_LIMIT = {"type": "integer", "minimum": 1}
_FILTERS = [
    query_param("t", "only events of this type", {"type": "string"}),
    query_param("r", "only events of this resource kind", {"type": "string"}),
    query_param("ns", "only events of this namespace", {"type": "string"}),
]

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
    "KvList": {
        "type": "object",
        "required": ["result", "result_info"],
        "properties": {
            "result": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "expiration": MS_OR_NULL},
                },
            },
            "result_info": {
                "type": "object",
                "properties": {
                    "cursor": {"type": ["string", "null"]},
                    "count": {"type": "integer"},
                },
            },
        },
    },
    "Document": {
        "type": "object",
        "description": "a stored document; `_id` and `id` carry its id",
        "properties": {"_id": {"type": "string"}, "id": {"type": "string"}},
    },
    "Index": {
        "type": "object",
        "description": "an index descriptor",
        "required": ["name", "keys"],
        "properties": {
            "collection": {"type": "string"},
            "name": {"type": "string"},
            "keys": {
                "type": "array",
                "description": "[field, 1 | -1] pairs, in order",
                "items": {
                    "type": "array",
                    "items": {"type": ["string", "integer"]},
                    "minItems": 2,
                    "maxItems": 2,
                },
            },
            "unique": {"type": "boolean"},
            "sparse": {"type": "boolean"},
            "kind": {"type": "string"},
        },
    },
    "ObjectMetadata": {
        "type": "object",
        "required": ["size", "contentType", "lastModified"],
        "properties": {
            "size": {"type": "integer", "minimum": 0},
            "contentType": {"type": "string"},
            "lastModified": MS,
            "metadata": {"type": ["object", "null"]},
        },
    },
    "ObjectListing": {
        "type": "object",
        "required": ["key", "size", "lastModified"],
        "properties": {
            "key": {"type": "string"},
            "size": {"type": "integer"},
            "contentType": {"type": "string"},
            "lastModified": MS,
            "metadata": {"type": ["object", "null"]},
        },
    },
    "StreamEvent": {
        "type": "object",
        "required": ["id", "t", "r", "ts"],
        "properties": {
            "id": {"type": "integer", "minimum": 1},
            "t": {"type": "string"},
            "r": {"type": "string"},
            "ns": {"type": ["string", "null"]},
            "k": {"type": ["string", "null"]},
            "data": ANY,
            "ts": MS,
        },
    },
}

# What handlers answer; the middleware's refusals are merged in by ``_responses``.
_HANDLER_ERRORS: dict[str, str] = {
    "400": "bad input: malformed JSON, a wrong type, an unknown operator, a bad key",
    "404": "no such workflow, run, key, document or object",
    "405": "the path exists but not with this method",
    "409": "a duplicate key, or a run id that belongs to another workflow",
    "503": "the data folder could not be written (disk full, permissions): nothing was written",
}

_PATHS: dict[str, Any] = {
    "/api/kv/{ns}": {
        "post": {
            "operationId": "kvList",
            "summary": "List keys of a namespace, in lexicographic order",
            "parameters": [_NS],
            "requestBody": body(
                {
                    "type": "object",
                    "properties": {
                        "prefix": {"type": ["string", "null"]},
                        "limit": {"type": ["integer", "null"], "minimum": 1},
                        "cursor": {"type": ["string", "null"]},
                    },
                },
                required=False,
            ),
            "responses": answers(json_answer(ref("KvList"), "one page of keys")),
        }
    },
    "/api/kv/{ns}/{key}": {
        "get": {
            "operationId": "kvGet",
            "summary": "Read a value",
            "parameters": [_NS, _KEY],
            "responses": answers(json_answer(ANY, "the stored JSON value"), "404"),
        },
        "put": {
            "operationId": "kvPut",
            "summary": "Store a JSON value",
            "parameters": [
                _NS,
                _KEY,
                {
                    "name": "X-TTL",
                    "in": "header",
                    "required": False,
                    "description": "seconds until the key expires",
                    "schema": {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?$"},
                },
            ],
            "requestBody": body(ANY, description="any JSON value"),
            "responses": answers(json_answer(ref("Ok"), "stored and on disk")),
        },
        "delete": {
            "operationId": "kvDelete",
            "summary": "Delete a key (a missing key changes nothing)",
            "parameters": [_NS, _KEY],
            "responses": answers(json_answer(ref("Ok"), "deleted")),
        },
    },
    "/api/db/{coll}": {
        "post": {
            "operationId": "dbFind",
            "summary": "Find documents (Mongo-style filter and options)",
            "parameters": [_COLL],
            "requestBody": body(
                {
                    "type": "object",
                    "properties": {
                        "filter": {"type": ["object", "null"]},
                        "options": {
                            "type": ["object", "null"],
                            "properties": {
                                "sort": {"type": ["object", "array", "null"]},
                                "limit": {"type": ["integer", "null"], "minimum": 0},
                                "skip": {"type": ["integer", "null"], "minimum": 0},
                                "projection": {"type": ["object", "null"]},
                            },
                            "additionalProperties": False,
                        },
                    },
                },
                required=False,
            ),
            "responses": answers(
                json_answer({"type": "array", "items": ref("Document")}, "matches")
            ),
        },
        "put": {
            "operationId": "dbInsert",
            "summary": "Insert a document (an `_id` is generated if absent)",
            "parameters": [_COLL],
            "requestBody": body(OBJECT),
            "responses": answers(
                json_answer(
                    {
                        "type": "object",
                        "required": ["id"],
                        "properties": {"id": {"type": "string"}},
                    },
                    "the new document's id",
                ),
                "409",
            ),
        },
    },
    "/api/db/{coll}/findOne": {
        "post": {
            "operationId": "dbFindOne",
            "summary": "The first document matching a filter",
            "parameters": [_COLL],
            "requestBody": body(OBJECT, required=False, description="the filter"),
            "responses": answers(json_answer(ref("Document"), "the document"), "404"),
        }
    },
    "/api/db/{coll}/update": {
        "post": {
            "operationId": "dbUpdate",
            "summary": "Update the first (or with `many`, every) matching document",
            "parameters": [_COLL],
            "requestBody": body(
                {
                    "type": "object",
                    "required": ["update"],
                    "properties": {
                        "filter": {"type": ["object", "null"]},
                        "update": OBJECT,
                        "many": {"type": "boolean"},
                    },
                }
            ),
            "responses": answers(
                json_answer(
                    {
                        "type": "object",
                        "required": ["matched", "modified", "matchedCount", "modifiedCount"],
                        "properties": {
                            k: {"type": "integer"}
                            for k in ("matched", "modified", "matchedCount", "modifiedCount")
                        },
                    },
                    "how many matched and changed",
                ),
                "409",
            ),
        }
    },
    "/api/db/{coll}/delete": {
        "delete": {
            "operationId": "dbDelete",
            "summary": "Delete the first (or with `?many=1`, every) matching document",
            "parameters": [
                _COLL,
                query_param("many", "'1' or 'true': every match", {"type": "string"}),
            ],
            "requestBody": body(OBJECT, required=False, description="the filter"),
            "responses": answers(
                json_answer(
                    {
                        "type": "object",
                        "required": ["deleted", "deletedCount"],
                        "properties": {
                            "deleted": {"type": "integer"},
                            "deletedCount": {"type": "integer"},
                        },
                    },
                    "how many were deleted",
                )
            ),
        }
    },
    "/api/db/{coll}/indexes": {
        "get": {
            "operationId": "dbListIndexes",
            "summary": "The collection's indexes",
            "parameters": [_COLL],
            "responses": answers(
                json_answer({"type": "array", "items": ref("Index")}, "descriptors")
            ),
        },
        "post": {
            "operationId": "dbCreateIndex",
            "summary": "Create an index",
            "parameters": [_COLL],
            "requestBody": body(
                {
                    "type": "object",
                    "required": ["keys"],
                    "properties": {
                        "keys": {"type": "object", "additionalProperties": {"enum": [1, -1]}},
                        "unique": {"type": "boolean"},
                        "name": {"type": "string"},
                    },
                }
            ),
            "responses": answers(json_answer(ref("Index"), "the index's descriptor"), "409"),
        },
    },
    "/api/db/{coll}/indexes/{name}": {
        "delete": {
            "operationId": "dbDropIndex",
            "summary": "Drop an index",
            "parameters": [_COLL, path_param("name", "index name")],
            "responses": answers(
                json_answer(
                    {
                        "type": "object",
                        "required": ["removed"],
                        "properties": {"removed": {"type": "boolean"}},
                    },
                    "whether it existed",
                )
            ),
        }
    },
    "/api/storage": {
        "get": {
            "operationId": "storageList",
            "summary": "List objects",
            "parameters": [
                query_param("prefix", "only keys starting with this", {"type": "string"}),
                query_param("limit", "at most this many", {"type": "integer", "minimum": 0}),
            ],
            "responses": answers(
                json_answer({"type": "array", "items": ref("ObjectListing")}, "objects")
            ),
        }
    },
    "/api/storage/{key}": {
        "get": {
            "operationId": "storageGet",
            "summary": "An object's bytes (served with its stored content type)",
            "parameters": [_STORAGE_KEY],
            "responses": answers(
                {
                    "description": "the bytes",
                    "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                },
                "404",
            ),
        },
        "put": {
            "operationId": "storagePut",
            "summary": "Store bytes under a key",
            "parameters": [
                _STORAGE_KEY,
                {
                    "name": "X-Metadata",
                    "in": "header",
                    "required": False,
                    "description": "a JSON object stored with the bytes",
                    "schema": {"type": "string"},
                },
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
                },
            },
            "responses": answers(json_answer(ref("Ok"), "stored")),
        },
        "delete": {
            "operationId": "storageDelete",
            "summary": "Delete an object (a missing key changes nothing)",
            "parameters": [_STORAGE_KEY],
            "responses": answers(json_answer(ref("Ok"), "deleted")),
        },
    },
    "/api/storage/{key}/metadata": {
        "get": {
            "operationId": "storageMetadata",
            "summary": "An object's metadata",
            "parameters": [_STORAGE_KEY],
            "responses": answers(json_answer(ref("ObjectMetadata"), "metadata"), "404"),
        }
    },
    "/api/events": {
        "get": {
            "operationId": "eventsRecent",
            "summary": "The newest events still held, oldest first",
            "parameters": [
                query_param("limit", "at most this many (default 100)", _LIMIT),
                *_FILTERS,
            ],
            "responses": answers(
                json_answer({"type": "array", "items": ref("StreamEvent")}, "events")
            ),
        },
        "post": {
            "operationId": "eventsPublish",
            "summary": "Put a custom event on the platform stream",
            "requestBody": body(
                {
                    "type": "object",
                    "required": ["t"],
                    "properties": {
                        "t": {"type": "string", "minLength": 1},
                        "r": {"type": ["string", "null"]},
                        "ns": {"type": ["string", "null"]},
                        "k": {"type": ["string", "null"]},
                        "data": ANY,
                    },
                    "additionalProperties": False,
                }
            ),
            "responses": answers(
                json_answer(
                    {
                        "type": "object",
                        "required": ["id"],
                        "properties": {"id": {"type": "integer"}},
                    },
                    "the event's id",
                )
            ),
        },
    },
    "/api/events/stream": {
        "get": {
            "operationId": "eventsStream",
            "summary": "Server-Sent Events of the platform stream, live (never ends by itself)",
            "parameters": [
                query_param(
                    "since",
                    "first replay the held events after this id",
                    {"type": "integer", "minimum": 0},
                ),
                *_FILTERS,
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "description": "what a reconnecting EventSource sends: like `since`",
                    "schema": {"type": "string"},
                },
            ],
            "responses": {
                "200": {
                    "description": "`id: <id>`, `event: <t>`, `data: <event JSON>` per event",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                "400": error("400"),
            },
        }
    },
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
        {**_PATHS, **WORKFLOW_PATHS, **REALTIME_PATHS, **AUTH_PATHS, **DASHBOARD_PATHS}, REFUSING
    ),
    "components": {
        "schemas": {
            **_SCHEMAS,
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
