"""The data browser's read-only endpoints: KV namespaces and keys, collections and documents,
stored objects. Every answer is bounded by a ``limit`` with a ceiling, and large values are
previews (see ``host.dashboard.common``); nothing here writes.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from host.dashboard.common import bounded, bounded_raw, query_limit, query_text
from host.errors import ApiError, json_response
from platform_shim.platform import Platform

__all__ = ["routes"]

NAMES_MAX = 1000
ITEMS_DEFAULT = 50
ITEMS_MAX = 500


def _platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    platform.stream.fresh()  # what other processes wrote is visible here too
    return platform


def _required(request: Request, name: str) -> str:
    value = query_text(request, name)
    if value is None:
        raise ApiError(400, f"query parameter {name!r} is required")
    return value


def _names(items: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    items.sort(key=lambda item: item["name"])
    return {"items": items[:limit], "truncated": len(items) > limit}


# ------------------------------------------------------------------------------------- KV


async def kv_namespaces(request: Request) -> Response:
    """``{"items": [{"name", "keys"}], "truncated"}``: namespaces that hold keys, by name."""
    sizes = await _platform(request).kv.namespace_sizes()
    items = [{"name": ns, "keys": keys} for ns, keys in sizes.items()]
    return json_response(_names(items, query_limit(request, NAMES_MAX, NAMES_MAX)))


async def kv_keys(request: Request) -> Response:
    """``?ns=&prefix=&cursor=&limit=``: ``{"keys": [{"name", "expiration", "value"}], "cursor"}``."""
    platform = _platform(request)
    ns = _required(request, "ns")
    limit = query_limit(request, ITEMS_DEFAULT, ITEMS_MAX)
    listing = await platform.kv.list(
        ns, query_text(request, "prefix"), limit, query_text(request, "cursor")
    )
    keys = []
    for key in listing["keys"]:
        raw = await platform.kv.get_raw(ns, key["name"])
        item = dict(key)
        if raw is not None:
            item["value"], size = bounded_raw(raw)
            if size is not None:
                item["truncated"] = size
        keys.append(item)
    return json_response({"keys": keys, "cursor": listing["cursor"]})


# -------------------------------------------------------------------------------- database


async def collections(request: Request) -> Response:
    """``{"items": [{"name", "documents", "indexes"}], "truncated"}``, by name."""
    stats = await _platform(request).database.collection_stats()
    items = [{"name": s.name, "documents": s.documents, "indexes": s.indexes} for s in stats]
    return json_response(_names(items, query_limit(request, NAMES_MAX, NAMES_MAX)))


async def documents(request: Request) -> Response:
    """``?coll=&filter=<json>&skip=&limit=``: ``{"docs": [{"id", "doc"}], "total"}``."""
    platform = _platform(request)
    coll = _required(request, "coll")
    limit = query_limit(request, ITEMS_DEFAULT, ITEMS_MAX)
    raw_skip = request.query_params.get("skip") or "0"
    if not raw_skip.isdigit():
        raise ApiError(
            400, f"query parameter 'skip' must be a non-negative integer, not {raw_skip!r}"
        )
    query: Any = None
    raw_filter = query_text(request, "filter")
    if raw_filter is not None:
        try:
            query = orjson.loads(raw_filter)
        except orjson.JSONDecodeError as exc:
            raise ApiError(400, f"'filter' is not valid JSON: {exc}") from None
        if not isinstance(query, dict):
            raise ApiError(400, f"'filter' must be a JSON object, not {type(query).__name__}")
    database = platform.database
    total = await database.count(coll, query)
    found = await database.find(coll, query, limit=limit, skip=int(raw_skip))
    docs = []
    for doc in found:
        item: dict[str, Any] = {"id": doc.get("_id")}
        item["doc"], size = bounded(doc)
        if size is not None:
            item["truncated"] = size
        docs.append(item)
    return json_response({"docs": docs, "total": total})


# --------------------------------------------------------------------------------- storage


async def objects(request: Request) -> Response:
    """``?prefix=&after=&limit=``: ``{"items": [{"key", "size", "contentType", "lastModified",
    "metadata"}], "next"}`` in key order; ``next`` is the ``after`` of the following page."""
    storage = _platform(request).storage
    prefix = query_text(request, "prefix") or ""
    after = query_text(request, "after")
    limit = query_limit(request, ITEMS_DEFAULT, ITEMS_MAX)
    found = await storage.list(prefix, limit + 1, after=after)  # one more: is there a next page?
    items = found[:limit]
    for item in items:
        item["metadata"], _ = bounded(item["metadata"], 4096)
    more = len(found) > limit
    return json_response({"items": items, "next": items[-1]["key"] if more else None})


PREVIEW_MAX_OBJECT = 1024 * 1024
PREVIEW_TEXT_BYTES = 16 * 1024


def _looks_textual(content_type: str, head: bytes) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind.startswith("text/") or kind.endswith(("json", "xml", "javascript", "yaml")):
        return True
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # cut inside a multi-byte character at the end
    return True


async def object_preview(request: Request) -> Response:
    """``?key=``: ``{"key", "size", "contentType", "text", "truncated"}``; ``text`` is the start
    of a textual object (null for binary or large ones). Shown as text, never rendered."""
    platform = _platform(request)
    key = _required(request, "key")
    meta = await platform.storage.get_metadata(key)
    if meta is None:
        raise ApiError(404, f"no object {key!r}")
    text = None
    if meta["size"] <= PREVIEW_MAX_OBJECT:
        data = await platform.storage.get(key) or b""
        head = data[:PREVIEW_TEXT_BYTES]
        if _looks_textual(meta["contentType"], head):
            text = head.decode("utf-8", errors="replace")
    return json_response(
        {
            "key": key,
            "size": meta["size"],
            "contentType": meta["contentType"],
            "text": text,
            "truncated": text is not None and meta["size"] > PREVIEW_TEXT_BYTES,
        }
    )


routes: list[BaseRoute] = [
    Route("/_platform/api/kv", kv_namespaces, methods=["GET"]),
    Route("/_platform/api/kv/keys", kv_keys, methods=["GET"]),
    Route("/_platform/api/db", collections, methods=["GET"]),
    Route("/_platform/api/db/docs", documents, methods=["GET"]),
    Route("/_platform/api/storage", objects, methods=["GET"]),
    Route("/_platform/api/storage/preview", object_preview, methods=["GET"]),
]
