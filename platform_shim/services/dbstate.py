"""The document database's in-memory fold: collections of documents and their indexes.

Invariants: a collection keeps each document by ``_id`` in insertion order (``rank``), and
every secondary index holds exactly the keys its documents file under (``dbindex.Index``), so
``check_unique`` decides a clash from the indexes alone; a document is never changed in place
(an update stores a new dict), so references copied for a snapshot stay as they were. The
fold is built from the ``db`` snapshot and the ``db.*`` stream events after it; a damaged
snapshot record costs itself, not the load.

On a store that keeps the documents in rows and enforces their rules itself
(``Store.documents()``: PostgreSQL, ``store/postgres/docrules.py``) the fold keeps nothing: no
collection, document or index, and its snapshot is empty (the rows are the truth).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import orjson

from platform_shim.errors import DuplicateKey
from platform_shim.services.dbindex import Index, IndexKey
from platform_shim.store.protocol import DocumentTable, Record

__all__ = ["Collection", "DbState", "Doc"]

Doc = dict[str, Any]

log = logging.getLogger("platform_shim.store")


class Collection:
    """Documents by ``_id`` (insertion order) and their secondary indexes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.docs: dict[str, Doc] = {}
        self.indexes: dict[str, Index] = {}
        # Insertion rank of each document, so index lookups return scan order.
        self.rank: dict[str, int] = {}
        self._next_rank = 0

    def put(self, doc: Doc) -> None:
        doc_id = doc["_id"]
        old = self.docs.get(doc_id)
        for index in self.indexes.values():
            if old is not None:
                index.discard(doc_id, index.keys_of(old))
            index.add(doc_id, index.keys_of(doc))
        self.docs[doc_id] = doc
        if old is None:
            self.rank[doc_id] = self._next_rank
            self._next_rank += 1

    def remove(self, doc_id: str) -> None:
        old = self.docs.pop(doc_id, None)
        if old is not None:
            del self.rank[doc_id]
            for index in self.indexes.values():
                index.discard(doc_id, index.keys_of(old))

    def add_index(self, descriptor: dict[str, Any]) -> Index:
        index = Index(descriptor)
        for doc_id, doc in self.docs.items():
            index.add(doc_id, index.keys_of(doc))
        self.indexes[index.name] = index
        return index

    def check_unique(self, changes: Sequence[tuple[str | None, Doc | None]]) -> None:
        """Raise ``DuplicateKey`` if applying ``changes`` ((old id, new doc) pairs) would clash."""
        leaving = {old_id for old_id, _ in changes if old_id is not None}
        new_ids: set[str] = set()
        for old_id, doc in changes:
            if doc is None:
                continue
            doc_id = doc["_id"]
            if doc_id in new_ids or (
                doc_id in self.docs and doc_id not in leaving and doc_id != old_id
            ):
                raise DuplicateKey(self.name, "_id_", doc_id)
            new_ids.add(doc_id)
        for index in self.indexes.values():
            if not index.unique:
                continue
            claimed: dict[IndexKey, str] = {}
            for _, doc in changes:
                if doc is None:
                    continue
                for key in index.keys_of(doc):
                    holders = index.entries.get(key, set()) - leaving
                    if holders or key in claimed:
                        raise DuplicateKey(self.name, index.name, index.describe_value(key))
                    claimed[key] = doc["_id"]


class DbState:
    """All collections, as a fold of ``db.*`` events."""

    snapshot_name = "db"
    resource = "db"

    def __init__(self, table: DocumentTable | None = None) -> None:
        self.table = table  # not None: the store keeps the documents, this fold keeps none
        self.checkpoint = 0
        self.collections: dict[str, Collection] = {}

    def collection(self, name: str) -> Collection:
        coll = self.collections.get(name)
        if coll is None:
            coll = self.collections[name] = Collection(name)
        return coll

    def load_snapshot(self, records: Iterable[Record]) -> None:
        self.collections.clear()
        if self.table is not None:
            return  # the store's rows hold the documents (and this store's snapshot is empty)
        for record in records:
            name, index, doc = record.get("c"), record.get("index"), record.get("doc")
            if not isinstance(name, str) or not isinstance(index or doc, dict):
                # A damaged line that parses: it costs itself, not the load.
                log.warning("db.jsonl: skipped a snapshot record that is not a document or index")
                continue
            try:
                if isinstance(index, dict):
                    self.collection(name).add_index(index)
                elif isinstance(doc, dict):
                    self.collection(name).put(doc)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("db.jsonl: skipped a damaged snapshot record (%r)", exc)

    def apply_event(self, event: Record) -> None:
        t = event["t"]
        if not t.startswith("db.") or self.table is not None:
            return  # every stream event reaches every fold; only ours may name a collection
        coll = self.collection(event["ns"])
        data = event["data"]
        if t in ("db.document.created", "db.document.updated"):
            coll.put(data["doc"])
        elif t == "db.document.deleted":
            coll.remove(event["k"])
        elif t == "db.index.created":
            coll.add_index(data["index"])
        elif t == "db.index.dropped":
            coll.indexes.pop(event["k"], None)

    def snapshot_records(self) -> Iterator[bytes]:
        # Copied now, on the loop; serialized as read, off the loop. Documents are never changed
        # in place (an update stores a new dict), so the copied references stay as they were.
        if self.table is not None:
            return iter(())
        return _snapshot_lines(
            [
                (name, [index.descriptor for index in coll.indexes.values()], dict(coll.docs))
                for name, coll in self.collections.items()
            ]
        )


def _snapshot_lines(
    collections: list[tuple[str, list[dict[str, Any]], dict[str, Doc]]],
) -> Iterator[bytes]:
    for name, descriptors, docs in collections:
        for descriptor in descriptors:
            yield orjson.dumps({"c": name, "index": descriptor})
        for doc in docs.values():
            yield orjson.dumps({"c": name, "doc": doc})
