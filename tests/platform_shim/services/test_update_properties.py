"""Property tests of platform_shim.services.update against a reference model.

The reference deep-copies the document and edits the copy in place; ``apply_update`` must agree
with it, and must mutate neither the document nor the update. Hypothesis strategies draw
updates aimed at a document's own paths and values; a seeded bulk check draws many more from
plain random generators.
"""

from __future__ import annotations

import copy
import math
import random
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from platform_shim.services.update import apply_update
from tests.support.query_model import ABSENT, KEYS, is_index, pick, ref_eq_leaf, sub_values

NAN = float("nan")
UPDATE_OPS = ["$set", "$unset", "$inc", "$push", "$addToSet", "$pull"]


# ---------------------------------------------------------------------------------------------
# Reference model


def canon(value: Any) -> Any:
    """A form whose Python equality is JSON equality (1 == 1.0, true != 1, NaN == NaN)."""
    if value is None:
        return ("null",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("nan",) if value != value else ("num", value)
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, dict):
        return ("obj", sorted((key, canon(item)) for key, item in value.items()))
    return ("list", [canon(item) for item in value])


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def ref_walk(root: dict[str, Any], segments: list[str], create: bool) -> Any:
    node: Any = root
    for segment in segments[:-1]:
        if isinstance(node, dict):
            if segment not in node:
                if not create:
                    return None
                node[segment] = {}
            child = node[segment]
        elif is_index(segment) and int(segment) < len(node):
            child = node[int(segment)]
        elif create:
            raise ValueError("cannot traverse the list")
        else:
            return None
        if not isinstance(child, dict | list):
            if create:
                raise ValueError("cannot traverse a scalar")
            return None
        node = child
    return node


def ref_get(node: Any, segment: str) -> Any:
    if isinstance(node, dict):
        return node.get(segment, ABSENT)
    if is_index(segment) and int(segment) < len(node):
        return node[int(segment)]
    return ABSENT


def ref_put(node: Any, segment: str, value: Any) -> None:
    if isinstance(node, dict):
        node[segment] = value
    elif is_index(segment) and int(segment) < len(node):
        node[int(segment)] = value
    else:
        raise ValueError("bad list index")


def ref_pull_match(item: Any, condition: Any) -> bool:
    if isinstance(condition, dict) and "$gte" in condition:
        floor = condition["$gte"]
        candidates = [item] + (item if isinstance(item, list) else [])
        return any(is_number(c) and not math.isnan(c) and c >= floor for c in candidates)
    if isinstance(condition, dict) and "$in" in condition:
        return any(ref_eq_leaf(item, target) for target in condition["$in"])
    if isinstance(condition, dict):
        return isinstance(item, dict) and all(
            ref_eq_leaf(item.get(key, ABSENT), value) for key, value in condition.items()
        )
    return bool(canon(item) == canon(condition))


