"""Object storage: bytes under ``/``-separated keys, with metadata, as a fold of the stream.

The bytes live in content-addressed blob files (``blobs/ab/abcd…``), written whole and fsync'd
before the ``storage.put`` event that names them is appended: the event is the commit point, so
a crash leaves either the old object or the new one, never new metadata on old bytes. Keys never
become file paths, and keys that look like paths escaping a folder (``..``, absolute, NUL,
backslashes, empty segments) are refused anyway, so code moved to a file-backed store stays safe.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import orjson

from platform_shim.clock import Clock
from platform_shim.jsonvalue import dumps
from platform_shim.services.stream import EventStream
from platform_shim.store.protocol import Record, Store

__all__ = ["StorageService", "StorageState", "check_storage_key"]

_MAX_KEY = 1024
_INLINE_READ = 256 * 1024  # read smaller blobs on the loop; larger ones on a thread


def check_storage_key(key: object) -> str:
    """Return ``key`` if it is a safe object key, else raise ``ValueError`` saying why."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"storage key must be a non-empty string, not {key!r}")
    if "\x00" in key:
        raise ValueError(f"storage key {key!r} contains a NUL character")
    if "\\" in key:
        raise ValueError(f"storage key {key!r} contains a backslash; use '/' to separate names")
    if key.startswith("/") or (len(key) > 1 and key[1] == ":" and key[0].isalpha()):
        raise ValueError(f"storage key {key!r} is absolute; keys are relative names like 'a/b.png'")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"storage key {key!r} has an empty, '.' or '..' segment")
    if len(key.encode()) > _MAX_KEY:
        raise ValueError(f"storage key is longer than {_MAX_KEY} bytes: {key[:40]!r}...")
    return key


class StorageState:
    """Object metadata by key: ``size, contentType, lastModified, metadata, blob``."""

    snapshot_name = "storage"
    resource = "storage"

    def __init__(self) -> None:
        self.checkpoint = 0
        self.objects: dict[str, dict[str, Any]] = {}

    def load_snapshot(self, records: Iterable[Record]) -> None:
        self.objects.clear()
        for record in records:
            self.objects[record["k"]] = record["meta"]

    def apply_event(self, event: Record) -> None:
        if event["t"] == "storage.put":
            self.objects[event["k"]] = event["data"]
        elif event["t"] == "storage.delete":
            self.objects.pop(event["k"], None)

    def snapshot_records(self) -> Iterator[bytes]:
        # Copied now, on the loop; serialized as read, off the loop (metadata dicts are
        # replaced, never changed in place).
        return (orjson.dumps({"k": key, "meta": meta}) for key, meta in dict(self.objects).items())

    def referenced_blobs(self) -> set[str]:
        return {meta["blob"] for meta in self.objects.values()}


def _describe(key: str, meta: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "key": key,
        "size": meta["size"],
        "contentType": meta["contentType"],
        "lastModified": meta["lastModified"],
        "metadata": meta.get("metadata"),
    }


class StorageService:
    """``platform.storage``: ``put/get/get_metadata/delete/list``."""

    def __init__(
        self, stream: EventStream, state: StorageState, store: Store, clock: Clock
    ) -> None:
        self._stream = stream
        self._state = state
        self._store = store
        self._clock = clock

    async def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview | str,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Store ``data`` under ``key``; ``metadata`` (JSON) may carry ``contentType``."""
        check_storage_key(key)
        if isinstance(data, str):
            body = data.encode()
            default_type = "text/plain; charset=utf-8"
        elif isinstance(data, bytes | bytearray | memoryview):
            body = bytes(data)
            default_type = "application/octet-stream"
        else:
            raise TypeError(
                f"data for storage key {key!r} must be bytes or str, not {type(data).__name__}"
            )
        if metadata is not None and not isinstance(metadata, Mapping):
            raise TypeError(f"metadata for storage key {key!r} must be an object, not {metadata!r}")
        content_type = default_type
        if metadata:
            given = metadata.get("contentType", metadata.get("content_type"))
            if given is not None:
                if not isinstance(given, str):
                    raise TypeError(
                        f"contentType for storage key {key!r} must be a string, not {given!r}"
                    )
                content_type = given
        meta_json = dumps(
            dict(metadata) if metadata is not None else None, f"metadata for storage key {key!r}"
        )
        digest = await asyncio.to_thread(self._store.put_blob, body)
        now = self._clock.now_ms()
        meta = {
            "size": len(body),
            "contentType": content_type,
            "lastModified": now,
            "metadata": orjson.Fragment(meta_json),
            "blob": digest,
        }
        data_bytes = orjson.dumps(meta)
        state = self._state

        def apply(eid: int, ts: int) -> None:
            state.objects[key] = {**meta, "metadata": orjson.loads(meta_json)}

        await self._stream.submit("storage.put", "storage", None, key, data_bytes, apply)

    async def get(self, key: str) -> bytes | None:
        """The object's bytes, or None."""
        check_storage_key(key)
        self._stream.fresh()
        meta = self._state.objects.get(key)
        if meta is None:
            return None
        if meta["size"] > _INLINE_READ:
            return await asyncio.to_thread(self._store.read_blob, meta["blob"])
        return self._store.read_blob(meta["blob"])

    async def get_metadata(self, key: str) -> dict[str, Any] | None:
        """``{"size", "contentType", "lastModified", "metadata"}``, or None."""
        check_storage_key(key)
        self._stream.fresh()
        meta = self._state.objects.get(key)
        if meta is None:
            return None
        described = _describe(key, meta)
        del described["key"]
        copy: dict[str, Any] = orjson.loads(orjson.dumps(described))
        return copy

    async def delete(self, key: str) -> None:
        """Remove the object; a missing key changes nothing."""
        check_storage_key(key)
        state = self._state
        await self._stream.submit(
            "storage.delete",
            "storage",
            None,
            key,
            b"{}",
            lambda eid, ts: state.objects.pop(key, None) and None,
            validate=lambda: key in state.objects,
        )

    async def list(
        self, prefix: str | None = None, limit: int | None = None, *, after: str | None = None
    ) -> list[dict[str, Any]]:
        """Objects in key order: ``[{"key", "size", "contentType", "lastModified", "metadata"}]``;
        with ``after`` (the last key of the previous page), only the keys sorted after it."""
        if prefix is not None and not isinstance(prefix, str):
            raise ValueError(f"storage list prefix must be a string, not {prefix!r}")
        if after is not None and not isinstance(after, str):
            raise ValueError(f"storage list 'after' must be a string, not {after!r}")
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise ValueError(f"storage list limit must be a non-negative integer, not {limit!r}")
        self._stream.fresh()
        objects = self._state.objects
        keys = sorted(key for key in objects if not prefix or key.startswith(prefix))
        if after is not None:
            keys = keys[bisect.bisect_right(keys, after) :]
        if limit:
            keys = keys[:limit]
        out: list[dict[str, Any]] = orjson.loads(
            orjson.dumps([_describe(key, objects[key]) for key in keys])
        )
        return out
