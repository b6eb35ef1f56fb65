"""The data routes (``host/api/data.py``: KV, database, storage, events) in ``/openapi.json``:
merged by ``host/openapi.py``."""

from __future__ import annotations

from typing import Any

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

__all__ = ["DATA_PATHS", "DATA_SCHEMAS"]

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


DATA_SCHEMAS: dict[str, Any] = {
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

DATA_PATHS: dict[str, Any] = {
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
}
