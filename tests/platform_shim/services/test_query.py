"""Tests of platform_shim.services.query: filters, equality terms, value order, sort, projection.

The property tests compare the compiled predicates with a deliberately naive reference
interpreter written here, from the rules, without the module's closures or sort keys.
"""

from __future__ import annotations

import copy
import functools
import math
import random
import re
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from platform_shim.services.compare import sort_key, values_equal
from platform_shim.services.query import (
    apply_projection,
    compare_values,
    compile_filter,
    compile_projection,
    compile_value_condition,
    equality_terms,
    sort_documents,
)

NAN = float("nan")


# ---------------------------------------------------------------------------------------------
# Reference model


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


def ref_rank(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        return 5
    if isinstance(value, int | float):
        return 1
    if isinstance(value, str):
        return 2
    if isinstance(value, dict):
        return 3
    if isinstance(value, list):
        return 4
    raise TypeError(value)


def _sign(a: Any, b: Any) -> int:
    return int(a > b) - int(a < b)


def ref_cmp(a: Any, b: Any) -> int:
    rank_a, rank_b = ref_rank(a), ref_rank(b)
    if rank_a != rank_b:
        return _sign(rank_a, rank_b)
    if rank_a == 0:
        return 0
    if rank_a == 1:
        nan_a, nan_b = math.isnan(a), math.isnan(b)
        if nan_a or nan_b:
            return _sign(nan_b, nan_a)
        return _sign(a, b)
    if rank_a in (3, 4):
        pairs_a = sorted(a.items()) if rank_a == 3 else list(a)
        pairs_b = sorted(b.items()) if rank_a == 3 else list(b)
        for item_a, item_b in zip(pairs_a, pairs_b, strict=False):
            if rank_a == 3:
                if item_a[0] != item_b[0]:
                    return _sign(item_a[0], item_b[0])
                result = ref_cmp(item_a[1], item_b[1])
            else:
                result = ref_cmp(item_a, item_b)
            if result:
                return result
        return _sign(len(pairs_a), len(pairs_b))
    return _sign(a, b)


def ref_equal(a: Any, b: Any) -> bool:
    return ref_cmp(a, b) == 0


def is_index(segment: str) -> bool:
    return segment.isdigit() and (segment == "0" or not segment.startswith("0"))


def ref_leaves(doc: dict[str, Any], path: str) -> list[Any]:
    values: list[Any] = [doc]
    for segment in path.split("."):
        reached: list[Any] = []
        for value in values:
            if isinstance(value, dict):
                reached.append(value.get(segment, ABSENT))
            elif isinstance(value, list) and value and is_index(segment):
                index = int(segment)
                reached.append(value[index] if index < len(value) else ABSENT)
            elif isinstance(value, list) and value:
                for item in value:
                    found = isinstance(item, dict) and segment in item
                    reached.append(item[segment] if found else ABSENT)
            else:
                reached.append(ABSENT)
        values = reached
    return values


def ref_eq_leaf(leaf: Any, target: Any) -> bool:
    if leaf is ABSENT:
        return target is None
    if ref_equal(leaf, target):
        return True
    return isinstance(leaf, list) and any(ref_equal(item, target) for item in leaf)


REF_COMPARE: dict[str, Callable[[int], bool]] = {
    "$gt": lambda c: c > 0,
    "$gte": lambda c: c >= 0,
    "$lt": lambda c: c < 0,
    "$lte": lambda c: c <= 0,
}


def ref_range_leaf(leaf: Any, op: str, target: Any) -> bool:
    if leaf is ABSENT:
        leaf = None
    candidates = [leaf] + (leaf if isinstance(leaf, list) else [])
    return any(
        ref_rank(c) == ref_rank(target) and REF_COMPARE[op](ref_cmp(c, target)) for c in candidates
    )


def ref_op(leaves: list[Any], op: str, arg: Any) -> bool:
    if op == "$eq":
        return any(ref_eq_leaf(leaf, arg) for leaf in leaves)
    if op == "$ne":
        return not ref_op(leaves, "$eq", arg)
    if op == "$in":
        return any(ref_op(leaves, "$eq", target) for target in arg)
    if op == "$nin":
        return not ref_op(leaves, "$in", arg)
    if op == "$exists":
        return bool(any(leaf is not ABSENT for leaf in leaves) == arg)
    if op == "$not":
        return not all(ref_op(leaves, inner, inner_arg) for inner, inner_arg in arg.items())
    return any(ref_range_leaf(leaf, op, arg) for leaf in leaves)


def is_operators(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(k.startswith("$") for k in value)


def ref_match(filter: dict[str, Any], doc: dict[str, Any]) -> bool:
    for key, condition in filter.items():
        if key == "$and":
            ok = all(ref_match(sub, doc) for sub in condition)
        elif key == "$or":
            ok = any(ref_match(sub, doc) for sub in condition)
        elif is_operators(condition):
            leaves = ref_leaves(doc, key)
            ok = all(ref_op(leaves, op, arg) for op, arg in condition.items())
        else:
            ok = ref_op(ref_leaves(doc, key), "$eq", condition)
        if not ok:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Strategies


def pick(*choices: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Draw from one of ``choices`` with equal odds (``one_of`` favours its first branches)."""
    return st.sampled_from(choices).flatmap(lambda chosen: chosen)


KEYS = ["a", "b", "c", "0", "1"]
scalars = pick(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.sampled_from([0.0, 1.0, -1.5, 2.5, NAN, math.inf]),
    st.sampled_from(["", "a", "b", "ab", "B"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: pick(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=3),
        # lists of objects are where dotted paths fan out, so make them common
        st.lists(st.dictionaries(st.sampled_from(KEYS), inner, max_size=3), min_size=1, max_size=3),
    ),
    max_leaves=6,
)
# Mostly scalars: bugs hide in how scalars compare, and big values rarely meet a filter.
field_values = pick(scalars, scalars, json_values)
documents = st.dictionaries(st.sampled_from(KEYS), field_values, max_size=4)
paths = st.lists(st.sampled_from(["a", "a", "b", "c", "0", "1"]), min_size=1, max_size=3).map(
    ".".join
)


def sub_values(value: Any) -> list[Any]:
    found = [value]
    children = (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    )
    for child in children:
        found.extend(sub_values(child))
    return found


def look_alikes(value: Any) -> list[Any]:
    """The value with its look-alikes of other types (true, 1, 1.0), where bugs hide."""
    if isinstance(value, bool):
        return [value, int(value), float(value)]
    if isinstance(value, int | float) and value in (0, 1):
        return [value, bool(value), float(value), int(value)]
    return [value]


def swapped(value: Any) -> Any:
    """``value`` with booleans and the numbers 0 and 1 traded for each other, recursively."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, dict):
        return {key: swapped(item) for key, item in value.items()}
    if isinstance(value, list):
        return [swapped(item) for item in value]
    return value


def reordered(value: Any) -> Any:
    """``value`` with every object's keys in reverse order (and float for int where exact)."""
    if isinstance(value, dict):
        return {key: reordered(value[key]) for key in reversed(value)}
    if isinstance(value, list):
        return [reordered(item) for item in value]
    if type(value) is int:
        return float(value)
    return value


def doc_paths(value: Any, prefix: str = "", depth: int = 0) -> set[str]:
    """Paths that reach something in ``value``: keys, list indexes and fanned-out names."""
    found: set[str] = set()
    if depth == 3:
        return found
    if isinstance(value, dict):
        for key, child in value.items():
            found.add(prefix + key)
            found |= doc_paths(child, f"{prefix}{key}.", depth + 1)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found.add(f"{prefix}{index}")
            found |= doc_paths(child, f"{prefix}{index}.", depth + 1)
            if isinstance(child, dict):
                found |= doc_paths(child, prefix, depth + 1)
    return found


FIELD_OPS = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists"]


def filters_from(
    literals: st.SearchStrategy[Any], fields: st.SearchStrategy[str]
) -> st.SearchStrategy[dict[str, Any]]:
    def operand(op: str) -> st.SearchStrategy[Any]:
        if op in ("$in", "$nin"):
            return pick(st.lists(literals, min_size=2, max_size=4), st.lists(literals, max_size=1))
        return st.booleans() if op == "$exists" else literals

    single_op = st.sampled_from(FIELD_OPS).flatmap(
        lambda op: operand(op).map(lambda arg: (op, arg))
    )
    expression = st.lists(single_op, min_size=1, max_size=2).map(dict)
    negated = expression.map(lambda inner: {"$not": inner})
    condition = pick(literals, expression, expression, negated)
    field_filters = st.dictionaries(fields, condition, min_size=1, max_size=3)

    def with_logic(inner: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
        return st.builds(
            lambda base, op, subs: {**base, op: subs},
            st.dictionaries(fields, condition, max_size=2),
            st.sampled_from(["$and", "$or"]),
            st.lists(inner, min_size=1, max_size=3),
        )

    return st.recursive(field_filters, with_logic, max_leaves=4)


@st.composite
def docs_and_filter(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    docs = draw(st.lists(documents, min_size=1, max_size=6))
    # Paths and literals taken from the documents (and look-alikes of those literals) make
    # matches, and near misses, common instead of rare.
    pool = [alike for doc in docs for value in sub_values(doc) for alike in look_alikes(value)]
    scalar_pool = [value for value in pool if not isinstance(value, dict | list)] or [None]
    literals = pick(
        st.sampled_from(scalar_pool),
        st.sampled_from(scalar_pool),
        scalars,
        st.sampled_from(pool),
        json_values,
    )
    reachable = sorted(set().union(*(doc_paths(doc) for doc in docs)))
    fields = (
        pick(st.sampled_from(reachable), st.sampled_from(reachable), paths) if reachable else paths
    )
    return docs, draw(filters_from(literals, fields))


PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------------------------
# Properties


@PROPERTY
@given(docs_and_filter())
def test_compiled_filter_agrees_with_reference(
    case: tuple[list[dict[str, Any]], dict[str, Any]],
) -> None:
    docs, filter = case
    predicate = compile_filter(filter)
    # The look-alike twins put true where 1 was (and back), where type-blind code goes wrong.
    for doc in [*docs, *map(swapped, docs)]:
        before = repr(doc)
        assert predicate(doc) == ref_match(filter, doc), (filter, doc)
        assert repr(doc) == before


# Plain-random generators for a bulk check: far more (filter, document) pairs per second than
# strategies give, at the price of shrinking. Hypothesis supplies (and remembers) the seeds.
SCALAR_CHOICES: list[Any] = [None, True, False, -2, -1, 0, 1, 2, 0.0, 1.0, -1.5, 2.5, NAN,
                             math.inf, "", "a", "b", "ab", "B"]  # fmt: skip


def random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth >= 2 or roll < 0.5:
        return rng.choice(SCALAR_CHOICES)
    if roll < 0.65:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if roll < 0.8:
        return random_object(rng, depth + 1)
    return [random_object(rng, depth + 1) for _ in range(rng.randint(1, 3))]


def random_object(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    return {rng.choice(KEYS): random_value(rng, depth) for _ in range(rng.randint(0, 4 - depth))}


def random_filter(rng: random.Random, anchor: dict[str, Any], depth: int = 0) -> dict[str, Any]:
    """A filter aimed at ``anchor``: its paths and (look-alikes of) its values, mostly."""
    fields = sorted(doc_paths(anchor)) or ["a"]
    pool = [alike for value in sub_values(anchor) for alike in look_alikes(value)]

    def literal() -> Any:
        return rng.choice(pool) if rng.random() < 0.7 else random_value(rng, 1)

    def operand(op: str) -> Any:
        if op == "$exists":
            return rng.random() < 0.5
        if op in ("$in", "$nin"):
            return [literal() for _ in range(rng.randint(0, 3))]
        return literal()

    filter: dict[str, Any] = {}
    for _ in range(rng.randint(1, 2)):
        roll = rng.random()
        if roll < 0.3:
            condition = literal()
        else:
            condition = {op: operand(op) for op in rng.sample(FIELD_OPS, rng.randint(1, 2))}
            if roll > 0.85:
                condition = {"$not": condition}
        filter[rng.choice(fields) if rng.random() < 0.9 else rng.choice(KEYS)] = condition
    if depth < 2 and rng.random() < 0.2:
        filter[rng.choice(["$and", "$or"])] = [
            random_filter(rng, anchor, depth + 1) for _ in range(rng.randint(1, 3))
        ]
    return filter


# Shrinking a seed teaches nothing and is slow; the failing filter and document are in the message.
@settings(max_examples=40, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(st.integers(0, 2**32))
def test_compiled_filter_agrees_with_reference_in_bulk(seed: int) -> None:
    rng = random.Random(seed)
    docs = [random_object(rng) for _ in range(20)]
    # The look-alike twins put true where 1 was (and back), where type-blind code goes wrong.
    docs += [swapped(doc) for doc in docs]
    for _ in range(60):
        filter = random_filter(rng, rng.choice(docs))
        predicate = compile_filter(filter)
        for doc in docs:
            assert predicate(doc) == ref_match(filter, doc), (filter, doc)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs_and_filter())
def test_equality_terms_hold_for_every_match(
    case: tuple[list[dict[str, Any]], dict[str, Any]],
) -> None:
    docs, filter = case
    terms = equality_terms(filter)
    for value in terms.values():
        assert not isinstance(value, dict | list)
    for doc in docs:
        if compile_filter(filter)(doc):
            for field, value in terms.items():
                assert ref_match({field: value}, doc), (field, value, doc)


@st.composite
def related_values(draw: st.DrawFn) -> tuple[Any, Any, Any]:
    first = draw(json_values)
    near = pick(json_values, st.just(swapped(first)), st.just(reordered(first)))
    return first, draw(near), draw(near)


@settings(max_examples=300, deadline=None)
@given(related_values())
def test_compare_values_is_a_total_order(values: tuple[Any, Any, Any]) -> None:
    a, b, c = values
    assert values_equal(a, reordered(a))
    assert compare_values(a, b) == ref_cmp(a, b)
    assert compare_values(a, b) == -compare_values(b, a)
    assert compare_values(a, a) == 0
    if compare_values(a, b) <= 0 and compare_values(b, c) <= 0:
        assert compare_values(a, c) <= 0
    assert values_equal(a, b) == (compare_values(a, b) == 0)
    if values_equal(a, b):
        assert hash(sort_key(a)) == hash(sort_key(b))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(documents, max_size=8),
    st.lists(st.tuples(paths, st.sampled_from([1, -1])), min_size=1, max_size=2),
)
def test_sort_agrees_with_reference(
    docs: list[dict[str, Any]], spec: list[tuple[str, int]]
) -> None:
    def field_value(doc: dict[str, Any], path: str, direction: int) -> Any:
        candidates: list[Any] = []
        for leaf in ref_leaves(doc, path):
            if leaf is ABSENT or leaf == []:
                candidates.append(None)
            elif isinstance(leaf, list):
                candidates.extend(leaf)
            else:
                candidates.append(leaf)
        pick = min if direction == 1 else max
        return pick(candidates, key=functools.cmp_to_key(ref_cmp))

    def compare_docs(x: dict[str, Any], y: dict[str, Any]) -> int:
        for path, direction in spec:
            result = ref_cmp(field_value(x, path, direction), field_value(y, path, direction))
            if result:
                return result * direction
        return 0

    expected = sorted(docs, key=functools.cmp_to_key(compare_docs))
    result = sort_documents(docs, spec)
    assert [id(doc) for doc in result] == [id(doc) for doc in expected]


# ---------------------------------------------------------------------------------------------
# Equality, null and missing


def matches(filter: dict[str, Any], doc: dict[str, Any]) -> bool:
    return compile_filter(filter)(doc)


@pytest.mark.parametrize("filter", [None, {}])
def test_empty_filter_matches_everything(filter: dict[str, Any] | None) -> None:
    assert compile_filter(filter)({})
    assert compile_filter(filter)({"a": 1})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1, True),
        (1.0, True),
        ([2, 1.0], True),
        (True, False),
        ([True], False),
        ("1", False),
        ([[1]], False),
        (None, False),
    ],
)
def test_number_equality_is_not_boolean(value: Any, expected: bool) -> None:
    assert matches({"a": 1}, {"a": value}) is expected
    assert matches({"a": {"$eq": 1}}, {"a": value}) is expected
    assert matches({"a": {"$ne": 1}}, {"a": value}) is not expected
    assert matches({"x.a": 1}, {"x": {"a": value}}) is expected


@pytest.mark.parametrize(
    ("filter_value", "doc_value", "expected"),
    [
        (True, True, True),
        (True, 1, False),
        (True, 1.0, False),
        (True, [0, True], True),
        (True, [1], False),
        (False, 0, False),
        (False, [0.0], False),
        (0, False, False),
        (0, [False], False),
        (0, 0.0, True),
    ],
)
def test_booleans_never_equal_numbers(filter_value: Any, doc_value: Any, expected: bool) -> None:
    assert matches({"a": filter_value}, {"a": doc_value}) is expected
    assert matches({"a": {"$in": [filter_value, "z"]}}, {"a": doc_value}) is expected


def test_string_equality_and_list_membership() -> None:
    assert matches({"a": "x"}, {"a": "x"})
    assert matches({"a": "x"}, {"a": ["y", "x"]})
    assert not matches({"a": "x"}, {"a": ["xx"]})
    assert not matches({"a": "x"}, {"a": "X"})
    assert not matches({"a": "x"}, {})


def test_null_matches_null_and_missing() -> None:
    null_docs: list[dict[str, Any]] = [{}, {"a": None}, {"a": [1, None]}]
    for doc in null_docs:
        assert matches({"a": None}, doc)
        assert matches({"a": {"$eq": None}}, doc)
        assert matches({"a": {"$in": [None, 5]}}, doc)
        assert not matches({"a": {"$ne": None}}, doc)
    other_docs: list[dict[str, Any]] = [{"a": 0}, {"a": False}, {"a": ""}, {"a": []}, {"a": [1]}]
    for doc in other_docs:
        assert not matches({"a": None}, doc)
        assert matches({"a": {"$ne": None}}, doc)


def test_list_literal_matches_whole_list_or_element() -> None:
    assert matches({"a": [1, 2]}, {"a": [1, 2]})
    assert matches({"a": [1, 2]}, {"a": [1.0, 2]})
    assert matches({"a": [1, 2]}, {"a": [[1, 2], 3]})
    assert not matches({"a": [1, 2]}, {"a": [2, 1]})
    assert not matches({"a": [1, 2]}, {"a": [1, 2, 3]})
    assert not matches({"a": [1, 2]}, {"a": [True, 2]})
    assert not matches({"a": [1]}, {"a": 1})


def test_embedded_document_literal_ignores_key_order() -> None:
    target = {"b": 1, "c": [2]}
    assert matches({"a": target}, {"a": {"c": [2], "b": 1}})
    assert matches({"a": target}, {"a": [{"c": [2], "b": 1.0}]})
    assert not matches({"a": target}, {"a": {"b": 1}})
    assert not matches({"a": target}, {"a": {"b": True, "c": [2]}})
    assert not matches({"a": target}, {"a": {"b": 1, "c": [2], "d": 3}})
    assert matches({"a": {}}, {"a": {}})
    assert not matches({"a": {}}, {"a": {"b": 1}})


def test_nan_equals_nan() -> None:
    assert matches({"a": NAN}, {"a": NAN})
    assert matches({"a": NAN}, {"a": [1, NAN]})
    assert not matches({"a": NAN}, {"a": 1.0})
    assert matches({"a": {"$in": [NAN, 3]}}, {"a": float("nan")})


# ---------------------------------------------------------------------------------------------
# Comparison operators


@pytest.mark.parametrize(
    ("condition", "value", "expected"),
    [
        ({"$gt": 5}, 6, True),
        ({"$gt": 5}, 5.0, False),
        ({"$gte": 5}, 5.0, True),
        ({"$lt": 5}, 4.5, True),
        ({"$lte": 5}, 5, True),
        ({"$lte": 5}, 6, False),
        ({"$gt": 5}, [1, 7], True),
        ({"$gt": 5}, [1, 2], False),
        ({"$gt": 5}, [[7]], False),
        ({"$gt": 0}, True, False),
        ({"$lt": True}, 0, False),
        ({"$gte": 0}, False, False),
        ({"$gt": False}, True, True),
        ({"$lt": True}, False, True),
        ({"$gt": 1}, "2", False),
        ({"$lt": "a"}, 1, False),
        ({"$lt": "a"}, "B", True),
        ({"$gt": "a"}, "ab", True),
        ({"$gt": 5}, None, False),
        ({"$gt": 5}, {"a": 9}, False),
        ({"$gt": [1]}, [2], True),
        ({"$gt": [1]}, [1], False),
        ({"$gt": {"a": 1}}, {"a": 2}, True),
        ({"$gt": {"a": 1}}, {"b": 0}, True),
        ({"$lt": 5}, NAN, True),
        ({"$gt": 5}, NAN, False),
        ({"$gt": NAN}, 5, True),
        ({"$gte": 18, "$lt": 65}, 30, True),
        ({"$gte": 18, "$lt": 65}, 70, False),
        # each operator may be satisfied by a different element (Mongo semantics)
        ({"$gt": 60, "$lt": 20}, [10, 70], True),
    ],
)
def test_range_operators(condition: dict[str, Any], value: Any, expected: bool) -> None:
    assert matches({"a": condition}, {"a": value}) is expected
    assert matches({"x.a": condition}, {"x": {"a": value}}) is expected
    assert matches({"x.a": condition}, {"x": [{"a": value}]}) is expected


def test_range_operators_on_missing_and_null() -> None:
    null_docs: list[dict[str, Any]] = [{}, {"a": None}, {"a": [None, 3]}]
    for doc in null_docs:
        assert matches({"a": {"$gte": None}}, doc)
        assert matches({"a": {"$lte": None}}, doc)
        assert not matches({"a": {"$gt": None}}, doc)
        assert not matches({"a": {"$lt": None}}, doc)
    assert not matches({"a": {"$gte": None}}, {"a": 0})
    assert not matches({"a": {"$gt": 0}}, {})
    assert not matches({"a": {"$lt": 0}}, {})


def test_in_and_nin() -> None:
    condition = [1, "x", None, [2, 3], {"k": 1}]
    hits: list[dict[str, Any]] = [
        {"a": 1.0},
        {"a": "x"},
        {},
        {"a": None},
        {"a": [5, "x"]},
        {"a": [2, 3]},
        {"a": {"k": 1}},
    ]
    misses: list[dict[str, Any]] = [
        {"a": True},
        {"a": [True]},
        {"a": 2},
        {"a": [2]},
        {"a": "X"},
        {"a": {"k": True}},
    ]
    for doc in hits:
        assert matches({"a": {"$in": condition}}, doc), doc
        assert not matches({"a": {"$nin": condition}}, doc), doc
    for doc in misses:
        assert not matches({"a": {"$in": condition}}, doc), doc
        assert matches({"a": {"$nin": condition}}, doc), doc
    assert not matches({"a": {"$in": []}}, {"a": 1})
    assert matches({"a": {"$nin": []}}, {})
    assert matches({"a": {"$in": [True]}}, {"a": True})
    assert not matches({"a": {"$in": [True, 7]}}, {"a": 1})
    assert matches({"a": {"$nin": [1, 2]}}, {})


def test_exists() -> None:
    assert matches({"a": {"$exists": True}}, {"a": None})
    assert not matches({"a": {"$exists": True}}, {})
    assert matches({"a": {"$exists": False}}, {"b": 1})
    assert not matches({"a": {"$exists": False}}, {"a": None})
    assert matches({"a.b": {"$exists": True}}, {"a": [{"c": 1}, {"b": None}]})
    assert not matches({"a.b": {"$exists": True}}, {"a": [{"c": 1}, 5, []]})
    assert matches({"a.b": {"$exists": False}}, {"a": 5})
    assert matches({"a.1": {"$exists": True}}, {"a": [0, 1]})
    assert not matches({"a.2": {"$exists": True}}, {"a": [0, 1]})


def test_not_negates_the_whole_expression() -> None:
    condition = {"$not": {"$gt": 5}}
    assert matches({"a": condition}, {"a": 3})
    assert matches({"a": condition}, {})
    assert matches({"a": condition}, {"a": "x"})
    assert not matches({"a": condition}, {"a": 6})
    assert not matches({"a": condition}, {"a": [1, 6]})
    between = {"$not": {"$gte": 1, "$lte": 3}}
    assert matches({"a": between}, {"a": 4})
    assert not matches({"a": between}, {"a": 2})
    assert matches({"a.b": {"$not": {"$eq": 1}}}, {"a": [{"b": 2}]})
    assert not matches({"a.b": {"$not": {"$eq": 1}}}, {"a": [{"b": 2}, {"b": 1}]})
    assert matches({"a": {"$not": {"$not": {"$eq": 1}}}}, {"a": 1})


def test_logical_operators() -> None:
    filter = {
        "kind": "user",
        "$or": [{"age": {"$lt": 18}}, {"$and": [{"role": "admin"}, {"active": True}]}],
    }
    assert matches(filter, {"kind": "user", "age": 10})
    assert matches(filter, {"kind": "user", "age": 40, "role": "admin", "active": True})
    assert not matches(filter, {"kind": "user", "age": 40, "role": "admin", "active": 1})
    assert not matches(filter, {"kind": "bot", "age": 10})
    assert matches({"$and": [{"a": 1}, {"a": {"$gt": 0}}]}, {"a": 1})
    assert not matches({"$and": [{"a": 1}, {"a": 2}]}, {"a": 1})
    assert matches({"$and": [{}]}, {"a": 1})
    assert matches({"$or": [{"a": 2}, {}]}, {"a": 1})
    assert matches({"$or": [{"a": 2}, {"a": 1}, {"b": 3}]}, {"a": 1})
    assert not matches({"$or": [{"a": 2}, {"b": 3}, {"c": 4}]}, {"a": 1})


# ---------------------------------------------------------------------------------------------
# Paths


def test_dotted_paths() -> None:
    doc = {
        "user": {"address": {"city": "Oslo"}},
        "items": [{"qty": 5, "tags": ["a"]}, {"qty": 1}],
        "tags": [{"name": "x"}, {"name": "y"}, "loose"],
        "grid": [[1, 2], [3]],
        "obj": {"0": "zero"},
    }
    assert matches({"user.address.city": "Oslo"}, doc)
    assert not matches({"user.address.zip": {"$exists": True}}, doc)
    assert matches({"items.0.qty": 5}, doc)
    assert matches({"items.1.qty": 1}, doc)
    assert not matches({"items.0.qty": 1}, doc)
    assert matches({"items.2.qty": None}, doc)
    assert matches({"items.qty": 1}, doc)
    assert matches({"items.qty": {"$gt": 4}}, doc)
    assert matches({"items.tags": "a"}, doc)
    assert matches({"tags.name": "x"}, doc)
    assert not matches({"tags.name": "z"}, doc)
    assert matches({"grid.0": [1, 2]}, doc)
    assert matches({"grid.1.0": 3}, doc)
    assert matches({"grid.0": 2}, doc)
    assert matches({"obj.0": "zero"}, doc)
    assert matches({"user.address.city.x": None}, doc)
    # "01" is not an index, so it is looked up in each element
    assert matches({"items.01": None}, doc)
    assert not matches({"items.01": {"$exists": True}}, doc)


def test_negations_hold_for_no_leaf_of_a_fanned_out_path() -> None:
    doc = {"a": [{"b": 1}, {"b": 2}, {"c": 3}]}
    assert not matches({"a.b": {"$ne": 1}}, doc)
    assert not matches({"a.b": {"$nin": [1, 7]}}, doc)
    assert not matches({"a.b": {"$exists": False}}, doc)
    assert not matches({"a.b": {"$not": {"$gt": 1}}}, doc)
    assert matches({"a.b": {"$ne": 5}}, doc)
    assert matches({"a.b": {"$nin": [5]}}, doc)
    assert matches({"a.c": {"$ne": 1}}, doc)


def test_fan_out_reaches_missing_for_elements_without_the_field() -> None:
    assert matches({"a.b": None}, {"a": [{"b": 1}, {"c": 1}]})
    assert matches({"a.b": None}, {"a": []})
    assert matches({"a.b": None}, {"a": [1]})
    assert not matches({"a.b": None}, {"a": [{"b": 1}]})
    assert matches({"a.b": {"$ne": None}}, {"a": [{"b": 1}]})
    # one level of implicit traversal only
    assert not matches({"a.b": 1}, {"a": [[{"b": 1}]]})


def test_predicate_does_not_special_case_id() -> None:
    assert matches({"id": 1}, {"id": 1})
    assert not matches({"id": 1}, {"_id": 1})


def test_compile_value_condition() -> None:
    test = compile_value_condition({"$gte": 5}, "scores")
    assert test(5)
    assert not test(True)
    assert test([1, 9])
    assert not test("9")
    with pytest.raises(ValueError, match="scores"):
        compile_value_condition({"gte": 5}, "scores")


# ---------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize("op", ["$regex", "$elemMatch", "$size", "$type", "$all", "$mod", "$foo"])
def test_unknown_field_operator_is_rejected(op: str) -> None:
    with pytest.raises(ValueError, match=rf"unsupported query operator '\{op}'") as info:
        compile_filter({"name": {op: "x"}})
    assert "name" in str(info.value)


@pytest.mark.parametrize("op", ["$where", "$nor", "$text", "$expr", "$not", "$eq"])
def test_unknown_top_level_operator_is_rejected(op: str) -> None:
    with pytest.raises(ValueError, match=rf"unsupported query operator '\{op}'"):
        compile_filter({op: [{"a": 1}]})


def test_unknown_operator_deep_inside_is_found_at_compile_time() -> None:
    with pytest.raises(ValueError, match=r"'\$regex'"):
        compile_filter({"$or": [{"a": 1}, {"$and": [{"b": {"$not": {"$regex": "x"}}}]}]})
    with pytest.raises(ValueError, match=r"'\$and'.*'a'"):
        compile_filter({"a": {"$and": [{"$gt": 1}]}})


@pytest.mark.parametrize(
    ("filter", "words"),
    [
        ({"tags": {"$in": "x"}}, ["$in", "tags"]),
        ({"tags": {"$in": None}}, ["$in", "tags"]),
        ({"tags": {"$nin": {"a": 1}}}, ["$nin", "tags"]),
        ({"flag": {"$exists": 1}}, ["$exists", "flag"]),
        ({"flag": {"$exists": "yes"}}, ["$exists", "flag"]),
        ({"age": {"$not": 5}}, ["$not", "age"]),
        ({"age": {"$not": {}}}, ["$not", "age"]),
        ({"age": {"$not": {"b": 1}}}, ["$not", "age"]),
        ({"age": {"$gt": 1, "b": 2}}, ["age"]),
        ({"age": {"b": 2, "$gt": 1}}, ["age"]),
        ({"$and": {"a": 1}}, ["$and"]),
        ({"$and": []}, ["$and"]),
        ({"$or": []}, ["$or"]),
        ({"$or": "a"}, ["$or"]),
        ({"$or": [{"a": 1}, 5]}, ["$or"]),
        ({"when": {"$gt": object()}}, ["$gt", "when"]),
        ({"when": object()}, ["when"]),
        ({"a..b": 1}, ["a..b"]),
        ({"": 1}, ["''"]),
    ],
)
def test_malformed_operands_are_rejected(filter: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(ValueError, match=re.escape(words[0])) as info:
        compile_filter(filter)
    for word in words:
        assert word in str(info.value)


def test_filter_must_be_an_object() -> None:
    with pytest.raises(ValueError, match="object"):
        compile_filter([("a", 1)])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# equality_terms


def test_equality_terms() -> None:
    filter = {
        "status": "active",
        "n": 3,
        "flag": True,
        "gone": None,
        "ratio": {"$eq": 0.5, "$lt": 1},
        "range": {"$gt": 1},
        "obj": {"x": 1},
        "arr": [1],
        "eq_obj": {"$eq": {"x": 1}},
        "nested.path": "v",
        "$and": [{"x": 1}, {"$and": [{"y": "deep"}]}, {"status": "other"}],
        "$or": [{"z": 1}],
    }
    assert equality_terms(filter) == {
        "status": "active",
        "n": 3,
        "flag": True,
        "gone": None,
        "ratio": 0.5,
        "nested.path": "v",
        "x": 1,
        "y": "deep",
    }
    assert equality_terms(None) == {}
    assert equality_terms({}) == {}
    assert equality_terms({"a": {"$not": {"$eq": 1}}}) == {}
    assert type(equality_terms({"flag": True})["flag"]) is bool


# ---------------------------------------------------------------------------------------------
# compare_values and sort_documents


def test_compare_values_bracket_order() -> None:
    ordered = [None, NAN, -math.inf, -1, 0, 0.5, 1, "", "B", "a", "ab", {}, {"a": 1}, {"a": 2},
               {"b": 0}, [], [1], [1, 2], [2], ["a"], False, True]  # fmt: skip
    for i, low in enumerate(ordered):
        for high in ordered[i + 1 :]:
            assert compare_values(low, high) == -1, (low, high)
            assert compare_values(high, low) == 1, (low, high)
    assert compare_values(1, 1.0) == 0
    assert compare_values(True, 1) == 1
    assert compare_values(False, 0) == 1
    assert compare_values({"a": 1, "b": 2}, {"b": 2, "a": 1}) == 0
    assert compare_values(NAN, float("nan")) == 0


def test_compare_values_rejects_non_json() -> None:
    with pytest.raises(TypeError, match="not a JSON value"):
        compare_values(object(), 1)
    with pytest.raises(TypeError):
        compare_values((1, 2), [1, 2])


def test_sort_mixed_types() -> None:
    docs: list[dict[str, Any]] = [
        {"v": True},
        {"v": "b"},
        {"v": 2},
        {},
        {"v": None},
        {"v": {"x": 1}},
        {"v": 1.5},
    ]
    docs += [{"v": False}, {"v": "a"}]
    ascending = sort_documents(docs, {"v": 1})
    assert [d.get("v", "missing") for d in ascending] == [
        "missing", None, 1.5, 2, "a", "b", {"x": 1}, False, True
    ]  # fmt: skip
    descending = sort_documents(docs, [("v", -1)])
    # missing and null tie, so they keep their input order in both directions
    assert [d.get("v", "missing") for d in descending] == [
        True, False, {"x": 1}, "b", "a", 2, 1.5, "missing", None
    ]  # fmt: skip


def test_sort_arrays_by_smallest_or_largest_element() -> None:
    docs: list[dict[str, Any]] = [
        {"n": "p", "v": [5, 1]},
        {"n": "q", "v": 3},
        {"n": "r", "v": [2, 9]},
        {"n": "s", "v": []},
    ]
    assert [d["n"] for d in sort_documents(docs, {"v": 1})] == ["s", "p", "r", "q"]
    assert [d["n"] for d in sort_documents(docs, {"v": -1})] == ["r", "p", "q", "s"]


def test_sort_by_several_fields_is_stable() -> None:
    docs: list[dict[str, Any]] = [
        {"i": 0, "a": 1, "b": "x"},
        {"i": 1, "a": 2, "b": "y"},
        {"i": 2, "a": 1, "b": "y"},
        {"i": 3, "a": 2, "b": "y"},
        {"i": 4, "a": 1, "b": "x"},
    ]
    result = sort_documents(docs, {"a": -1, "b": 1})
    assert [d["i"] for d in result] == [1, 3, 0, 4, 2]
    assert [d["i"] for d in sort_documents(docs, {})] == [0, 1, 2, 3, 4]
    assert docs[0]["i"] == 0
    assert result is not docs


def test_sort_by_dotted_paths() -> None:
    docs: list[dict[str, Any]] = [
        {"i": 0, "u": {"age": 30}},
        {"i": 1, "u": [{"age": 50}, {"age": 10}]},
        {"i": 2, "u": {"age": 20}},
        {"i": 3},
    ]
    assert [d["i"] for d in sort_documents(docs, {"u.age": 1})] == [3, 1, 2, 0]
    assert [d["i"] for d in sort_documents(docs, {"u.age": -1})] == [1, 0, 2, 3]
    docs = [{"i": 0, "l": [3, 4]}, {"i": 1, "l": [1, 9]}]
    assert [d["i"] for d in sort_documents(docs, {"l.1": 1})] == [0, 1]


@pytest.mark.parametrize("direction", [0, 2, True, "asc", 1.0, None])
def test_sort_direction_must_be_one_or_minus_one(direction: Any) -> None:
    with pytest.raises(ValueError, match="'age'"):
        sort_documents([{"age": 1}], {"age": direction})


def test_sort_spec_must_be_pairs() -> None:
    with pytest.raises(ValueError, match="'age'"):
        sort_documents([], "age")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pair"):
        sort_documents([], [("age", 1, 2)])  # type: ignore[list-item]


# ---------------------------------------------------------------------------------------------
# Projection

DOC = {"_id": 7, "name": "Ann", "age": 30, "addr": {"city": "Oslo", "zip": "0150"},
       "items": [{"sku": "a", "qty": 1}, {"sku": "b"}, 5, [{"sku": "c", "qty": 2}]]}  # fmt: skip


def test_projection_none_or_empty_is_a_shallow_copy() -> None:
    projections: list[dict[str, Any] | None] = [None, {}]
    for projection in projections:
        result = apply_projection(DOC, projection)
        assert result == DOC
        assert result is not DOC
        assert result["addr"] is DOC["addr"]


def test_inclusion_projection() -> None:
    assert apply_projection(DOC, {"name": 1, "addr.city": True}) == {
        "_id": 7,
        "name": "Ann",
        "addr": {"city": "Oslo"},
    }
    assert apply_projection(DOC, {"name": 1, "_id": 0}) == {"name": "Ann"}
    assert apply_projection(DOC, {"_id": 1}) == {"_id": 7}
    assert apply_projection(DOC, {"items.qty": 1, "_id": False}) == {
        "items": [{"qty": 1}, {}, [{"qty": 2}]]
    }
    assert apply_projection(DOC, {"nope": 1}) == {"_id": 7}
    assert apply_projection(DOC, {"name.first": 1, "_id": 0}) == {}
    # output keeps the document's key order
    assert list(apply_projection(DOC, {"age": 1, "name": 1})) == ["_id", "name", "age"]


def test_exclusion_projection() -> None:
    before = copy.deepcopy(DOC)
    assert apply_projection(DOC, {"age": 0, "addr.zip": False}) == {
        "_id": 7,
        "name": "Ann",
        "addr": {"city": "Oslo"},
        "items": DOC["items"],
    }
    assert apply_projection(DOC, {"_id": 0}) == {k: v for k, v in DOC.items() if k != "_id"}
    result = apply_projection(DOC, {"items.qty": 0, "_id": 0, "name": 0, "age": 0, "addr": 0})
    assert result == {"items": [{"sku": "a"}, {"sku": "b"}, 5, [{"sku": "c"}]]}
    assert apply_projection(DOC, {"age": 0, "_id": 1})["_id"] == 7
    assert before == DOC


@pytest.mark.parametrize(
    ("projection", "word"),
    [
        ({"a": 1, "b": 0}, "mix"),
        ({"a": 0, "b": 1}, "mix"),
        ({"a": 2}, "'a'"),
        ({"a": "yes"}, "'a'"),
        ({"a": 1.0}, "'a'"),
        ({"a": 1, "a.b": 1}, "'a.b'"),
        ({"a.b": 0, "a": 0}, "'a'"),
        ({"a..b": 1}, "'a..b'"),
    ],
)
def test_invalid_projection(projection: dict[str, Any], word: str) -> None:
    with pytest.raises(ValueError, match=re.escape(word)):
        apply_projection(DOC, projection)


def test_compile_projection_reuses_one_validation() -> None:
    project = compile_projection({"name": 1})
    assert [project(d) for d in ({"_id": 1, "name": "x", "y": 2}, {"z": 1})] == [
        {"_id": 1, "name": "x"},
        {},
    ]


def test_mapping_documents_are_accepted() -> None:
    class Doc(Mapping[str, Any]):
        def __init__(self, data: dict[str, Any]) -> None:
            self._data = data

        def __getitem__(self, key: str) -> Any:
            return self._data[key]

        def __iter__(self) -> Any:
            return iter(self._data)

        def __len__(self) -> int:
            return len(self._data)

    doc = Doc({"a": 1, "b": {"c": [2]}})
    assert compile_filter({"a": 1, "b.c": 2})(doc)
    assert apply_projection(doc, {"a": 1}) == {"a": 1}
