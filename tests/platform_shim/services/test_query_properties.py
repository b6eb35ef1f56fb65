"""Property tests of platform_shim.services.query: the compiled filters, equality terms,
value order and sort agree with the naive reference model in ``tests/support/query_model.py``.

Hypothesis strategies draw documents and filters aimed at each other; a seeded bulk check draws
far more pairs from plain random generators.
"""

from __future__ import annotations

import functools
import math
import random
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from platform_shim.services.compare import sort_key, values_equal
from platform_shim.services.query import (
    compare_values,
    compile_filter,
    equality_terms,
    sort_documents,
)
from tests.support.query_backends import QueryBackend, stored
from tests.support.query_model import (
    ABSENT,
    KEYS,
    pick,
    ref_cmp,
    ref_leaves,
    ref_match,
    sub_values,
)

NAN = float("nan")


# ---------------------------------------------------------------------------------------------
# Strategies


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
@pytest.mark.slow
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


def ref_sorted(docs: list[dict[str, Any]], spec: list[tuple[str, int]]) -> list[dict[str, Any]]:
    """``docs`` sorted by the reference model (stable: ties keep their order)."""

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

    return sorted(docs, key=functools.cmp_to_key(compare_docs))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(documents, max_size=8),
    st.lists(st.tuples(paths, st.sampled_from([1, -1])), min_size=1, max_size=2),
)
def test_sort_agrees_with_reference(
    docs: list[dict[str, Any]], spec: list[tuple[str, int]]
) -> None:
    expected = ref_sorted(docs, spec)
    result = sort_documents(docs, spec)
    assert [id(doc) for doc in result] == [id(doc) for doc in expected]


# ---------------------------------------------------------------------------------------------
# Seeded bulk comparison

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


# ---------------------------------------------------------------------------------------------
# The same properties through the database service, on each store: the in-memory evaluator on
# the memory store, PostgreSQL on the PostgreSQL store (``tests/support/query_backends.py``).


def exactly(docs: list[dict[str, Any]]) -> bytes:
    """JSON text: equal only for the same values, types (true is not 1) and key order."""
    return orjson.dumps(docs)


BACKEND = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@BACKEND
@given(docs_and_filter())
def test_find_agrees_with_reference_on_each_store(
    backend: QueryBackend, case: tuple[list[dict[str, Any]], dict[str, Any]]
) -> None:
    docs, filter = case
    docs = [stored(doc) for doc in [*docs, *map(swapped, docs)]]
    expected = [doc for doc in docs if ref_match(filter, doc)]
    name = backend.load(docs)
    assert exactly(backend.query(name, filter)) == exactly(expected), filter
    assert backend.run(backend.platform.database.count(name, filter)) == len(expected)


@BACKEND
@given(
    st.lists(documents, max_size=8),
    st.lists(st.tuples(paths, st.sampled_from([1, -1])), min_size=1, max_size=2),
    st.integers(0, 3),
    st.integers(0, 4),
)
def test_sort_skip_limit_agree_with_reference_on_each_store(
    backend: QueryBackend,
    docs: list[dict[str, Any]],
    spec: list[tuple[str, int]],
    skip: int,
    limit: int,
) -> None:
    docs = [stored(doc) for doc in docs]
    expected = ref_sorted(docs, spec)[skip:]
    if limit:
        expected = expected[:limit]
    found = backend.find(docs, None, sort=spec, skip=skip, limit=limit)
    assert exactly(found) == exactly(expected), spec


@settings(max_examples=8, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(st.integers(0, 2**32))
def test_find_agrees_with_reference_in_bulk_on_each_store(backend: QueryBackend, seed: int) -> None:
    rng = random.Random(seed)
    docs = [random_object(rng) for _ in range(20)]
    docs = [stored(doc) for doc in [*docs, *map(swapped, docs)]]
    name = backend.load(docs)
    for _ in range(40):
        filter = random_filter(rng, rng.choice(docs))
        expected = [doc for doc in docs if ref_match(filter, doc)]
        assert exactly(backend.query(name, filter)) == exactly(expected), filter
