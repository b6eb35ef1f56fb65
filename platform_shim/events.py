"""Declaring event handlers: ``on_kv_change``, ``on_db_change``, ``on_storage_change``,
``define_event`` and ``on_queue``.

Each returns an ``EventHandler`` (usable as a decorator or called with the function). A handler
receives ``(event, ctx)`` (a queue consumer ``(messages, ctx)``); filter keys left out match
anything, and ``*`` in a key pattern matches any run of characters. Filters are checked when the
module is imported: an unknown key or operation fails the load naming the handler.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from platform_shim.errors import DefinitionError
from platform_shim.keypattern import compile_key_pattern
from platform_shim.signatures import signature_problem

__all__ = [
    "EventHandler",
    "HandlerFunction",
    "define_event",
    "on_db_change",
    "on_kv_change",
    "on_queue",
    "on_storage_change",
]

HandlerFunction = Callable[[Any, Any], Awaitable[Any]]

_KV_OPS = {"put": "kv.put", "delete": "kv.delete", "expired": "kv.expired"}
_DB_OPS = {
    "insert": "db.document.created",
    "update": "db.document.updated",
    "delete": "db.document.deleted",
}
_STORAGE_OPS = {"put": "storage.put", "delete": "storage.delete"}
_KV_TYPES = {v: k for k, v in _KV_OPS.items()}
_DB_TYPES = {v: k for k, v in _DB_OPS.items()}
_STORAGE_TYPES = {v: k for k, v in _STORAGE_OPS.items()}


@dataclass(frozen=True, eq=False)
class EventHandler:
    """A declared handler: what it listens to, its function, and where it was defined."""

    id: str
    kind: str  # "kv" | "db" | "storage" | "event" | "queue"
    fn: HandlerFunction
    filter: Mapping[str, Any]
    file: str = "?"
    line: int = 0
    batch: int = 1
    max_attempts: int = 3
    _key_match: Callable[[str], bool] = field(default=lambda key: True, repr=False)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def queue(self) -> str | None:
        return str(self.filter["queue"]) if self.kind == "queue" else None

    def matches(self, t: str, r: str, ns: str | None, k: str | None) -> bool:
        """Whether a stream event with these fields is for this handler."""
        f = self.filter
        if self.kind == "kv":
            return (
                t in _KV_TYPES
                and (f.get("op") is None or _KV_OPS[f["op"]] == t)
                and (f.get("namespace") is None or f["namespace"] == ns)
                and self._key_match(k or "")
            )
        if self.kind == "db":
            return (
                t in _DB_TYPES
                and (f.get("op") is None or _DB_OPS[f["op"]] == t)
                and (f.get("collection") is None or f["collection"] == ns)
            )
        if self.kind == "storage":
            return (
                t in _STORAGE_TYPES
                and (f.get("op") is None or _STORAGE_OPS[f["op"]] == t)
                and self._key_match(k or "")
            )
        if self.kind == "event":
            return (
                (f.get("t") is None or f["t"] == t)
                and (f.get("r") is None or f["r"] == r)
                and (f.get("ns") is None or f["ns"] == ns)
            )
        return False

    def shape(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event as this kind of handler receives it.

        Every kind carries the stream event's id as ``eventId`` (the one name: a DB event's
        ``id`` is the document's). KV and storage events also keep it as ``id``, the name they
        used before, so existing handlers keep working."""
        data = event.get("data") or {}
        if self.kind == "kv":
            return {
                "op": _KV_TYPES[event["t"]],
                "namespace": event["ns"],
                "key": event["k"],
                "value": data.get("value"),
                "ts": event["ts"],
                "eventId": event["id"],
                "id": event["id"],  # the name before eventId; kept so older handlers still work
            }
        if self.kind == "db":
            doc = data.get("doc")
            before = data.get("before")
            for d in (doc, before):
                if isinstance(d, dict) and "_id" in d:
                    d["id"] = d["_id"]
            return {
                "op": _DB_TYPES[event["t"]],
                "collection": event["ns"],
                "id": event["k"],
                "doc": doc,
                "before": before,
                "ts": event["ts"],
                "eventId": event["id"],
            }
        if self.kind == "storage":
            out = {
                "op": _STORAGE_TYPES[event["t"]],
                "key": event["k"],
                "ts": event["ts"],
                "eventId": event["id"],
                "id": event["id"],  # the name before eventId; kept so older handlers still work
            }
            out.update({k: v for k, v in data.items() if k in ("size", "contentType", "metadata")})
            return out
        # define_event: the raw stream event, with its id also under the one name every
        # handler event uses.
        return {**event, "eventId": event["id"]}

    def to_manifest(self) -> dict[str, Any]:
        trigger = dict(self.filter)
        trigger["kind"] = self.kind
        if self.kind == "queue":
            trigger.update({"batch": self.batch, "maxAttempts": self.max_attempts})
        return {
            "id": self.id,
            "export": getattr(self.fn, "__name__", "?"),
            "file": self.file,
            "trigger": trigger,
        }

    async def __call__(self, event: Any, ctx: Any) -> Any:
        """Call the function directly (for unit tests of the handler itself)."""
        return await self.fn(event, ctx)


