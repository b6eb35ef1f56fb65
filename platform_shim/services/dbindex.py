"""Secondary indexes of the document database: equality lookups in O(1), unique constraints.

An index maps a canonical form of the indexed values to the ids of the documents holding them.
Array values are indexed under each element and under the whole array (a multikey index), so
an equality lookup finds every document a Mongo-style ``{field: value}`` filter can match; the
full filter is still applied to the candidates, so an index only ever narrows, never decides.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson

from platform_shim.services.paths import MISSING, parse_path, resolve
from platform_shim.services.query import compile_filter

__all__ = ["Index", "index_key", "parse_index_spec", "path_values"]

IndexKey = tuple[Any, ...]
_MISSING: tuple[int] = (0,)


def index_key(value: Any) -> tuple[Any, ...]:
    """A hashable, type-aware form of a JSON value (``true`` and ``1`` stay apart; ``1 == 1.0``)."""
    if value is None:
        return _MISSING
    if value is True or value is False:
        return (3, value)
    if isinstance(value, int | float):
        return (1, value)
    if isinstance(value, str):
        return (2, value)
    return (4, orjson.dumps(value, option=orjson.OPT_SORT_KEYS))


def path_values(doc: Mapping[str, Any], path: str) -> list[Any]:
    """Every value at a dotted ``path``, read as queries read it; empty when missing."""
    return [value for value in resolve(doc, parse_path(path)) if value is not MISSING]


def _field_keys(doc: Mapping[str, Any], path: str) -> set[tuple[Any, ...]]:
    # Exactly the values an equality filter on ``path`` compares against (paths.resolve, the
    # query's own reading): a branch that reaches nothing is filed as null, which ``{path: None}``
    # matches, so an index lookup never misses a document the filter would match.
    keys: set[tuple[Any, ...]] = set()
    for value in resolve(doc, parse_path(path)):
        if value is MISSING:
            keys.add(_MISSING)
            continue
        keys.add(index_key(value))
        if isinstance(value, list):
            keys.update(index_key(item) for item in value)
    return keys


def parse_index_spec(collection: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """Validate an index spec and return its descriptor (the wire and snapshot form)."""
    if not isinstance(spec, Mapping):
        raise ValueError(
            f"index spec for collection {collection!r} must be an object, not {spec!r}"
        )
    unknown = set(spec) - {"keys", "unique", "name", "sparse", "partial"}
    if "expireAfterSeconds" in unknown:
        raise ValueError("index option 'expireAfterSeconds' (TTL indexes) is not supported")
    if unknown:
        raise ValueError(f"unknown index option(s) {sorted(unknown)} for collection {collection!r}")
    raw = spec.get("keys")
    pairs: list[tuple[str, int]]
    if isinstance(raw, Mapping):
        pairs = list(raw.items())
    elif isinstance(raw, list):
        pairs = []
        for item in raw:
            if not isinstance(item, list | tuple) or len(item) != 2:
                raise ValueError(f"index keys must be [field, direction] pairs, not {item!r}")
            pairs.append((item[0], item[1]))
    else:
        raise ValueError(f"index 'keys' must be an object or a list of pairs, not {raw!r}")
    if not pairs:
        raise ValueError(f"index on collection {collection!r} needs at least one key")
    for field, direction in pairs:
        if not isinstance(field, str) or not field or field.startswith("$"):
            raise ValueError(f"index key must be a field name, not {field!r}")
        parse_path(field)  # "a..b" would fail later, in every process folding the index
        if direction not in (1, -1) or isinstance(direction, bool):
            raise ValueError(f"index direction for {field!r} must be 1 or -1, not {direction!r}")
    unique = spec.get("unique", False)
    sparse = spec.get("sparse", False)
    for option, value in (("unique", unique), ("sparse", sparse)):
        if not isinstance(value, bool):
            raise ValueError(f"index option {option!r} must be true or false, not {value!r}")
    partial = spec.get("partial")
    if partial is not None:
        if not isinstance(partial, Mapping):
            raise ValueError(f"index option 'partial' must be a filter object, not {partial!r}")
        compile_filter(partial)  # raises ValueError naming a bad operator
    name = spec.get("name") or "_".join(f"{field}_{direction}" for field, direction in pairs)
    if not isinstance(name, str) or name == "_id_":
        raise ValueError(f"invalid index name {name!r}")
    descriptor: dict[str, Any] = {
        "collection": collection,
        "name": name,
        "keys": [[field, direction] for field, direction in pairs],
        "unique": unique,
        "sparse": sparse,
        "kind": "document",
    }
    if partial is not None:
        descriptor["partial"] = dict(partial)
    return descriptor


class Index:
    """One secondary index of a collection."""

    def __init__(self, descriptor: dict[str, Any]) -> None:
        self.descriptor = descriptor
        self.name: str = descriptor["name"]
        self.fields: list[str] = [field for field, _ in descriptor["keys"]]
        self.unique: bool = descriptor["unique"]
        self.sparse: bool = descriptor["sparse"]
        partial = descriptor.get("partial")
        self.partial: Callable[[Mapping[str, Any]], bool] | None = (
            compile_filter(partial) if partial is not None else None
        )
        self.entries: dict[IndexKey, set[str]] = {}

    @property
    def usable_for_lookup(self) -> bool:
        # A partial index leaves out documents a query may still match.
        return self.partial is None

    def keys_of(self, doc: Mapping[str, Any]) -> set[IndexKey]:
        """The keys ``doc`` is filed under (none if the index leaves it out)."""
        if self.partial is not None and not self.partial(doc):
            return set()
        per_field = [_field_keys(doc, field) for field in self.fields]
        if self.sparse and all(keys == {_MISSING} for keys in per_field):
            return set()
        return set(itertools.product(*per_field))

    def add(self, doc_id: str, keys: Iterable[IndexKey]) -> None:
        for key in keys:
            self.entries.setdefault(key, set()).add(doc_id)

    def discard(self, doc_id: str, keys: Iterable[IndexKey]) -> None:
        for key in keys:
            ids = self.entries.get(key)
            if ids is not None:
                ids.discard(doc_id)
                if not ids:
                    del self.entries[key]

    def lookup(self, terms: Mapping[str, Any]) -> set[str] | None:
        """Candidate ids for the equality ``terms``, or None when this index cannot answer."""
        if not self.usable_for_lookup or not all(field in terms for field in self.fields):
            return None
        if self.sparse and any(terms[field] is None for field in self.fields):
            return None
        key = tuple(index_key(terms[field]) for field in self.fields)
        return self.entries.get(key, set())

    def describe_value(self, key: IndexKey) -> Any:
        """A readable form of a key for error messages."""
        parts = [part[1] if len(part) > 1 else None for part in key]
        return parts[0] if len(parts) == 1 else parts
