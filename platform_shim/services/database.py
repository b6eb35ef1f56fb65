"""The document database: Mongo-style collections as a fold of ``db.*`` stream events.

Every document has a string ``_id`` and is returned with the same value under ``id`` too (the
platform's shape); filters may use either. Writes are validated inside the commit cycle, after
catching up with other processes, so a duplicate ``_id`` or a unique-index clash is caught
whichever process raced us, and raises ``DuplicateKey`` with nothing written. A multi-document
write (``insert_many``, ``update_many``, ``delete_many``) is validated whole before any of its
events is written, and its events are written in one ``write``.

On a store that keeps the documents where they live (``Store.documents()``: the PostgreSQL
store), reads (``find``, ``find_one``, ``count``) are answered there, with exactly the results
evaluating the fold here would give, and writes are planned from its rows and checked by the
database in their commit (``dbrows.py``): this process then keeps no document at all.

The fold itself (collections, their indexes, the unique checks) is ``dbstate.py``.

Size (over 400 lines, on purpose): the service API and the plans its writes make inside the
commit cycle are one write path; splitting it would split each write. The shapes a caller
passes and gets (filters with ``id``, their copies) are ``dbshape.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from platform_shim.errors import DuplicateKey
from platform_shim.ids import new_id
from platform_shim.jsonvalue import dumps, loads
from platform_shim.services.dbindex import Index, parse_index_spec
from platform_shim.services.dbrows import RowWrites
from platform_shim.services.dbshape import check_collection, normalize_filter, page, public, with_id
from platform_shim.services.dbstate import Collection, DbState
from platform_shim.services.query import (
    apply_projection,
    compile_filter,
    equality_terms,
    sort_documents,
)
from platform_shim.services.stream import EventSpec, EventStream
from platform_shim.services.update import compile_update
from platform_shim.store.protocol import DocumentTable

__all__ = ["Collection", "CollectionStats", "DatabaseService", "DbState"]

Doc = dict[str, Any]

log = logging.getLogger("platform_shim.store")


@dataclass(frozen=True)
class CollectionStats:
    """A collection's sizes: ``indexes`` counts the implicit ``_id_`` one too."""

    name: str
    documents: int
    indexes: int


def _names_id(document: Mapping[str, Any]) -> bool:
    """The caller chose the document's id (one we generate cannot clash)."""
    return "_id" in document or "id" in document


