"""Sorting and projecting JSON documents the way MongoDB's ``sort`` and ``projection`` do.

What this module guarantees:

* ``sort_documents`` returns a new list and is stable: documents that tie on every sort field
  keep their input order. Fields compare with :func:`platform_shim.services.compare.compare_values`
  (null < numbers < strings < objects < arrays < booleans). A missing field sorts as null. A list
  value sorts by its smallest element when ascending and its largest when descending; an empty
  list sorts as null. Dotted paths follow :mod:`platform_shim.services.paths`, so a path through
  a list of objects collects every value it reaches and the smallest (largest) one counts.
* ``apply_projection`` and ``compile_projection`` never mutate the document. The result is a new
  top-level dict (and new dicts/lists along projected dotted paths), but values that are kept
  whole are shared with the input, not copied.
* Projection follows Mongo: inclusion keeps only the listed paths plus ``_id`` (unless
  ``"_id": 0``); exclusion drops the listed paths; mixing the two (other than ``_id``) or listing
  a path together with its prefix is a ``ValueError``. A dotted projection path descends into
  objects and applies to every element of a list (a numeric segment is a key here, not an index);
  inclusion drops list elements that are not objects or lists. Output keeps the document's key
  order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from platform_shim.services.compare import sort_key
from platform_shim.services.paths import MISSING, Steps, parse_path, resolve

__all__ = ["apply_projection", "compile_projection", "sort_documents"]

_NULL_KEY: Final = sort_key(None)


def _parse_sort(sort: Mapping[str, int] | Sequence[tuple[str, int]]) -> list[tuple[Steps, bool]]:
    pairs: Sequence[Any] = list(sort.items()) if isinstance(sort, Mapping) else sort
    if isinstance(pairs, str | bytes):
        raise ValueError(f"a sort must be an object or a list of (field, direction), got {sort!r}")
    parsed: list[tuple[Steps, bool]] = []
    for pair in pairs:
        if not isinstance(pair, tuple | list) or len(pair) != 2:
            raise ValueError(f"a sort entry must be a (field, direction) pair, got {pair!r}")
        path, direction = pair
        steps = parse_path(path)
        if type(direction) is not int or direction not in (1, -1):
            raise ValueError(
                f"sort direction for field {path!r} must be 1 or -1, got {direction!r}"
            )
        parsed.append((steps, direction == -1))
    return parsed


def _field_key(steps: Steps, descending: bool) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    pick = max if descending else min

    def leaf_key(value: Any) -> tuple[Any, ...]:
        if value is MISSING:
            return _NULL_KEY
        if isinstance(value, list):
            return pick([sort_key(item) for item in value]) if value else _NULL_KEY
        return sort_key(value)

    if len(steps) == 1:
        key = steps[0][0]

        def top_level(doc: Mapping[str, Any]) -> tuple[Any, ...]:
            return leaf_key(doc.get(key, MISSING))

        return top_level

    def dotted(doc: Mapping[str, Any]) -> tuple[Any, ...]:
        return pick([leaf_key(value) for value in resolve(doc, steps)])

    return dotted


def sort_documents(
    docs: list[dict[str, Any]], sort: Mapping[str, int] | Sequence[tuple[str, int]]
) -> list[dict[str, Any]]:
    """Return ``docs`` stably sorted by the ``(field, 1 | -1)`` pairs of ``sort``, first pair first.

    ``ValueError`` names a field whose direction is not 1 or -1; ``TypeError`` if a sorted value
    is not JSON.
    """
    fields = _parse_sort(sort)
    result = list(docs)
    # Stable sorts from the last field to the first give the lexicographic order; each pass
    # computes one key per document, which beats a comparison function by a wide margin.
    for steps, descending in reversed(fields):
        result.sort(key=_field_key(steps, descending), reverse=descending)
    return result


# Projection trees map a key to None (take this value whole) or to the subtree below it.
_Tree = dict[str, Any]


def _projection_flag(path: str, value: Any) -> bool:
    if type(value) in (int, bool) and value in (0, 1):
        return bool(value)
    raise ValueError(f"projection value for field {path!r} must be 1, 0, true or false")


def _add_path(tree: _Tree, path: str) -> None:
    steps = parse_path(path)
    node = tree
    for depth, (segment, _) in enumerate(steps):
        last = depth == len(steps) - 1
        if segment in node:
            child = node[segment]
            if child is None or last:
                raise ValueError(f"projection path {path!r} collides with another path")
            node = child
        elif last:
            node[segment] = None
        else:
            node[segment] = node = {}


def compile_projection(
    projection: Mapping[str, Any] | None,
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """Validate ``projection`` once and return a function that projects one document.

    See ``apply_projection`` for the rules.
    """
    if not projection:
        return dict
    if not isinstance(projection, Mapping):
        raise ValueError(f"a projection must be an object, got {type(projection).__name__}")
    keep_id = True
    including: bool | None = None
    tree: _Tree = {}
    for path, value in projection.items():
        flag = _projection_flag(path, value)
        if path == "_id":
            keep_id = flag
            continue
        if including is not None and including != flag:
            raise ValueError(
                f"projection cannot mix inclusion and exclusion (field {path!r} is {int(flag)})"
            )
        including = flag
        _add_path(tree, path)
    if including is None:
        # Only _id was given: {"_id": 1} keeps just _id, {"_id": 0} drops it.
        including = keep_id
        tree["_id"] = None
    elif (including and keep_id and "_id" not in tree) or (not including and not keep_id):
        tree["_id"] = None

    if including:

        def include(doc: Mapping[str, Any]) -> dict[str, Any]:
            return _include_object(doc, tree)

        return include

    def exclude(doc: Mapping[str, Any]) -> dict[str, Any]:
        return _exclude_object(doc, tree)

    return exclude


def _include_object(doc: Mapping[str, Any], tree: _Tree) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        sub = tree.get(key, MISSING)
        if sub is None:
            out[key] = value
        elif sub is not MISSING:
            kept = _include_value(value, sub)
            if kept is not MISSING:
                out[key] = kept
    return out


def _include_value(value: Any, tree: _Tree) -> Any:
    if isinstance(value, dict):
        return _include_object(value, tree)
    if isinstance(value, list):
        kept = [_include_value(item, tree) for item in value]
        return [item for item in kept if item is not MISSING]
    return MISSING


def _exclude_object(doc: Mapping[str, Any], tree: _Tree) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        sub = tree.get(key, MISSING)
        if sub is MISSING:
            out[key] = value
        elif sub is not None:
            out[key] = _exclude_value(value, sub)
    return out


def _exclude_value(value: Any, tree: _Tree) -> Any:
    if isinstance(value, dict):
        return _exclude_object(value, tree)
    if isinstance(value, list):
        return [_exclude_value(item, tree) for item in value]
    return value


def apply_projection(
    doc: Mapping[str, Any], projection: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Return ``doc`` projected: ``None``/``{}`` gives a shallow copy.

    Inclusion (``{"a": 1, "b.c": 1}``) keeps only those paths and ``_id`` (unless ``"_id": 0``);
    exclusion (``{"a": 0}``) drops them. Values may be 1, 0, true or false. ``ValueError`` for
    mixing inclusion and exclusion, for another value, or for a path listed with its prefix.
    Callers projecting many documents should use ``compile_projection`` once.
    """
    return compile_projection(projection)(doc)
