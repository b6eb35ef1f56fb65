"""The document query language compiled to SQL over ``platform.documents`` (alias ``d``).

Invariant: for a filter ``compile_filter`` (``services/query.py``) accepted, ``compile_where``
returns a boolean SQL expression that is true for exactly the rows whose ``doc`` the Python
predicate matches, and ``compile_order`` an ORDER BY that sorts exactly as ``sort_documents``
(ties by ``rank``, the insertion order, as Python's stable sort keeps them). Every expression is
never NULL (a missing field is SQL NULL; each test says what it does with one), so ``NOT`` is
exact. What cannot be said exactly in SQL raises ``NotCompilable`` and the caller evaluates in
Python: an operand or field name ``jsonb``/SQL text cannot carry (a NaN or infinite float, a
``\\x00`` character).

How each piece mirrors the Python rules (``services/matchers.py``):

* A top-level field is the leaf ``d.doc -> 'name'`` (a literal key, so an expression index on
  it applies); a dotted path's leaves come from ``platform.jleaves`` and a test holds when it
  holds for some leaf (``$ne``, ``$nin``, ``$exists: false`` and ``$not``: for none).
* ``$eq`` a scalar: ``leaf @> scalar``, which in ``jsonb`` is "equal, or an array holding an
  equal element" (numbers by value, ``true`` never ``1``) and is what a GIN index answers.
  ``$eq`` null: missing, null, or an array holding null. An object or array: ``jsonb`` equality
  (key order aside, numbers by value), of the leaf or of an element.
* Ordering operators compare within the operand's type bracket only: numbers as ``numeric``,
  strings byte-wise in UTF-8 (``COLLATE "C"``: code point order), booleans as ``jsonb``, objects
  and arrays by ``platform.jkey``; a missing leaf counts as null.

This module imports nothing from the services (the store never does); it takes the filter the
service normalized (``id`` mapped to ``_id``) and validated.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

__all__ = [
    "InlineParams",
    "NotCompilable",
    "Params",
    "compile_order",
    "compile_where",
    "literal",
]

_RANGE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


class NotCompilable(Exception):
    """The filter or sort holds something SQL cannot say exactly; evaluate it in Python."""


class Params:
    """Positional parameters of one statement (``$1`` is the collection)."""

    def __init__(self, first: Any) -> None:
        self.values: list[Any] = [first]
        # Inside a NOT, a test must never be NULL (NOT NULL is NULL, not true); outside one,
        # in WHERE, AND and OR, NULL acts as false, so a test may stay the bare, indexable
        # ``leaf @> value`` (which is NULL for a missing leaf).
        self.negated = 0

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"

    def json(self, value: Any) -> str:
        _check_value(value)
        return self.add(orjson.dumps(value).decode()) + "::jsonb"


class InlineParams(Params):
    """Parameters written into the SQL as literals: for an expression stored to be evaluated
    later (a partial index's filter, ``docrules.py``), which has no parameters to bind."""

    def __init__(self) -> None:
        super().__init__(None)

    def add(self, value: Any) -> str:
        if isinstance(value, str):
            return literal(value)
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return "ARRAY[" + ",".join(literal(item) for item in value) + "]::text[]"
        raise NotCompilable(f"no literal for {value!r}")


def _check_value(value: Any) -> None:
    """Raise ``NotCompilable`` for what ``jsonb`` cannot hold exactly."""
    if isinstance(value, float) and not math.isfinite(value):
        raise NotCompilable("a NaN or infinite number")
    if isinstance(value, str) and "\x00" in value:
        raise NotCompilable("a \\x00 character")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_value(key)
            _check_value(item)
    elif isinstance(value, list):
        for item in value:
            _check_value(item)


def literal(text: str) -> str:
    """``text`` as an SQL string literal (a literal, not a parameter, where an index's
    expression or predicate must match it)."""
    _check_value(text)
    return "'" + text.replace("'", "''") + "'"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    return "array"


def _is_operators(value: Any) -> bool:
    return isinstance(value, Mapping) and bool(value) and all(k.startswith("$") for k in value)


# ------------------------------------------------------------------------------ leaf tests
# Each takes ``v``, an SQL expression of one leaf (jsonb, NULL when missing).


def _eq(v: str, target: Any, params: Params) -> str:
    kind = _kind(target)
    if kind == "null":
        return f"({v} IS NULL OR {v} @> 'null'::jsonb)"
    t = params.json(target)
    if kind in ("object", "array"):
        return (
            f"coalesce({v} = {t} OR CASE WHEN jsonb_typeof({v}) = 'array' THEN EXISTS"
            f" (SELECT 1 FROM jsonb_array_elements({v}) AS x WHERE x = {t}) ELSE false END,"
            " false)"
        )
    return f"coalesce({v} @> {t}, false)" if params.negated else f"{v} @> {t}"


def _in(v: str, targets: list[Any], params: Params) -> str:
    if not targets:
        return "false"
    if len(targets) == 1:
        return _eq(v, targets[0], params)
    return "(" + " OR ".join(_eq(v, target, params) for target in targets) + ")"


def _scalar_range(x: str, op: str, target: Any, params: Params) -> str:
    """``x`` (one value, never a list's elements) in ``target``'s bracket and ``op`` it."""
    sign = _RANGE[op]
    kind = _kind(target)
    if kind == "number":
        _check_value(target)
        return (
            f"CASE WHEN jsonb_typeof({x}) = 'number'"
            f" THEN ({x})::numeric {sign} {params.add(str(target))}::numeric ELSE false END"
        )
    if kind == "string":
        t = params.add(target)
        return (
            f"CASE WHEN jsonb_typeof({x}) = 'string'"
            f" THEN ({x} #>> '{{}}') COLLATE \"C\" {sign} {t}::text ELSE false END"
        )
    if kind == "boolean":
        return (
            f"coalesce(jsonb_typeof({x}) = 'boolean' AND {x} {sign} {params.json(target)}, false)"
        )
    t = params.json(target)
    return (
        f"CASE WHEN jsonb_typeof({x}) = '{kind}'"
        f" THEN platform.jkey({x}) {sign} platform.jkey({t}) ELSE false END"
    )


def _range(v: str, op: str, target: Any, params: Params) -> str:
    if target is None:
        return _eq(v, None, params) if op in ("$gte", "$lte") else "false"
    whole = _scalar_range(v, op, target, params)
    element = _scalar_range("x", op, target, params)
    return (
        f"({whole} OR CASE WHEN jsonb_typeof({v}) = 'array' THEN EXISTS"
        f" (SELECT 1 FROM jsonb_array_elements({v}) AS x WHERE {element}) ELSE false END)"
    )


# --------------------------------------------------------------------------- expressions


class _Field:
    """How to test one path: a single leaf, or some/none of a dotted path's leaves."""

    def __init__(self, path: str, params: Params) -> None:
        segments = path.split(".")
        for segment in segments:
            _check_value(segment)
        self.top = literal(segments[0]) if len(segments) == 1 else None
        self.path = params.add(segments) + "::text[]" if len(segments) > 1 else ""

    def some(self, test: Callable[[str], str]) -> str:
        """True when ``test(leaf)`` (SQL of a leaf -> SQL) holds for some leaf. Tests never
        nest, so one alias serves every EXISTS."""
        if self.top is not None:
            return test(f"d.doc -> {self.top}")
        return (
            f"EXISTS (SELECT 1 FROM platform.jleaves(d.doc, {self.path}) AS l(v)"
            f" WHERE {test('l.v')})"
        )


def _expression(field: _Field, expression: Mapping[str, Any], params: Params) -> str:
    parts: list[str] = []
    for op, operand in expression.items():
        negate = op in ("$not", "$ne", "$nin") or (op == "$exists" and not operand)
        params.negated += negate
        try:
            if op == "$not":
                part = _expression(field, operand, params)
            elif op == "$exists":
                part = field.some(_present)
            elif op in ("$in", "$nin", "$eq", "$ne"):
                targets = operand if op in ("$in", "$nin") else [operand]
                part = field.some(functools.partial(_in, targets=targets, params=params))
            elif op in _RANGE:
                part = field.some(functools.partial(_range, op=op, target=operand, params=params))
            else:
                raise NotCompilable(f"operator {op!r}")
        finally:
            params.negated -= negate
        parts.append(f"NOT {part}" if negate else part)
    return "(" + " AND ".join(parts) + ")"


def _present(v: str) -> str:
    return f"{v} IS NOT NULL"


def _where(filter: Mapping[str, Any], params: Params) -> str:
    parts: list[str] = []
    for key, condition in filter.items():
        if key in ("$and", "$or"):
            subs = [_where(sub, params) for sub in condition]
            parts.append("(" + (" AND " if key == "$and" else " OR ").join(subs) + ")")
        elif key.startswith("$"):
            raise NotCompilable(f"operator {key!r}")
        else:
            field = _Field(key, params)
            if key == "_id":
                parts.extend(_by_id(condition, params))
            if _is_operators(condition):
                parts.append(_expression(field, condition, params))
            else:
                parts.append(field.some(functools.partial(_eq, target=condition, params=params)))
    return "(" + " AND ".join(parts) + ")" if parts else "true"


def _by_id(condition: Any, params: Params) -> list[str]:
    """``d.id`` (the primary key's column) for an ``_id`` equality: redundant with the jsonb
    test beside it (a stored ``_id`` is always a string, and is ``id``), but the primary key
    answers it."""
    if _is_operators(condition):
        wanted = condition.get("$eq", condition.get("$in"))
        wanted = [wanted] if isinstance(wanted, str) else wanted
    else:
        wanted = [condition]
    if isinstance(wanted, list) and wanted and all(isinstance(w, str) for w in wanted):
        for item in wanted:
            _check_value(item)
        return [f"d.id = ANY({params.add(wanted)}::text[])"]
    return []


def compile_where(filter: Mapping[str, Any], params: Params) -> str:
    """The SQL condition of a validated, normalized filter (parameters added to ``params``)."""
    return _where(filter, params)


def compile_order(sort: Sequence[tuple[str, int]], params: Params) -> str:
    """ORDER BY terms for validated ``(path, 1 | -1)`` pairs, ties in insertion order."""
    terms: list[str] = []
    for path, direction in sort:
        segments = path.split(".")
        for segment in segments:
            _check_value(segment)
        descending = direction == -1
        flag = "true" if descending else "false"
        if len(segments) == 1:
            key = f"platform.jleafkey(d.doc -> {literal(path)}, {flag})"
        else:
            key = f"platform.jsortkey(d.doc, {params.add(segments)}::text[], {flag})"
        terms.append(key + (" DESC" if descending else ""))
    terms.append("d.rank")
    return ", ".join(terms)