class DatabaseService:
    """``platform.database`` (alias ``platform.db``)."""

    def __init__(
        self, stream: EventStream, state: DbState, documents: DocumentTable | None = None
    ) -> None:
        self._stream = stream
        self._state = state
        # Where reads run when the store keeps the documents queryable (PostgreSQL): they are
        # answered there, exactly as ``_select`` would answer them here. (A collection whose
        # name holds a \x00, which SQL text cannot, is still read from the fold.)
        self._table = documents
        self._rows = RowWrites(stream, documents) if documents is not None else None

    # ----------------------------------------------------------------------------- reads

    def _select(self, coll: Collection, filter: Mapping[str, Any] | None) -> list[Doc]:
        normalized = normalize_filter(filter)
        predicate = compile_filter(normalized)
        terms = equality_terms(normalized)
        candidates: Any = None
        if "_id" in terms:
            doc = coll.docs.get(terms["_id"]) if isinstance(terms["_id"], str) else None
            candidates = [doc] if doc is not None else []
        else:
            for index in coll.indexes.values():
                ids = index.lookup(terms)
                if ids is not None:
                    # Insertion order, as a full scan would give.
                    candidates = [coll.docs[i] for i in sorted(ids, key=coll.rank.__getitem__)]
                    break
        if candidates is None:
            candidates = coll.docs.values()
        return [doc for doc in candidates if predicate(doc)]

    async def find(
        self,
        collection: str,
        filter: Mapping[str, Any] | None = None,
        *,
        sort: Mapping[str, int] | Sequence[tuple[str, int]] | None = None,
        limit: int | None = None,
        skip: int | None = None,
        projection: Mapping[str, Any] | None = None,
    ) -> list[Doc]:
        """Documents matching ``filter``, sorted, skipped and limited, each the caller's copy."""
        check_collection(collection)
        for name, value in (("limit", limit), ("skip", skip)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ValueError(
                    f"find option {name!r} must be a non-negative integer, not {value!r}"
                )
        if projection is not None:
            apply_projection({}, projection)  # validate before doing any work
        if self._table is not None and "\x00" not in collection:
            return await self._find_in_table(collection, filter, sort, skip, limit, projection)
        self._stream.fresh()
        coll = self._state.collections.get(collection)
        if coll is None:
            compile_filter(normalize_filter(filter))
            return []
        docs = page(self._select(coll, filter), sort, skip, limit)
        return [public(doc, projection) for doc in docs]

    async def _find_in_table(
        self,
        collection: str,
        filter: Mapping[str, Any] | None,
        sort: Mapping[str, int] | Sequence[tuple[str, int]] | None,
        skip: int | None,
        limit: int | None,
        projection: Mapping[str, Any] | None,
    ) -> list[Doc]:
        assert self._table is not None
        normalized = normalize_filter(filter)
        predicate = compile_filter(normalized)  # validates; the table's answer needs no recheck
        pairs: list[tuple[str, int]] = []
        if sort:
            try:
                sort_documents([], sort)  # validates
            except ValueError:
                # The fold checks a sort only on a collection it has; answer as it does.
                if all(name != collection for name, _, _ in await self._table.stats()):
                    return []
                raise
            items = sort.items() if isinstance(sort, Mapping) else sort
            pairs = [(str(path), int(direction)) for path, direction in items]
        found = await self._table.select(collection, normalized, pairs, skip or 0, limit or 0)
        docs: list[Doc] = [loads(body) for body in found.bodies]
        if not found.exact:
            docs = page([doc for doc in docs if predicate(doc)], sort, skip, limit)
        return [with_id(apply_projection(doc, projection) if projection else doc) for doc in docs]

    async def find_one(
        self,
        collection: str,
        filter: Mapping[str, Any] | None = None,
        *,
        projection: Mapping[str, Any] | None = None,
    ) -> Doc | None:
        """The first matching document, or None."""
        found = await self.find(collection, filter, limit=1, projection=projection)
        return found[0] if found else None

    async def count(self, collection: str, filter: Mapping[str, Any] | None = None) -> int:
        """How many documents match."""
        check_collection(collection)
        if self._table is not None and "\x00" not in collection:
            normalized = normalize_filter(filter)
            predicate = compile_filter(normalized)
            counted = await self._table.count(collection, normalized)
            if counted is not None:
                return counted
            found = await self._table.select(collection, normalized, [], 0, 0)
            return sum(1 for body in found.bodies if predicate(loads(body)))
        self._stream.fresh()
        coll = self._state.collections.get(collection)
        if coll is None:
            compile_filter(normalize_filter(filter))
            return 0
        if not filter:
            return len(coll.docs)
        return len(self._select(coll, filter))

    async def collection_stats(self) -> list[CollectionStats]:
        """Every collection (an emptied one too), by name, with its sizes."""
        if self._rows is not None:
            return [CollectionStats(n, docs, idx + 1) for n, docs, idx in await self._rows.stats()]
        self._stream.fresh()
        return [
            CollectionStats(name, len(coll.docs), len(coll.indexes) + 1)
            for name, coll in sorted(self._state.collections.items())
        ]

    async def list_indexes(self, collection: str) -> list[dict[str, Any]]:
        """Descriptors of the collection's indexes, the implicit ``_id_`` first."""
        check_collection(collection)
        out: list[dict[str, Any]] = [
            {
                "collection": collection,
                "name": "_id_",
                "keys": [["_id", 1]],
                "unique": True,
                "sparse": False,
                "kind": "document",
            }
        ]
        if self._rows is not None:
            out.extend(await self._rows.list_indexes(collection))
            return out
        self._stream.fresh()
        coll = self._state.collections.get(collection)
        if coll is not None:
            out.extend(loads(orjson.dumps(index.descriptor)) for index in coll.indexes.values())
        return out

    async def create_index(self, collection: str, spec: Mapping[str, Any]) -> str:
        """Create a secondary index ``{"keys": {field: 1|-1, ...}, "unique", "name", "sparse",
        "partial"}``; returns its name.

        Creating an index that exists with the same definition is a no-op (so start-up code can
        run it every time); the same name with another definition is a ``ValueError``. A unique
        index that documents already violate raises ``DuplicateKey`` and creates nothing.
        """
        check_collection(collection)
        if self._rows is not None:
            return await self._rows.create_index(collection, spec)
        descriptor = parse_index_spec(collection, spec)
        name: str = descriptor["name"]
        body = b'{"index":' + dumps(descriptor, f"index {name!r} on {collection!r}") + b"}"
        descriptor = loads(body)["index"]  # our own copy, as it will be read back
        state = self._state

        def validate() -> bool:
            # In the commit cycle, so a document another process just inserted is seen.
            coll = state.collections.get(collection)
            if coll is None:
                return True
            existing = coll.indexes.get(name)
            if existing is not None:
                if existing.descriptor == descriptor:
                    return False
                raise ValueError(
                    f"collection {collection!r} already has an index named {name!r} "
                    f"with another definition: {existing.descriptor}"
                )
            if descriptor["unique"]:
                probe = Index(descriptor)
                for doc_id, doc in coll.docs.items():
                    keys = probe.keys_of(doc)
                    for key in keys:
                        if key in probe.entries:
                            raise DuplicateKey(collection, name, probe.describe_value(key))
                    probe.add(doc_id, keys)
            return True

        def apply(eid: int, ts: int) -> None:
            state.collection(collection).add_index(descriptor)

        await self._stream.submit(
            "db.index.created", "db", collection, name, body, apply, validate=validate
        )
        return name

    async def drop_index(self, collection: str, name: str) -> bool:
        """Drop the index ``name``; False (and nothing written) when there is no such index."""
        check_collection(collection)
        if not isinstance(name, str) or not name:
            raise ValueError(f"index name must be a non-empty string, not {name!r}")
        if name == "_id_":
            raise ValueError(f"the _id_ index of collection {collection!r} cannot be dropped")
        if self._rows is not None:
            return await self._rows.drop_index(collection, name)
        state = self._state

        def validate() -> bool:
            coll = state.collections.get(collection)
            return coll is not None and name in coll.indexes

        def apply(eid: int, ts: int) -> bool:
            state.collection(collection).indexes.pop(name, None)
            return True

        dropped = await self._stream.submit(
            "db.index.dropped", "db", collection, name, b"{}", apply, validate=validate
        )
        return dropped is True

    # ---------------------------------------------------------------------------- writes

    def _prepare_doc(self, collection: str, document: Mapping[str, Any]) -> Doc:
        if not isinstance(document, Mapping):
            raise ValueError(
                f"a document for collection {collection!r} must be an object, not {document!r}"
            )
        doc: Doc = dict(document)
        alias = doc.pop("id", None)
        if "_id" not in doc:
            doc["_id"] = alias if alias is not None else new_id()
        elif alias is not None and alias != doc["_id"]:
            raise ValueError(f"document has both _id {doc['_id']!r} and a different id {alias!r}")
        if not isinstance(doc["_id"], str) or not doc["_id"]:
            raise ValueError(f"document _id must be a non-empty string, not {doc['_id']!r}")
        # A fresh copy: the caller's later mutations cannot reach the store.
        copy: Doc = loads(dumps(doc, f"document {doc['_id']!r} in collection {collection!r}"))
        return copy

    def _write(
        self, collection: str, plan: Callable[[Collection], list[tuple[str | None, Doc | None]]]
    ) -> Awaitable[Any]:
        """Append the events of ``plan(collection)``, computed in the commit cycle, as one write.

        ``plan`` returns ``(old _id or None, new document or None)`` pairs: an insert, an update
        (same ``_id``) or a delete.
        """
        state = self._state
        planned: list[tuple[str | None, Doc | None]] = []

        def events() -> list[EventSpec]:
            coll = state.collection(collection)
            changes = plan(coll)
            coll.check_unique(changes)
            planned[:] = changes
            out: list[EventSpec] = []
            for old_id, new in changes:
                before = coll.docs.get(old_id) if old_id is not None else None
                if new is None:
                    assert before is not None
                    assert old_id is not None
                    data = b'{"doc":null,"before":' + orjson.dumps(before) + b"}"
                    out.append(("db.document.deleted", "db", collection, old_id, data))
                elif before is None:
                    data = b'{"doc":' + orjson.dumps(new) + b',"before":null}'
                    out.append(("db.document.created", "db", collection, new["_id"], data))
                else:
                    data = (
                        b'{"doc":' + orjson.dumps(new) + b',"before":' + orjson.dumps(before) + b"}"
                    )
                    out.append(("db.document.updated", "db", collection, new["_id"], data))
            return out

        def apply(ids: list[int]) -> None:
            coll = state.collection(collection)
            for old_id, new in planned:
                if new is None:
                    assert old_id is not None
                    coll.remove(old_id)
                else:
                    coll.put(new)

        return self._stream.submit_batch(events, apply)

    async def insert_one(self, collection: str, document: Mapping[str, Any]) -> str:
        """Insert a document; returns its ``_id``."""
        check_collection(collection)
        doc = self._prepare_doc(collection, document)
        if self._rows is not None:
            await self._rows.insert(collection, [doc], given=_names_id(document))
            return str(doc["_id"])
        await self._write(collection, lambda coll: [(None, doc)])
        return str(doc["_id"])

    async def insert_many(
        self, collection: str, documents: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        """Insert several documents, all or none; returns their ids."""
        check_collection(collection)
        if not isinstance(documents, list | tuple):
            raise ValueError(f"insert_many needs a list of documents, not {documents!r}")
        docs = [self._prepare_doc(collection, document) for document in documents]
        if docs and self._rows is not None:
            given = any(_names_id(document) for document in documents)
            await self._rows.insert(collection, docs, given=given)
        elif docs:
            await self._write(collection, lambda coll: [(None, doc) for doc in docs])
        return [str(doc["_id"]) for doc in docs]

    async def _update(
        self,
        collection: str,
        filter: Mapping[str, Any] | None,
        update: Mapping[str, Any],
        many: bool,
    ) -> dict[str, int]:
        check_collection(collection)
        if not isinstance(update, Mapping):
            raise ValueError(f"an update must be an object, not {update!r}")
        updater = compile_update(update)  # validates operators before the cycle
        normalized = normalize_filter(filter)
        compile_filter(normalized)
        counts = {"matched": 0, "modified": 0}
        if self._rows is not None:

            def change(doc: Doc) -> Doc | None:
                new, modified = updater({**doc, "id": doc["_id"]})
                del new["id"]
                if not modified:
                    return doc
                dumps(new, f"updated document {doc['_id']!r} in collection {collection!r}")
                return new

            matched, modified = await self._rows.change(collection, normalized, many, change)
            return {"matched": matched, "modified": modified}

        def plan(coll: Collection) -> list[tuple[str | None, Doc | None]]:
            matched = self._select(coll, normalized)
            if not many:
                matched = matched[:1]
            counts["matched"] = len(matched)
            changes: list[tuple[str | None, Doc | None]] = []
            for doc in matched:
                # Updated as the caller sees it (``id`` beside ``_id``), so an update that
                # repeats the document's own ``id``, like a document read back, is allowed.
                new, modified = updater({**doc, "id": doc["_id"]})
                del new["id"]
                if modified:
                    dumps(new, f"updated document {doc['_id']!r} in collection {collection!r}")
                    changes.append((doc["_id"], new))
            counts["modified"] = len(changes)
            return changes

        await self._write(collection, plan)
        return dict(counts)

    async def update_one(
        self, collection: str, filter: Mapping[str, Any] | None, update: Mapping[str, Any]
    ) -> dict[str, int]:
        """Update the first matching document: ``{"matched", "modified"}``."""
        return await self._update(collection, filter, update, many=False)

    async def update_many(
        self, collection: str, filter: Mapping[str, Any] | None, update: Mapping[str, Any]
    ) -> dict[str, int]:
        """Update every matching document: ``{"matched", "modified"}``."""
        return await self._update(collection, filter, update, many=True)

    async def _delete(
        self, collection: str, filter: Mapping[str, Any] | None, many: bool
    ) -> dict[str, int]:
        check_collection(collection)
        normalized = normalize_filter(filter)
        compile_filter(normalized)
        counts = {"deleted": 0}
        if self._rows is not None:
            matched, _ = await self._rows.change(collection, normalized, many, lambda doc: None)
            return {"deleted": matched}

        def plan(coll: Collection) -> list[tuple[str | None, Doc | None]]:
            matched = self._select(coll, normalized)
            if not many:
                matched = matched[:1]
            counts["deleted"] = len(matched)
            return [(doc["_id"], None) for doc in matched]

        await self._write(collection, plan)
        return dict(counts)

    async def delete_one(self, collection: str, filter: Mapping[str, Any] | None) -> dict[str, int]:
        """Delete the first matching document: ``{"deleted"}``."""
        return await self._delete(collection, filter, many=False)

    async def delete_many(
        self, collection: str, filter: Mapping[str, Any] | None
    ) -> dict[str, int]:
        """Delete every matching document: ``{"deleted"}``."""
        return await self._delete(collection, filter, many=True)
