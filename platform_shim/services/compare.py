"""Type-aware equality and a total order over JSON values.

JSON values here are ``dict`` (str keys), ``list``, ``str``, ``int``, ``float``, ``bool`` and
``None``. This module guarantees:

* ``values_equal`` is JSON equality, not Python equality: ``1`` equals ``1.0``, but ``true``
  never equals ``1`` and ``false`` never equals ``0`` (Python says both are equal); objects are
  equal when they hold the same keys with equal values, whatever the key order; arrays are equal
  element by element. It never raises: a value that is not JSON equals nothing.
* ``compare_values`` is a total order, Mongo-like: null < numbers < strings < objects < arrays <
  booleans (false < true). Numbers compare by value whatever their Python type; strings by code
  point; objects by their items sorted by key (key first, then value); arrays element by element,
  a prefix first. A float NaN is the smallest number and equal to itself, so the order stays total.
* ``sort_key(v)`` is a tuple such that ``sort_key(a) < sort_key(b)`` exactly when ``a`` orders
  first and ``sort_key(a) == sort_key(b)`` exactly when ``values_equal(a, b)``. It is hashable,
  so it also serves as a dictionary key that keeps ``True`` and ``1`` apart (an index on a JSON
  field can key on it). ``compare_values`` and ``sort_key`` raise ``TypeError`` for a value that
  is not JSON, because no place in the order would be honest.
* ``check_json`` raises ``ValueError`` (never ``TypeError``) for anything that is not JSON, so
  callers can validate user-supplied operands once, up front.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = [
    "ARRAY",
    "BOOL",
    "NAN",
    "NOT_JSON",
    "NULL",
    "NUMBER",
    "OBJECT",
    "SCALAR_KINDS",
    "STRING",
    "check_json",
    "compare_values",
    "kind_of",
    "sort_key",
    "type_bracket",
    "values_equal",
]

# Kinds, numbered in sort order. NaN is a kind of its own so that it can sort below every number
# and equal itself, which plain float comparison cannot express.
NOT_JSON: Final = -1
NULL: Final = 0
NAN: Final = 1
NUMBER: Final = 2
STRING: Final = 3
OBJECT: Final = 4
ARRAY: Final = 5
BOOL: Final = 6
SCALAR_KINDS: Final = frozenset({NULL, NAN, NUMBER, STRING, BOOL})

_KIND_OF_TYPE: Final[dict[type, int]] = {
    type(None): NULL,
    int: NUMBER,
    float: NUMBER,
    str: STRING,
    dict: OBJECT,
    list: ARRAY,
    bool: BOOL,
}

_NULL_KEY: Final = (NULL,)
_NAN_KEY: Final = (NAN,)


def _subclass_kind(value: Any) -> int:
    # bool is checked before int because bool is a subclass of int.
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int | float):
        return NUMBER
    if isinstance(value, str):
        return STRING
    if isinstance(value, dict):
        return OBJECT
    if isinstance(value, list):
        return ARRAY
    return NOT_JSON


def kind_of(value: Any) -> int:
    """Return the kind of ``value`` (one of the constants above; ``NOT_JSON`` if it is not JSON).

    A float NaN is ``NAN``, every other int or float is ``NUMBER``.
    """
    kind = _KIND_OF_TYPE.get(type(value))
    if kind is None:
        kind = _subclass_kind(value)
    if kind == NUMBER and value != value:
        return NAN
    return kind


def check_json(value: Any, where: str) -> None:
    """Raise ``ValueError`` starting with ``where`` unless ``value`` is entirely JSON."""
    kind = kind_of(value)
    if kind == NOT_JSON:
        raise ValueError(f"{where}: {type(value).__name__} is not a JSON value")
    if kind == OBJECT:
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: object key {key!r} is not a string")
            check_json(item, where)
    elif kind == ARRAY:
        for item in value:
            check_json(item, where)


def type_bracket(value: Any) -> int:
    """Return the comparison bracket of ``value``: its kind, with NaN counted as a number.

    Query comparison operators only compare values of the same bracket.
    """
    kind = kind_of(value)
    return NUMBER if kind == NAN else kind


def sort_key(value: Any) -> tuple[Any, ...]:
    """Return a hashable tuple that orders like ``compare_values`` and equals like ``values_equal``.

    Raises ``TypeError`` if ``value`` is not a JSON value.
    """
    vtype = type(value)
    if vtype is str:
        return (STRING, value)
    if vtype is int:
        return (NUMBER, value)
    if vtype is float:
        return (NUMBER, value) if value == value else _NAN_KEY
    if value is None:
        return _NULL_KEY
    if vtype is bool:
        return (BOOL, value)
    if vtype is dict:
        return (OBJECT, _object_key(value))
    if vtype is list:
        return (ARRAY, tuple([sort_key(item) for item in value]))
    return _subclass_sort_key(value)


def _object_key(value: Mapping[Any, Any]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"not a JSON value: object key {key!r} is not a string")
    # Keys are unique, so sorting the pairs never reaches the values.
    return tuple([(key, sort_key(item)) for key, item in sorted(value.items())])


def _subclass_sort_key(value: Any) -> tuple[Any, ...]:
    kind = kind_of(value)
    if kind == NUMBER:
        return (NUMBER, value)
    if kind == NAN:
        return _NAN_KEY
    if kind == STRING:
        return (STRING, str.__str__(value))
    if kind == OBJECT:
        return (OBJECT, _object_key(value))
    if kind == ARRAY:
        return (ARRAY, tuple([sort_key(item) for item in value]))
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def compare_values(a: Any, b: Any) -> int:
    """Return -1, 0 or 1 as ``a`` orders before, the same as, or after ``b``.

    The order is null < numbers < strings < objects < arrays < booleans; see the module
    docstring. Raises ``TypeError`` if either value is not JSON.
    """
    key_a = sort_key(a)
    key_b = sort_key(b)
    if key_a < key_b:
        return -1
    return 1 if key_a > key_b else 0


_PLAIN_SCALARS: Final = frozenset({str, int, type(None), bool})


def values_equal(a: Any, b: Any) -> bool:
    """Return whether two JSON values are equal under JSON rules (``true`` is not ``1``).

    Objects compare regardless of key order. Never raises; a non-JSON value equals nothing.
    """
    atype = type(a)
    if atype is type(b) and atype in _PLAIN_SCALARS:
        return bool(a == b)
    kind = kind_of(a)
    if kind != kind_of(b) or kind == NOT_JSON:
        return False
    if kind == OBJECT:
        if len(a) != len(b):
            return False
        for key, item in a.items():
            other = b.get(key, _ABSENT)
            if other is _ABSENT or not values_equal(item, other):
                return False
        return True
    if kind == ARRAY:
        return len(a) == len(b) and all(map(values_equal, a, b))
    # Both NaN counts as equal, matching the order.
    return kind == NAN or bool(a == b)


_ABSENT: Final = object()