def ref_apply(doc: dict[str, Any], update: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    new = copy.deepcopy(doc)
    for op, fields in update.items():
        for path, arg in fields.items():
            segments = path.split(".")
            last = segments[-1]
            node = ref_walk(new, segments, create=op not in ("$unset", "$pull"))
            if node is None:
                continue
            old = ref_get(node, last)
            if op == "$set":
                ref_put(node, last, copy.deepcopy(arg))
            elif op == "$unset":
                if isinstance(node, dict):
                    node.pop(last, None)
                elif old is not ABSENT:
                    node[int(last)] = None
            elif op == "$inc":
                if not is_number(arg) or (old is not ABSENT and not is_number(old)):
                    raise ValueError("not a number")
                ref_put(node, last, arg if old is ABSENT else old + arg)
            elif op in ("$push", "$addToSet"):
                items = arg["$each"] if isinstance(arg, dict) and "$each" in arg else [arg]
                if old is ABSENT:
                    old = []
                if not isinstance(old, list):
                    raise ValueError("not a list")
                grown = list(old)
                for item in items:
                    if op == "$push" or all(canon(x) != canon(item) for x in grown):
                        grown.append(copy.deepcopy(item))
                ref_put(node, last, grown)
            elif op == "$pull" and old is not ABSENT:
                if not isinstance(old, list):
                    raise ValueError("not a list")
                ref_put(node, last, [item for item in old if not ref_pull_match(item, arg)])
    return new, canon(new) != canon(doc)


# ---------------------------------------------------------------------------------------------
# Strategies


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.sampled_from([0.0, 1.0, -1.5, NAN]),
    st.sampled_from(["", "a", "b"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
    ),
    max_leaves=8,
)
documents = st.dictionaries(st.sampled_from(KEYS), json_values, max_size=4)
paths = st.lists(st.sampled_from(KEYS), min_size=1, max_size=3).map(".".join)


def existing_paths(value: Any, prefix: str = "") -> list[str]:
    """Every path that reaches something in ``value`` by keys and list indexes."""
    found: list[str] = []
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, child in items:
        found.append(f"{prefix}{key}")
        if isinstance(child, dict | list):
            found.extend(existing_paths(child, f"{prefix}{key}."))
    return found


def containers(value: Any) -> set[int]:
    """The ids of every dict and list inside ``value``."""
    if isinstance(value, dict):
        return {id(value)}.union(*(containers(item) for item in value.values()))
    if isinstance(value, list):
        return {id(value)}.union(*(containers(item) for item in value))
    return set()


def operands(op: str, literals: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    if op == "$set":
        return literals
    if op == "$unset":
        return st.just("")
    if op == "$inc":
        return st.integers(-3, 3) | st.sampled_from([0.0, 1.5, True, "1"])
    if op in ("$push", "$addToSet"):
        return pick(literals, st.lists(literals, max_size=3).map(lambda items: {"$each": items}))
    return pick(
        literals,
        st.builds(lambda floor: {"$gte": floor}, st.integers(-2, 2)),
        st.builds(lambda targets: {"$in": targets}, st.lists(literals, max_size=3)),
        st.dictionaries(st.sampled_from(KEYS), literals, max_size=2),
    )


def conflicts(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    shorter = min(len(a), len(b))
    return a[:shorter] == b[:shorter]


@st.composite
def doc_and_update(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = draw(documents)
    literals = pick(json_values, st.sampled_from(sub_values(doc)))
    update: dict[str, dict[str, Any]] = {}
    taken: list[tuple[str, ...]] = []
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(UPDATE_OPS))
        path = draw(pick(st.sampled_from(existing_paths(doc)), paths) if doc else paths)
        segments = tuple(path.split("."))
        if any(conflicts(segments, other) for other in taken):
            continue
        taken.append(segments)
        update.setdefault(op, {})[path] = draw(operands(op, literals))
    return doc, update


# ---------------------------------------------------------------------------------------------
# Properties


def check_against_reference(doc: dict[str, Any], update: dict[str, Any]) -> None:
    doc_before, update_before = repr(doc), repr(update)
    try:
        expected: tuple[dict[str, Any], bool] | None = ref_apply(doc, update)
    except ValueError:
        expected = None
    try:
        result, modified = apply_update(doc, update)
    except ValueError:
        assert expected is None, ("the reference accepted this update", doc, update)
    else:
        assert expected is not None, ("the reference rejected this update", doc, update)
        assert canon(result) == canon(expected[0]), (doc, update)
        assert modified == expected[1], (doc, update)
        assert result is not doc
        # what an operator writes is a copy: later edits to the update cannot reach the result
        assert not containers(result) & (containers(update) - containers(doc)), (doc, update)
    assert repr(doc) == doc_before
    assert repr(update) == update_before


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc_and_update())
def test_apply_update_agrees_with_reference(case: tuple[dict[str, Any], dict[str, Any]]) -> None:
    check_against_reference(*case)


# Plain-random generators for a bulk check: many more (document, update) pairs per second than
# strategies give, at the price of shrinking. Hypothesis supplies (and remembers) the seeds.
SCALAR_CHOICES: list[Any] = [None, True, False, -2, -1, 0, 1, 2, 0.0, 1.0, -1.5, NAN, "", "a", "b"]


def random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth >= 2 or roll < 0.5:
        return rng.choice(SCALAR_CHOICES)
    if roll < 0.7:
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    if roll < 0.85:
        return random_object(rng, depth + 1)
    return [random_object(rng, depth + 1) for _ in range(rng.randint(1, 3))]


def random_object(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    return {rng.choice(KEYS): random_value(rng, depth) for _ in range(rng.randint(0, 4 - depth))}


def random_update(rng: random.Random, doc: dict[str, Any]) -> dict[str, Any]:
    """An update aimed at ``doc``: mostly its own paths and values, never conflicting paths."""
    paths = existing_paths(doc) or ["a"]
    pool = sub_values(doc)

    def literal() -> Any:
        return rng.choice(pool) if rng.random() < 0.4 else random_value(rng, 1)

    def operand(op: str) -> Any:
        if op == "$inc":
            return rng.choice([-2, 1, 3, 0, 0.5, 0.0, 1.0, True, "1"])
        if op in ("$push", "$addToSet") and rng.random() < 0.3:
            return {"$each": [literal() for _ in range(rng.randint(0, 3))]}
        if op == "$pull":
            return rng.choice(
                [
                    literal(),
                    {"$gte": rng.randint(-2, 2)},
                    {"$in": [literal(), literal()]},
                    {rng.choice(KEYS): literal()},
                ]
            )
        return "" if op == "$unset" else literal()

    update: dict[str, dict[str, Any]] = {}
    taken: list[tuple[str, ...]] = []
    for _ in range(rng.randint(1, 4)):
        if rng.random() < 0.75:
            path = rng.choice(paths)
        else:
            path = ".".join(rng.choice(KEYS) for _ in range(rng.randint(1, 3)))
        segments = tuple(path.split("."))
        if not any(conflicts(segments, other) for other in taken):
            taken.append(segments)
            op = rng.choice(UPDATE_OPS)
            update.setdefault(op, {})[path] = operand(op)
    return update


# Shrinking a seed teaches nothing and is slow; the failing document and update are in the message.
@settings(max_examples=30, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(st.integers(0, 2**32))
def test_apply_update_agrees_with_reference_in_bulk(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(100):
        doc = random_object(rng)
        check_against_reference(doc, random_update(rng, doc))
