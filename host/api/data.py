"""HTTP API for the data services: KV, database, storage, events (SPEC §3).

Paths, bodies and answers follow the dev-server protocol the platform's public JS client
(``@maravilla-labs/platform``) speaks, so ``getPlatform()`` with ``MARAVILLA_DEV_SERVER``
pointing here works unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from host.api.common import endpoint, parse_json, platform_of, query_int, read_object
from host.errors import ApiError, json_response
from platform_shim.services.dbindex import parse_index_spec
from platform_shim.services.shaping import sort_documents
from platform_shim.services.stream import StreamEvent

__all__ = ["routes"]

_OK = {"ok": True}


# ------------------------------------------------------------------------------------- KV


def _kv_target(request: Request) -> tuple[str, str]:
    """The namespace and key of a ``/api/kv/{ns}/{key}`` request.

    The JS client puts the key in the path *without* encoding it, so a ``?`` in a key (``"a?b"``)
    arrives as a query string. These routes take no query parameters, so the query is read back
    as the rest of the key: otherwise a put of ``"a?b"`` would overwrite ``"a"``. It is read raw,
    not through ``request.query_params``: parsing it as parameters would lose ``&``, ``=`` and
    ``+`` of the key.
    """
    p = request.path_params
    key: str = p["key"]
    query: bytes = request.scope.get("query_string", b"")
    if query:
        key += "?" + unquote(query.decode("latin-1"))
    return p["ns"], key


async def kv_get(request: Request) -> Response:
    ns, key = _kv_target(request)
    # The stored JSON text, as written: one read, and a stored JSON null (which reads like a
    # missing key in the JS client too) told apart from a missing key.
    raw = await platform_of(request).kv.get_raw(ns, key)
    if raw is None:
        raise ApiError(404, f"no key {key!r} in namespace {ns!r}")
    return Response(raw, media_type="application/json")


async def kv_put(request: Request) -> Response:
    ttl_header = request.headers.get("x-ttl")
    ttl: float | None = None
    if ttl_header:
        try:
            ttl = float(ttl_header)
        except ValueError:
            raise ApiError(400, f"X-TTL must be a number of seconds, not {ttl_header!r}") from None
        # (Its range is the service's to check: the same ValueError, a 400, from Python too.)
    body = await request.body()
    if not body.strip():
        raise ApiError(400, "the body must be a JSON value")
    value = parse_json(body, "body")
    await platform_of(request).kv.put(*_kv_target(request), value, ttl)
    return json_response(_OK)


async def kv_delete(request: Request) -> Response:
    await platform_of(request).kv.delete(*_kv_target(request))
    return json_response(_OK)


async def kv_list(request: Request) -> Response:
    body = await read_object(request, default={})
    prefix, limit, cursor = body.get("prefix"), body.get("limit"), body.get("cursor")
    if limit is None:  # absent or null: the default page size
        limit = 1000
    result = await platform_of(request).kv.list(request.path_params["ns"], prefix, limit, cursor)
    return json_response(
        {
            "result": result["keys"],
            "result_info": {"cursor": result["cursor"], "count": len(result["keys"])},
        }
    )


# -------------------------------------------------------------------------------- database


async def db_find(request: Request) -> Response:
    body = await read_object(request, default={})
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise ApiError(400, "'options' must be an object")
    unknown = set(options) - {"sort", "limit", "skip", "projection"}
    if unknown:
        raise ApiError(400, f"unknown find option(s) {sorted(unknown)}")
    sort = options.get("sort")
    if sort is not None:
        if not isinstance(sort, dict | list):
            raise ApiError(
                400,
                f"find option 'sort' must be an object or a list of [field, direction], not {sort!r}",
            )
        sort_documents([], sort)  # a bad field or direction is a 400 also on an empty collection
    docs = await platform_of(request).database.find(
        request.path_params["coll"],
        body.get("filter"),
        sort=sort,
        limit=options.get("limit"),
        skip=options.get("skip"),
        projection=options.get("projection"),
    )
    return json_response(docs)


async def db_find_one(request: Request) -> Response:
    filter = await read_object(request, default={})
    doc = await platform_of(request).database.find_one(request.path_params["coll"], filter)
    if doc is None:
        raise ApiError(404, f"no document in {request.path_params['coll']!r} matches the filter")
    return json_response(doc)


async def db_insert(request: Request) -> Response:
    document = await read_object(request)
    doc_id = await platform_of(request).database.insert_one(request.path_params["coll"], document)
    return json_response({"id": doc_id})


async def db_update(request: Request) -> Response:
    body = await read_object(request)
    if "update" not in body:
        raise ApiError(400, "the body needs 'filter' and 'update'")
    database = platform_of(request).database
    update = database.update_many if body.get("many") is True else database.update_one
    result = await update(request.path_params["coll"], body.get("filter"), body["update"])
    return json_response(
        {**result, "matchedCount": result["matched"], "modifiedCount": result["modified"]}
    )


async def db_delete(request: Request) -> Response:
    filter = await read_object(request, default={})
    database = platform_of(request).database
    many = request.query_params.get("many") in ("1", "true")
    delete = database.delete_many if many else database.delete_one
    result = await delete(request.path_params["coll"], filter)
    return json_response({**result, "deletedCount": result["deleted"]})


async def db_indexes(request: Request) -> Response:
    database = platform_of(request).database
    coll = request.path_params["coll"]
    if request.method in ("GET", "HEAD"):
        return json_response(await database.list_indexes(coll))
    spec = await read_object(request)
    name = await database.create_index(coll, spec)
    # The JS client's createIndex() resolves to an IndexDescriptor, not a bare name.
    for descriptor in await database.list_indexes(coll):
        if descriptor["name"] == name:
            return json_response(descriptor)
    return json_response(parse_index_spec(coll, spec))  # dropped again by someone else meanwhile


async def db_drop_index(request: Request) -> Response:
    p = request.path_params
    removed = await platform_of(request).database.drop_index(p["coll"], p["name"])
    return json_response({"removed": removed})


# --------------------------------------------------------------------------------- storage


def _storage_target(request: Request) -> tuple[str, bool]:
    """The object key and whether ``/metadata`` was asked for.

    The JS client sends the key percent-encoded as one segment (``a%2Fb.png``); curl users type
    ``a/b.png``. The raw path tells the two apart, so ``/api/storage/a%2Fb.png/metadata`` is the
    metadata of ``a/b.png``; a key that itself ends in ``/metadata`` is reached encoded.
    """
    raw: bytes = request.scope.get("raw_path") or request.url.path.encode()
    rest = raw.decode("latin-1").split("?", 1)[0]
    prefix = "/api/storage/"
    rest = (
        rest[rest.index(prefix) + len(prefix) :] if prefix in rest else request.path_params["key"]
    )
    metadata = False
    if request.method in ("GET", "HEAD") and rest.endswith("/metadata"):
        rest = rest[: -len("/metadata")]
        metadata = True
    try:
        key = unquote(rest, errors="strict")
    except UnicodeDecodeError:
        raise ApiError(400, f"storage key {rest!r} is not percent-encoded UTF-8") from None
    return key, metadata


async def storage_object(request: Request) -> Response:
    key, want_metadata = _storage_target(request)
    storage = platform_of(request).storage
    # Starlette routes HEAD to GET routes: it must read, never fall through to the delete below.
    if request.method in ("GET", "HEAD"):
        if want_metadata:
            meta = await storage.get_metadata(key)
            if meta is None:
                raise ApiError(404, f"no object {key!r}")
            return json_response(meta)
        data = await storage.get(key)
        if data is None:
            raise ApiError(404, f"no object {key!r}")
        meta = await storage.get_metadata(key)
        media = meta["contentType"] if meta else "application/octet-stream"
        # Exactly the stored type (``media_type=`` would append a charset to text/* types).
        # Served as stored, but never as a page of this origin: an uploaded text/html or SVG
        # must not run script next to the API and the dashboard.
        return Response(
            data,
            headers={
                "content-type": media,
                "x-content-type-options": "nosniff",
                "content-security-policy": "sandbox",
            },
        )
    if request.method == "PUT":
        metadata: dict[str, Any] | None = None
        header = request.headers.get("x-metadata")
        if header:
            # Header bytes arrive as latin-1 text; JSON in them is UTF-8.
            metadata = parse_json(header.encode("latin-1"), "in X-Metadata")
            if not isinstance(metadata, dict):
                raise ApiError(400, "X-Metadata must be a JSON object")
        content_type = request.headers.get("content-type")
        # The type travels in the metadata (``StorageService.put`` reads it there). The JS
        # client's default ``application/json`` header (sent with a stream) says nothing about
        # the object, and ``application/octet-stream`` is what bytes get anyway: neither is
        # added, so a plain put keeps ``metadata: null``.
        if content_type and content_type not in ("application/json", "application/octet-stream"):
            metadata = dict(metadata or {})
            metadata.setdefault("contentType", content_type)
        await storage.put(key, await request.body(), metadata)
        return json_response(_OK)
    if request.method != "DELETE":  # unreachable with this route's methods; never a silent delete
        raise ApiError(405, f"method {request.method} is not allowed on {request.url.path}")
    await storage.delete(key)
    return json_response(_OK)


async def storage_list(request: Request) -> Response:
    prefix = request.query_params.get("prefix") or None
    limit = query_int(request, "limit")
    return json_response(await platform_of(request).storage.list(prefix, limit))


# ---------------------------------------------------------------------------------- events


async def events_publish(request: Request) -> Response:
    body = await read_object(request)
    t = body.get("t")
    if not isinstance(t, str) or not t:
        raise ApiError(400, "'t' (the event type) is required")
    if any(ord(c) < 0x20 or c == "\x7f" for c in t):
        # A line break would forge fields in the SSE stream (``event: <t>``).
        raise ApiError(400, f"'t' must not contain control characters: {t!r}")
    unknown = set(body) - {"t", "r", "ns", "k", "data"}
    if unknown:
        raise ApiError(400, f"unknown event field(s) {sorted(unknown)}")
    event_id = await platform_of(request).events.publish(
        t, body.get("data"), r=body.get("r") or "custom", ns=body.get("ns"), k=body.get("k")
    )
    return json_response({"id": event_id})


def _sse(event: StreamEvent) -> bytes:
    # ``t`` is one SSE field line: a CR or LF in it (written by some other client) must not
    # start a forged field. ``event.line`` is compact JSON, so it holds no raw line break.
    t = event.t.replace("\r", " ").replace("\n", " ")
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (event.id, t.encode(), event.line)


_KEEP_ALIVE = object()
_KEEP_ALIVE_SECS = 15.0


async def _next_or_stop(
    queue: asyncio.Queue[StreamEvent | None], shutting_down: asyncio.Event | None
) -> object:
    """The next queued event; ``_KEEP_ALIVE`` after a quiet spell; ``None`` when the host stops.

    An open stream would otherwise hold a graceful shutdown for its whole timeout: when the
    server puts an ``asyncio.Event`` at ``app.state.shutting_down`` and sets it on SIGTERM, every
    stream ends at once (the client reconnects with ``Last-Event-ID``).
    """
    if shutting_down is not None and shutting_down.is_set():
        return None
    get = asyncio.ensure_future(queue.get())
    waiters: set[asyncio.Future[Any]] = {get}
    stop = asyncio.ensure_future(shutting_down.wait()) if shutting_down is not None else None
    if stop is not None:
        waiters.add(stop)
    try:
        done, _ = await asyncio.wait(
            waiters, timeout=_KEEP_ALIVE_SECS, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for waiter in waiters:
            if not waiter.done():
                waiter.cancel()
    if get in done:
        return get.result()
    if stop is not None and stop in done:
        return None
    return _KEEP_ALIVE


async def events_stream(request: Request) -> Response:
    """Server-Sent Events of the platform stream, live; ``?since=<id>`` (or ``Last-Event-ID``)
    first replays what is still held after that id; ``t``, ``r``, ``ns`` filter."""
    platform = platform_of(request)
    stream = platform.stream
    since = query_int(request, "since")
    last_event = request.headers.get("last-event-id")
    if since is None and last_event and last_event.isdigit():
        since = int(last_event)
    filters = {
        key: request.query_params[key] for key in ("t", "r", "ns") if request.query_params.get(key)
    }
    queue: asyncio.Queue[StreamEvent | None] = asyncio.Queue(maxsize=10_000)

    def wanted(event: StreamEvent) -> bool:
        return all(getattr(event, key) == value for key, value in filters.items())

    def listener(event: StreamEvent) -> None:
        if wanted(event):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                # A client this slow is dropped (it resumes with Last-Event-ID or ?since=):
                # end its stream rather than silently skip events.
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(None)

    shutting_down: asyncio.Event | None = getattr(request.app.state, "shutting_down", None)

    async def body() -> AsyncIterator[bytes]:
        # Registered here, once the body is being sent, not when the response is made: a client
        # gone before the body starts never runs this generator, so nothing could unregister
        # it. The backlog is read in the same step (no await in between): no event falls
        # between the two.
        backlog = (
            [event for event in stream.since(since) if wanted(event)] if since is not None else []
        )
        stream.add_listener(listener)
        try:
            yield b": connected\n\n"
            for old in backlog:
                yield _sse(old)
            last = backlog[-1].id if backlog else -1
            while True:
                item = await _next_or_stop(queue, shutting_down)
                if item is _KEEP_ALIVE:
                    yield b": keep-alive\n\n"
                    continue
                if item is None or not isinstance(item, StreamEvent):
                    return
                if item.id > last:
                    last = item.id
                    yield _sse(item)
        finally:
            with contextlib.suppress(ValueError):
                stream.remove_listener(listener)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def events_recent(request: Request) -> Response:
    """The newest events still held (``?limit=``, filters ``t``, ``r``, ``ns``), newest last."""
    platform = platform_of(request)
    platform.stream.fresh()
    limit = query_int(request, "limit", 100, minimum=1) or 100
    filters = {
        key: request.query_params[key] for key in ("t", "r", "ns") if request.query_params.get(key)
    }
    events = [
        e for e in platform.stream.since(0) if all(getattr(e, k) == v for k, v in filters.items())
    ]
    return Response(
        b"[" + b",".join(e.line for e in events[-limit:]) + b"]", media_type="application/json"
    )


# Dispatch on the method, read-only by default: Starlette also routes HEAD to every GET route.


async def kv_key(request: Request) -> Response:
    if request.method == "PUT":
        return await kv_put(request)
    if request.method == "DELETE":
        return await kv_delete(request)
    return await kv_get(request)


async def db_collection(request: Request) -> Response:
    return await (db_insert(request) if request.method == "PUT" else db_find(request))


async def events(request: Request) -> Response:
    return await (events_publish(request) if request.method == "POST" else events_recent(request))


# One route per path, so a wrong method gets a 405 whose ``Allow`` lists every method.
routes: list[BaseRoute] = [
    Route("/api/kv/{ns}", endpoint(kv_list), methods=["POST"]),
    Route("/api/kv/{ns}/{key:path}", endpoint(kv_key), methods=["GET", "PUT", "DELETE"]),
    Route("/api/db/{coll}/findOne", endpoint(db_find_one), methods=["POST"]),
    Route("/api/db/{coll}/update", endpoint(db_update), methods=["POST"]),
    Route("/api/db/{coll}/delete", endpoint(db_delete), methods=["DELETE"]),
    Route("/api/db/{coll}/indexes", endpoint(db_indexes), methods=["GET", "POST"]),
    Route("/api/db/{coll}/indexes/{name}", endpoint(db_drop_index), methods=["DELETE"]),
    Route("/api/db/{coll}", endpoint(db_collection), methods=["POST", "PUT"]),
    Route("/api/storage", endpoint(storage_list), methods=["GET"]),
    Route("/api/storage/{key:path}", endpoint(storage_object), methods=["GET", "PUT", "DELETE"]),
    Route("/api/events", endpoint(events), methods=["GET", "POST"]),
    Route("/api/events/stream", endpoint(events_stream), methods=["GET"]),
]