def _where(fn: Callable[..., Any]) -> tuple[str, int]:
    try:
        return inspect.getsourcefile(fn) or "?", fn.__code__.co_firstlineno
    except (TypeError, AttributeError):
        return "?", 0


def _check(
    kind: str, spec: object, keys: set[str], ops: Mapping[str, str] | None
) -> dict[str, Any]:
    if spec is None:
        spec = {}
    if not isinstance(spec, Mapping):
        raise DefinitionError(f"{kind} handler filter must be a dict, not {spec!r}")
    unknown = set(spec) - keys
    if unknown:
        raise DefinitionError(
            f"unknown {kind} handler filter key(s) {sorted(unknown)}; known: {sorted(keys)}"
        )
    out = dict(spec)
    for key, value in out.items():
        if value is not None and not isinstance(value, str):
            raise DefinitionError(f"{kind} handler filter {key!r} must be a string, not {value!r}")
    if ops is not None and out.get("op") is not None and out["op"] not in ops:
        raise DefinitionError(
            f"{kind} handler 'op' must be one of {sorted(ops)}, not {out['op']!r}"
        )
    return out


def _make(kind: str, spec: dict[str, Any], fn: HandlerFunction, **extra: Any) -> EventHandler:
    if not callable(fn) or not inspect.iscoroutinefunction(fn):
        raise DefinitionError(
            f"{kind} handler {fn!r} must be an 'async def' function taking "
            + ("(messages, ctx)" if kind == "queue" else "(event, ctx)")
        )
    file, line = _where(fn)
    expected = ("messages", "ctx") if kind == "queue" else ("event", "ctx")
    problem = signature_problem(fn, expected)
    if problem is not None:
        name = getattr(fn, "__name__", repr(fn))
        raise DefinitionError(f"{kind} handler {name!r} at {file}:{line} {problem}")
    handler_id = f"{Path(file).stem}:{getattr(fn, '__name__', 'handler')}"
    key_match = (
        compile_key_pattern(spec.get("keyPattern")) if "keyPattern" in spec else (lambda key: True)
    )
    return EventHandler(handler_id, kind, fn, spec, file, line, _key_match=key_match, **extra)


class _Declare:
    """Decorator-or-call helper shared by the declarations."""

    def __init__(self, kind: str, spec: dict[str, Any], **extra: Any) -> None:
        self._kind = kind
        self._spec = spec
        self._extra = extra

    def __call__(self, fn: HandlerFunction) -> EventHandler:
        return _make(self._kind, self._spec, fn, **self._extra)


