"""MongoDB-style filters over JSON documents, compiled once into plain predicates.

What this module guarantees:

* ``compile_filter`` checks the whole filter before returning. An operator outside the supported
  set (``$eq $ne $gt $gte $lt $lte $in $nin $exists $not`` on a field, ``$and $or`` as logic) or a
  malformed operand raises ``ValueError`` whose message names the operator and, where there is
  one, the field. The predicate it returns never mutates the document and never raises on a
  JSON document.
* Values compare as JSON, never as Python: ``true`` never equals or compares with ``1``; ``1``
  equals ``1.0``. Ordering operators only compare values of the same bracket (numbers with
  numbers, strings with strings by code point, booleans with booleans, null with null, objects
  and arrays by the order of :mod:`platform_shim.services.compare`); across brackets they are
  false. An embedded-document literal matches an equal object whatever its key order.
* Dotted paths descend into objects; an all-digit segment (no leading zero) indexes a list; any
  other segment that meets a list is looked up in each element of the list (one level, as Mongo
  does). A path that cannot be followed, including through an empty list or a non-object element,
  is *missing* at that point.
* Array rules are Mongo's: ``{f: v}`` and the ordering operators match when the value or any
  element of a list value satisfies them; ``$in`` is "equals any"; ``$ne``, ``$nin`` and ``$not``
  are exactly the negations of ``$eq``, ``$in`` and their expression, so they match a missing
  field. ``{f: null}`` and ``$in: [null]`` match null or missing; ``$exists`` tests presence (a
  null value is present); ``$gte``/``$lte`` null match null or missing, ``$gt``/``$lt`` null match
  nothing.
* No field name is special here, ``_id`` and ``id`` included; the caller maps names before
  compiling.

Sorting and projection live in :mod:`platform_shim.services.shaping` and are re-exported here.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any, Final

from platform_shim.services.compare import SCALAR_KINDS, check_json, compare_values, kind_of
from platform_shim.services.matchers import (
    RANGE_OPS,
    ValueTest,
    eq_test,
    in_test,
    is_present,
    range_test,
    simple_predicate,
)
from platform_shim.services.paths import MISSING, Steps, parse_path, resolve
from platform_shim.services.shaping import apply_projection, compile_projection, sort_documents

__all__ = [
    "Predicate",
    "apply_projection",
    "compare_values",
    "compile_filter",
    "compile_projection",
    "compile_value_condition",
    "equality_terms",
    "sort_documents",
]

Predicate = Callable[[Mapping[str, Any]], bool]
"""A compiled filter: takes a document, says whether it matches."""

_LeavesTest = Callable[[list[Any]], bool]

_FIELD_OPS: Final = frozenset({"$eq", "$ne", "$in", "$nin", "$exists", "$not", *RANGE_OPS})
_LOGIC_OPS: Final = frozenset({"$and", "$or"})

# Predicate cost ranks, used to test cheap conditions first in a conjunction.
_COST_SIMPLE_EQ: Final = 0
_COST_SIMPLE: Final = 1
_COST_DOTTED: Final = 2
_COST_LOGIC: Final = 3


def _match_all(doc: Mapping[str, Any]) -> bool:
    return True


def _is_operator_dict(value: Any, where: str) -> bool:
    """Whether ``value`` is an operator expression; a plain object is a literal."""
    if not isinstance(value, Mapping) or not value:
        return False
    dollar = [isinstance(key, str) and key.startswith("$") for key in value]
    if all(dollar):
        return True
    if any(dollar):
        raise ValueError(f"{where}: an object cannot mix operators and plain field names")
    return False


# ---------------------------------------------------------------------------------------------
# Field expressions


class _Cond:
    """One operator of a field expression: true when ``test`` holds for some leaf, xor negate."""

    __slots__ = ("negate", "test")

    def __init__(self, test: ValueTest, negate: bool) -> None:
        self.test = test
        self.negate = negate


class _Not:
    """``$not``: true when the inner expression (a conjunction) is false."""

    __slots__ = ("inner",)

    def __init__(self, inner: list[_Cond | _Not]) -> None:
        self.inner = inner


def _parse_expression(path: str, expression: Mapping[str, Any]) -> list[_Cond | _Not]:
    conds: list[_Cond | _Not] = []
    for op, operand in expression.items():
        where = f"operator {op!r} on field {path!r}"
        if op not in _FIELD_OPS:
            raise ValueError(f"unsupported query operator {op!r} (field {path!r})")
        if op == "$not":
            if not isinstance(operand, Mapping) or not operand:
                raise ValueError(f"{where} needs a non-empty object of operators")
            if not _is_operator_dict(operand, where):
                raise ValueError(f"{where} needs an object of operators, not a literal")
            conds.append(_Not(_parse_expression(path, operand)))
        elif op == "$exists":
            if not isinstance(operand, bool):
                raise ValueError(f"{where} needs true or false, got {operand!r}")
            conds.append(_Cond(is_present, not operand))
        elif op in ("$in", "$nin"):
            if not isinstance(operand, list):
                raise ValueError(f"{where} needs a list, got {type(operand).__name__}")
            check_json(operand, where)
            conds.append(_Cond(in_test(operand), op == "$nin"))
        else:
            check_json(operand, where)
            if op in ("$eq", "$ne"):
                conds.append(_Cond(eq_test(operand), op == "$ne"))
            else:
                conds.append(_Cond(range_test(op, operand), False))
    return conds


def _all_of(tests: list[Callable[[Any], bool]]) -> Callable[[Any], bool]:
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests

        def both(arg: Any) -> bool:
            return first(arg) and second(arg)

        return both

    def every(arg: Any) -> bool:
        return all(test(arg) for test in tests)

    return every


def _negated(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    def negated(arg: Any) -> bool:
        return not test(arg)

    return negated


def _one_leaf(conds: list[_Cond | _Not]) -> ValueTest:
    """Compile an expression for a path that reaches exactly one leaf (a top-level field)."""
    tests: list[ValueTest] = []
    for cond in conds:
        if isinstance(cond, _Not):
            tests.append(_negated(_one_leaf(cond.inner)))
        else:
            tests.append(_negated(cond.test) if cond.negate else cond.test)
    return _all_of(tests)


def _any_leaf(test: ValueTest, negate: bool) -> _LeavesTest:
    if negate:

        def none_match(leaves: list[Any]) -> bool:
            return not any(map(test, leaves))

        return none_match

    def some_match(leaves: list[Any]) -> bool:
        return any(map(test, leaves))

    return some_match


def _many_leaves(conds: list[_Cond | _Not]) -> _LeavesTest:
    """Compile an expression for a dotted path, which may fan out to several leaves."""
    tests: list[_LeavesTest] = []
    for cond in conds:
        if isinstance(cond, _Not):
            tests.append(_negated(_many_leaves(cond.inner)))
        else:
            tests.append(_any_leaf(cond.test, cond.negate))
    return _all_of(tests)


def _compile_field(path: str, condition: Any) -> tuple[int, Predicate]:
    steps = parse_path(path)
    key = steps[0][0] if len(steps) == 1 else None
    if _is_operator_dict(condition, f"field {path!r}"):
        conds = _parse_expression(path, condition)
        if key is not None and len(condition) == 1:
            ((op, operand),) = condition.items()
            fast = simple_predicate(key, op, operand)
            if fast is not None:
                return (_COST_SIMPLE_EQ if op == "$eq" else _COST_SIMPLE), fast
        return _field_predicate(steps, conds)
    check_json(condition, f"field {path!r}")
    if key is not None:
        fast = simple_predicate(key, "$eq", condition)
        if fast is not None:
            return _COST_SIMPLE_EQ, fast
    return _field_predicate(steps, [_Cond(eq_test(condition), False)])


def _field_predicate(steps: Steps, conds: list[_Cond | _Not]) -> tuple[int, Predicate]:
    if len(steps) == 1:
        key = steps[0][0]
        test = _one_leaf(conds)

        def pred(doc: Mapping[str, Any]) -> bool:
            return test(doc.get(key, MISSING))

        return _COST_SIMPLE, pred
    one = _one_leaf(conds)
    many = _many_leaves(conds)
    first = steps[0][0]
    names = tuple(name for name, _ in steps[1:])

    def dotted(doc: Mapping[str, Any]) -> bool:
        # Through objects alone a path reaches one value; only a list can fan it out.
        value = doc.get(first, MISSING)
        for name in names:
            if isinstance(value, dict):
                value = value.get(name, MISSING)
            elif isinstance(value, list):
                return many(resolve(doc, steps))
            else:
                return one(MISSING)
        return one(value)

    return _COST_DOTTED, dotted


# ---------------------------------------------------------------------------------------------
# Whole filters


def _compile_logic(op: str, operand: Any) -> tuple[int, Predicate]:
    if not isinstance(operand, list) or not operand:
        raise ValueError(f"operator {op!r} needs a non-empty list of filters")
    preds = []
    for index, sub in enumerate(operand):
        if not isinstance(sub, Mapping):
            raise ValueError(f"operator {op!r}: element {index} is not a filter object")
        preds.append(_compile(sub))
    if op == "$and":
        return _COST_LOGIC, _conjunction(preds)
    if any(pred is _match_all for pred in preds):
        return _COST_LOGIC, _match_all
    if len(preds) == 1:
        return _COST_LOGIC, preds[0]
    if len(preds) == 2:
        first, second = preds

        def one_of_two(doc: Mapping[str, Any]) -> bool:
            return first(doc) or second(doc)

        return _COST_LOGIC, one_of_two

    def either(doc: Mapping[str, Any]) -> bool:
        return any(pred(doc) for pred in preds)

    return _COST_LOGIC, either


def _conjunction(preds: list[Predicate]) -> Predicate:
    preds = [pred for pred in preds if pred is not _match_all]
    if not preds:
        return _match_all
    return _all_of(preds)


def _compile(filter: Mapping[str, Any]) -> Predicate:
    ranked: list[tuple[int, Predicate]] = []
    for key, condition in filter.items():
        if not isinstance(key, str):
            raise ValueError(f"filter keys must be strings, got {key!r}")
        if key.startswith("$"):
            if key not in _LOGIC_OPS:
                raise ValueError(f"unsupported query operator {key!r}")
            ranked.append(_compile_logic(key, condition))
        else:
            ranked.append(_compile_field(key, condition))
    # Cheap tests first: a conjunction stops at the first failure.
    ranked.sort(key=operator.itemgetter(0))
    return _conjunction([pred for _, pred in ranked])


def compile_filter(filter: Mapping[str, Any] | None) -> Predicate:
    """Compile a MongoDB-style filter into a predicate over documents.

    ``None`` and ``{}`` match every document. Raises ``ValueError`` naming the operator (and the
    field) for an unsupported operator or a malformed operand; see the module docstring for the
    matching rules.
    """
    if filter is None:
        return _match_all
    # Filters often come straight from JSON request bodies, so the annotation is not trusted.
    untrusted: object = filter
    if not isinstance(untrusted, Mapping):
        raise ValueError(f"a filter must be an object, got {type(untrusted).__name__}")
    return _compile(filter)


def compile_value_condition(condition: Mapping[str, Any], field: str) -> Callable[[Any], bool]:
    """Compile an operator expression (``{"$gte": 5}``) into a test on one value.

    The value is tested as if it were the value of ``field`` (which only names it in errors),
    so a list value gets the array rules. ``$pull`` uses this to test array elements.
    """
    where = f"field {field!r}"
    if not _is_operator_dict(condition, where):
        raise ValueError(f"{where}: expected an object of query operators, got {condition!r}")
    return _one_leaf(_parse_expression(field, condition))


def equality_terms(filter: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the field -> scalar equalities every document matching ``filter`` satisfies.

    Collected from ``{f: scalar}`` and ``{f: {"$eq": scalar, ...}}`` at the top level and inside
    a top-level ``$and`` (recursively); never from ``$or`` or ``$not``. Keys are paths as written
    (possibly dotted); values are str, int, float, bool or None, never objects or lists. The
    equality has query semantics: a list field containing the value matches, and ``None``
    matches a missing field. When a field appears twice, the first equality wins.
    """
    terms: dict[str, Any] = {}
    if isinstance(filter, Mapping):
        _collect_terms(filter, terms)
    return terms


def _collect_terms(filter: Mapping[Any, Any], terms: dict[str, Any]) -> None:
    for key, condition in filter.items():
        if not isinstance(key, str):
            continue
        if key == "$and":
            if isinstance(condition, list):
                for sub in condition:
                    if isinstance(sub, Mapping):
                        _collect_terms(sub, terms)
            continue
        if key.startswith("$"):
            continue
        if isinstance(condition, Mapping):
            if "$eq" not in condition or not all(
                isinstance(op, str) and op.startswith("$") for op in condition
            ):
                continue
            condition = condition["$eq"]
        if kind_of(condition) in SCALAR_KINDS:
            terms.setdefault(key, condition)
