"""Tests on a single value a query path reached, specialised by the operand's kind.

What this module guarantees: each function here validates nothing (the caller already checked
that operands are JSON) and returns a closure that never raises and never mutates its argument.
A value test takes one value a path reached, which may be ``MISSING`` (nothing there) or a list
(then Mongo's array rules apply: the whole list or any element may satisfy the operator). The
exact-type branches are shortcuts: for JSON input each agrees with the generic branch behind it,
which the property tests of the query module check against a reference interpreter.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any, Final

from platform_shim.services.compare import (
    BOOL,
    NAN,
    NOT_JSON,
    NULL,
    NUMBER,
    SCALAR_KINDS,
    STRING,
    kind_of,
    sort_key,
    type_bracket,
    values_equal,
)
from platform_shim.services.paths import MISSING

__all__ = [
    "RANGE_OPS",
    "ValueTest",
    "eq_test",
    "in_test",
    "is_present",
    "range_test",
    "simple_predicate",
]

ValueTest = Callable[[Any], bool]
"""A test on one value reached by a path (possibly ``MISSING``, possibly a list)."""

_DocTest = Callable[[Mapping[str, Any]], bool]

RANGE_OPS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "$gt": operator.gt,
    "$gte": operator.ge,
    "$lt": operator.lt,
    "$lte": operator.le,
}


def _never(value: Any) -> bool:
    return False


def is_present(value: Any) -> bool:
    """The ``$exists`` test: whether the path reached anything (a null value is something)."""
    return value is not MISSING


def _generic_eq(target: Any) -> ValueTest:
    def test(value: Any) -> bool:
        if values_equal(value, target):
            return True
        return isinstance(value, list) and any(values_equal(item, target) for item in value)

    return test


def eq_test(target: Any) -> ValueTest:
    """Leaf test for ``$eq target``; the exact-type branches are shortcuts of ``_generic_eq``."""
    kind = kind_of(target)
    if kind == NULL:

        def test(value: Any) -> bool:
            return value is None or value is MISSING or (isinstance(value, list) and None in value)

    elif kind == STRING:

        def test(value: Any) -> bool:
            # Only a string equals a string, so Python's == is already JSON equality here.
            return value == target or (isinstance(value, list) and target in value)

    elif kind == NUMBER:

        def test(value: Any) -> bool:
            if value == target:
                return type(value) is not bool
            return (
                isinstance(value, list)
                and target in value
                and any(item == target and type(item) is not bool for item in value)
            )

    elif kind == BOOL:

        def test(value: Any) -> bool:
            return value is target or (
                isinstance(value, list) and any(item is target for item in value)
            )

    else:
        return _generic_eq(target)
    return test


def _in_parts(targets: list[Any]) -> tuple[frozenset[Any], frozenset[Any], ValueTest]:
    """The string targets, the number targets, and a complete leaf test for ``$in targets``."""
    # Bucket the targets by kind so a lookup can never match True against 1 in a Python set.
    strings: set[Any] = set()
    numbers: set[Any] = set()
    bools: set[bool] = set()
    others: list[Any] = []
    has_null = has_nan = False
    for target in targets:
        kind = kind_of(target)
        if kind == STRING:
            strings.add(target)
        elif kind == NUMBER:
            numbers.add(target)
        elif kind == BOOL:
            bools.add(target)
        elif kind == NULL:
            has_null = True
        elif kind == NAN:
            has_nan = True
        else:
            others.append(target)
    frozen_strings = frozenset(strings)
    frozen_numbers = frozenset(numbers)

    def scalar(value: Any) -> bool:
        vtype = type(value)
        if vtype is str:
            return value in frozen_strings
        if vtype is int:
            return value in frozen_numbers
        if vtype is float:
            return value in frozen_numbers or (has_nan and value != value)
        if vtype is bool:
            return value in bools
        if value is None:
            return has_null
        kind = kind_of(value)
        if kind == NOT_JSON:
            return False
        if kind in SCALAR_KINDS:
            # A subclass of a JSON scalar type: fall back to exact JSON equality.
            return any(values_equal(value, target) for target in targets)
        return any(values_equal(value, other) for other in others)

    def test(value: Any) -> bool:
        if value is MISSING:
            return has_null
        if scalar(value):
            return True
        return isinstance(value, list) and any(map(scalar, value))

    return frozen_strings, frozen_numbers, test


def in_test(targets: list[Any]) -> ValueTest:
    """Leaf test for ``$in targets``: equal to any target (an empty list matches nothing)."""
    if len(targets) == 1:
        return eq_test(targets[0])
    strings, numbers, complete = _in_parts(targets)

    def test(value: Any) -> bool:
        vtype = type(value)
        if vtype is str:
            return value in strings
        if vtype is int:
            return value in numbers
        return complete(value)

    return test


def _generic_range(op: str, target: Any) -> ValueTest:
    compare = RANGE_OPS[op]
    bracket = type_bracket(target)
    target_key = sort_key(target)

    def scalar(value: Any) -> bool:
        if value is MISSING:
            value = None
        if type_bracket(value) != bracket:
            return False
        try:
            return compare(sort_key(value), target_key)
        except TypeError:  # a non-JSON value buried inside an object or array
            return False

    def test(value: Any) -> bool:
        if scalar(value):
            return True
        return isinstance(value, list) and any(map(scalar, value))

    return test


def range_test(op: str, target: Any) -> ValueTest:
    """Leaf test for an ordering operator; the exact-type branches shortcut ``_generic_range``."""
    kind = kind_of(target)
    compare = RANGE_OPS[op]
    generic = _generic_range(op, target)
    if kind == NULL:
        # Only null (or missing) is in null's bracket, and it equals null.
        return eq_test(None) if op in ("$gte", "$lte") else _never
    if kind == NUMBER:

        def test(value: Any) -> bool:
            vtype = type(value)
            if vtype is int or (vtype is float and value == value):
                return compare(value, target)
            return generic(value)

    elif kind == STRING:

        def test(value: Any) -> bool:
            if type(value) is str:
                return compare(value, target)
            return generic(value)

    elif kind == BOOL:

        def test(value: Any) -> bool:
            if type(value) is bool:
                return compare(value, target)
            return generic(value)

    else:
        return generic
    return test


def _simple_eq(key: str, target: Any) -> _DocTest | None:
    """A one-lookup predicate for ``{key: scalar}``, the most common filter shape."""
    kind = kind_of(target)
    if kind == STRING:

        def pred(doc: Mapping[str, Any]) -> bool:
            value = doc.get(key, MISSING)
            return value == target or (isinstance(value, list) and target in value)

        return pred
    if kind == NUMBER:
        list_test = eq_test(target)

        def pred(doc: Mapping[str, Any]) -> bool:
            value = doc.get(key, MISSING)
            if value == target:
                return type(value) is not bool
            return isinstance(value, list) and list_test(value)

        return pred
    if kind in (BOOL, NULL):
        test = eq_test(target)

        def pred(doc: Mapping[str, Any]) -> bool:
            return test(doc.get(key, MISSING))

        return pred
    return None


def simple_predicate(key: str, op: str, operand: Any) -> _DocTest | None:
    """A one-lookup document predicate for ``{key: {op: operand}}`` on a top-level ``key``.

    Covers the common shapes (``$eq`` a scalar, ``$in`` several values, an ordering operator on a
    number or string); returns ``None`` for anything else, which the caller compiles generically.
    """
    if op == "$eq":
        return _simple_eq(key, operand)
    if op == "$in" and len(operand) > 1:
        strings, numbers, complete = _in_parts(operand)

        def pred(doc: Mapping[str, Any]) -> bool:
            value = doc.get(key, MISSING)
            vtype = type(value)
            if vtype is str:
                return value in strings
            if vtype is int:
                return value in numbers
            return complete(value)

        return pred
    if op not in RANGE_OPS:
        return None
    kind = kind_of(operand)
    compare = RANGE_OPS[op]
    generic = _generic_range(op, operand)
    if kind == NUMBER:

        def pred(doc: Mapping[str, Any]) -> bool:
            value = doc.get(key, MISSING)
            vtype = type(value)
            if vtype is int or (vtype is float and value == value):
                return compare(value, operand)
            return generic(value)

        return pred
    if kind == STRING:

        def pred(doc: Mapping[str, Any]) -> bool:
            value = doc.get(key, MISSING)
            if type(value) is str:
                return compare(value, operand)
            return generic(value)

        return pred
    return None