@overload
def on_kv_change(spec: Mapping[str, Any] | None) -> Callable[[HandlerFunction], EventHandler]: ...
@overload
def on_kv_change(spec: Mapping[str, Any] | None, fn: HandlerFunction) -> EventHandler: ...
def on_kv_change(spec: Mapping[str, Any] | None, fn: HandlerFunction | None = None) -> Any:
    """React to KV changes: ``{"namespace", "keyPattern", "op": "put"|"delete"|"expired"}``.
    The event: ``op, namespace, key, value, ts, eventId`` (the stream event's id)."""
    declare = _Declare("kv", _check("kv", spec, {"namespace", "keyPattern", "op"}, _KV_OPS))
    return declare(fn) if fn is not None else declare


@overload
def on_db_change(spec: Mapping[str, Any] | None) -> Callable[[HandlerFunction], EventHandler]: ...
@overload
def on_db_change(spec: Mapping[str, Any] | None, fn: HandlerFunction) -> EventHandler: ...
def on_db_change(spec: Mapping[str, Any] | None, fn: HandlerFunction | None = None) -> Any:
    """React to document changes: ``{"collection", "op": "insert"|"update"|"delete"}``.
    The event: ``op, collection, id`` (the document's), ``doc, before, ts, eventId``."""
    declare = _Declare("db", _check("db", spec, {"collection", "op"}, _DB_OPS))
    return declare(fn) if fn is not None else declare


@overload
def on_storage_change(
    spec: Mapping[str, Any] | None,
) -> Callable[[HandlerFunction], EventHandler]: ...
@overload
def on_storage_change(spec: Mapping[str, Any] | None, fn: HandlerFunction) -> EventHandler: ...
def on_storage_change(spec: Mapping[str, Any] | None, fn: HandlerFunction | None = None) -> Any:
    """React to stored objects: ``{"keyPattern", "op": "put"|"delete"}``.
    The event: ``op, key, ts, eventId`` and ``size, contentType, metadata`` on a put."""
    declare = _Declare("storage", _check("storage", spec, {"keyPattern", "op"}, _STORAGE_OPS))
    return declare(fn) if fn is not None else declare


@overload
def define_event(spec: Mapping[str, Any] | None) -> Callable[[HandlerFunction], EventHandler]: ...
@overload
def define_event(spec: Mapping[str, Any] | None, fn: HandlerFunction) -> EventHandler: ...
def define_event(spec: Mapping[str, Any] | None, fn: HandlerFunction | None = None) -> Any:
    """React to raw stream events matching ``{"t", "r", "ns"}``; the handler gets the event
    dict (``id, t, r, ns, k, data, ts``) with its id also as ``eventId``."""
    declare = _Declare("event", _check("event", spec, {"t", "r", "ns"}, None))
    return declare(fn) if fn is not None else declare


@overload
def on_queue(
    queue: str, options: Mapping[str, Any] | None = None
) -> Callable[[HandlerFunction], EventHandler]: ...
@overload
def on_queue(
    queue: str, options: Mapping[str, Any] | None, fn: HandlerFunction
) -> EventHandler: ...
def on_queue(
    queue: str, options: Mapping[str, Any] | None = None, fn: HandlerFunction | None = None
) -> Any:
    """Consume queue ``queue`` in batches: ``async def h(messages, ctx)``; each message is
    ``{"id", "payload", "attempt", "enqueuedAt"}``. Options: ``batch`` (default 1),
    ``maxAttempts`` (default 3) before a message moves to the dead-letter file."""
    if not isinstance(queue, str) or not queue:
        raise DefinitionError(f"on_queue needs a queue name as a non-empty string, not {queue!r}")
    opts = dict(options or {})
    unknown = set(opts) - {"batch", "maxAttempts"}
    if unknown:
        raise DefinitionError(f"unknown on_queue option(s) {sorted(unknown)} for queue {queue!r}")
    batch = opts.get("batch", 1)
    attempts = opts.get("maxAttempts", 3)
    for name, value in (("batch", batch), ("maxAttempts", attempts)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DefinitionError(
                f"on_queue option {name!r} for queue {queue!r} must be a positive integer, not {value!r}"
            )
    declare = _Declare("queue", {"queue": queue}, batch=batch, max_attempts=attempts)
    return declare(fn) if fn is not None else declare
