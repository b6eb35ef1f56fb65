"""The shapes the database service takes and gives: collection names, filters where ``id``
stands for ``_id``, and the caller's own copies of documents (``id`` beside ``_id``).

Invariant: nothing here touches stored state; each function is a pure function of its input
(a copy is always a new object the store never sees again).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from platform_shim.jsonvalue import loads
from platform_shim.services.query import apply_projection, sort_documents

__all__ = ["check_collection", "normalize_filter", "page", "public", "with_id"]

Doc = dict[str, Any]


def check_collection(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > 256:
        raise ValueError(
            f"collection name must be a non-empty string of at most 256 characters, not {name!r}"
        )
    return name


def normalize_filter(filter: Mapping[str, Any] | None) -> dict[str, Any]:
    """Let ``id`` stand for ``_id`` at the top level (and inside ``$and``/``$or``)."""
    if filter is None:
        return {}
    if not isinstance(filter, Mapping):
        raise ValueError(f"a filter must be an object, not {filter!r}")
    out: dict[str, Any] = {}
    extra: list[dict[str, Any]] = []
    for key, value in filter.items():
        if key in ("$and", "$or") and isinstance(value, list):
            value = [
                normalize_filter(item) if isinstance(item, Mapping) else item for item in value
            ]
        if key == "id":
            if "_id" in filter:
                extra.append({"_id": value})
                continue
            key = "_id"
        out[key] = value
    if extra:
        out = {"$and": [out, *extra]}
    return out


def public(doc: Doc, projection: Mapping[str, Any] | None = None) -> Doc:
    """A caller's own copy, in the platform's shape (``id`` beside ``_id``)."""
    copy: Doc = loads(orjson.dumps(doc))
    if projection:
        copy = apply_projection(copy, projection)
    if "_id" in copy:
        copy["id"] = copy["_id"]
    return copy


def page(
    docs: list[Doc],
    sort: Mapping[str, int] | Sequence[tuple[str, int]] | None,
    skip: int | None,
    limit: int | None,
) -> list[Doc]:
    """``docs`` (the matches, in insertion order) sorted, skipped and limited as ``find`` says."""
    if sort:
        docs = sort_documents(docs, sort)
    if skip:
        docs = docs[skip:]
    if limit:
        docs = docs[:limit]
    return docs


def with_id(doc: Doc) -> Doc:
    if "_id" in doc:
        doc["id"] = doc["_id"]
    return doc
