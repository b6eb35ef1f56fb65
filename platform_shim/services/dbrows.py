"""The database service's writes on a store that keeps the documents in rows (PostgreSQL).

Invariant: a write is planned from rows read before its commit cycle and written as the same
``db.*`` events the in-memory path writes (``doc`` and ``before``, byte for byte the stored
text), and the database, not this process, decides whether it may commit
(``store/postgres/docrules.py``): a duplicate ``_id`` or unique key fails the commit with
``DuplicateKey``, a ``before`` that is no longer the row with ``StaleWrite``, and then nothing
of the write is applied. A stale plan is read and planned again (at most ``MAX_REPLANS``
times), so two hosts updating one document lose no update. Keys a write would clash on are
looked up before the cycle too, so a plain duplicate is refused without a failed commit (which
costs the log a reload), when one is possible: an ``_id`` the caller chose, a collection with
a unique index (known per collection, forgotten when the stream shows an index change); and in the cycle, where the stream has caught up with every committed
write, a write whose documents an event since its read touched is refused there (its window of
recent events, when it reaches back that far): a commit the database refuses costs the log a
replay of the events log, so the commit's check is kept for what only the database can see (a
unique key taken in the same instant, or a stream window that no longer reaches back). Nothing here keeps a
document after the call returns. Changes to one document by ``_id`` from this process take
turns (a lock per document being changed, dropped when nobody waits): they would only make each
other stale.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import orjson

from platform_shim.errors import DuplicateKey, StaleWrite
from platform_shim.jsonvalue import dumps, loads
from platform_shim.services.dbindex import parse_index_spec
from platform_shim.services.query import compile_filter, equality_terms
from platform_shim.services.stream import EventSpec, EventStream, StreamEvent
from platform_shim.store.protocol import DocumentTable

__all__ = ["MAX_REPLANS", "RowWrites"]

Doc = dict[str, Any]

MAX_REPLANS = 100
"""How many times a write planned from a read that went stale is planned again."""

# What a write makes of one matched document: the new document, or None to delete it; the
# same document object back means "unchanged" (nothing written).
Change = Callable[[Doc], Doc | None]


def _check_name(collection: str) -> None:
    if "\x00" in collection:
        raise ValueError(
            f"collection name {collection!r} holds a NUL character (not on this store)"
        )


class RowWrites:
    """Inserts, updates, deletes and index changes planned from the store's rows."""

    def __init__(self, stream: EventStream, table: DocumentTable) -> None:
        self._stream = stream
        self._table = table
        self._turns: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}
        # Whether a collection has a unique index, as last read (one flag per collection, not
        # per document). Only the pre-check trusts it: the commit's check is the database's.
        self._unique: dict[str, asyncio.Future[bool]] = {}
        stream.add_listener(self._heard)

    def _heard(self, event: StreamEvent) -> None:
        if event.r == "db" and event.t in ("db.index.created", "db.index.dropped"):
            self._unique.pop(event.ns or "", None)

    async def _has_unique(self, collection: str) -> bool:
        known = self._unique.get(collection)
        if known is None:  # one read for every write waiting on it
            known = self._unique[collection] = asyncio.ensure_future(self._read_unique(collection))
        try:
            return await asyncio.shield(known)
        except Exception:
            if self._unique.get(collection) is known:
                del self._unique[collection]
            raise

    async def _read_unique(self, collection: str) -> bool:
        found = [loads(text) for text in await self._table.indexes(collection)]
        return any(index.get("unique") for index in found)

    @contextlib.asynccontextmanager
    async def _turn(self, collection: str, normalized: Mapping[str, Any]) -> AsyncIterator[None]:
        doc_id = equality_terms(dict(normalized)).get("_id")
        if not isinstance(doc_id, str):
            yield
            return
        key = (collection, doc_id)
        lock, users = self._turns.get(key, (None, 0))
        lock = lock or asyncio.Lock()
        self._turns[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            users = self._turns[key][1] - 1
            if users:
                self._turns[key] = (lock, users)
            else:
                del self._turns[key]

    def _touched(self, mark: int, collection: str, ids: set[str]) -> dict[str, str] | None:
        """The last ``db.document.*`` type of each of ``ids`` among the events applied after
        event ``mark``, or None when the stream no longer holds them all."""
        return self._stream.written_since(mark, "db", collection, ids)

    async def _submit(
        self, specs: list[EventSpec], check: Callable[[], None] | None = None
    ) -> None:
        def plan() -> list[EventSpec]:
            if check is not None:
                check()  # in the cycle, caught up: may refuse before anything is written
            return specs

        await self._stream.submit_batch(plan)

    async def insert(self, collection: str, docs: list[Doc], *, given: bool) -> None:
        """Insert ``docs``; ``given``: some ``_id`` is the caller's (else none can clash)."""
        _check_name(collection)
        seen: set[str] = set()
        for doc in docs:
            if doc["_id"] in seen:
                raise DuplicateKey(collection, "_id_", doc["_id"])
            seen.add(doc["_id"])
        mark = self._stream.last_id

        def check() -> None:
            for doc_id, t in (self._touched(mark, collection, seen) or {}).items():
                if t != "db.document.deleted":
                    raise DuplicateKey(collection, "_id_", doc_id)

        if given or await self._has_unique(collection):
            clash = await self._table.clash(collection, docs, new=True)
            if clash is not None:
                raise DuplicateKey(collection, clash[0], clash[1])
        await self._submit(
            [
                (
                    "db.document.created",
                    "db",
                    collection,
                    doc["_id"],
                    b'{"doc":' + orjson.dumps(doc) + b',"before":null}',
                )
                for doc in docs
            ],
            check if given else None,
        )

    async def change(
        self, collection: str, normalized: dict[str, Any], many: bool, change: Change
    ) -> tuple[int, int]:
        """Apply ``change`` to the first (or every) matching document: (matched, changed)."""
        _check_name(collection)
        compile_filter(normalized)
        async with self._turn(collection, normalized):
            return await self._change(collection, normalized, many, change)

    async def _change(
        self, collection: str, normalized: dict[str, Any], many: bool, change: Change
    ) -> tuple[int, int]:
        predicate = compile_filter(normalized)
        for _ in range(MAX_REPLANS):
            mark = self._stream.last_id
            found = await self._table.select(collection, normalized, [], 0, 0 if many else 1)
            matched: list[tuple[str, Doc]] = []
            for body in found.bodies:
                doc: Doc = loads(body)
                if found.exact or predicate(doc):
                    matched.append((body, doc))
            if not many:
                matched = matched[:1]
            specs: list[EventSpec] = []
            written: list[Doc] = []
            for body, doc in matched:
                new = change(doc)
                before = body.encode()
                if new is None:
                    data = b'{"doc":null,"before":' + before + b"}"
                    specs.append(("db.document.deleted", "db", collection, doc["_id"], data))
                elif new is not doc:
                    data = b'{"doc":' + orjson.dumps(new) + b',"before":' + before + b"}"
                    specs.append(("db.document.updated", "db", collection, doc["_id"], data))
                    written.append(new)
            if written and await self._has_unique(collection):
                clash = await self._table.clash(collection, written, new=False)
                if clash is not None:
                    raise DuplicateKey(collection, clash[0], clash[1])
            if not specs:
                return len(matched), 0
            ids = {doc["_id"] for _, doc in matched}

            def check() -> None:
                touched = self._touched(mark, collection, ids)  # noqa: B023 - this iteration's
                if touched:
                    raise StaleWrite(collection, next(iter(touched)))

            try:
                await self._submit(specs, check)
            except StaleWrite:
                continue  # another write changed a matched document first: read it again
            return len(matched), len(specs)
        raise StaleWrite(collection, "(several)")

    async def create_index(self, collection: str, spec: Mapping[str, Any]) -> str:
        _check_name(collection)
        descriptor = parse_index_spec(collection, spec)
        name: str = descriptor["name"]
        body = dumps(descriptor, f"index {name!r} on {collection!r}")
        descriptor = loads(body)
        for existing in await self._table.indexes(collection):
            old = loads(existing)
            if old.get("name") == name:
                if old == descriptor:
                    return name
                raise ValueError(
                    f"collection {collection!r} already has an index named {name!r} "
                    f"with another definition: {old}"
                )
        data = b'{"index":' + body
        if descriptor["unique"] and "partial" in descriptor:
            # The database files keys only for documents the filter matches: it gets the
            # filter as SQL it can evaluate (docrules.py).
            where = self._table.where_sql(descriptor["partial"])
            data += b',"where":' + orjson.dumps(where)
        await self._submit([("db.index.created", "db", collection, name, data + b"}")])
        return name

    async def drop_index(self, collection: str, name: str) -> bool:
        _check_name(collection)
        names = [loads(existing).get("name") for existing in await self._table.indexes(collection)]
        if name not in names:
            return False
        await self._submit([("db.index.dropped", "db", collection, name, b"{}")])
        return True

    async def list_indexes(self, collection: str) -> list[dict[str, Any]]:
        if "\x00" in collection:
            return []
        return [loads(existing) for existing in await self._table.indexes(collection)]

    async def stats(self) -> list[tuple[str, int, int]]:
        return await self._table.stats()
