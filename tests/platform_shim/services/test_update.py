"""Tests of platform_shim.services.update: every operator, every error, and a reference model.

The property test compares ``apply_update`` with a naive reference that deep-copies the document
and edits the copy in place, and checks that neither the document nor the update is mutated.
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from platform_shim.services.update import apply_update, compile_update

NAN = float("nan")


# ---------------------------------------------------------------------------------------------
# Reference model


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT: Any = _Absent()


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


def is_index(segment: str) -> bool:
    return segment.isdigit() and (segment == "0" or not segment.startswith("0"))


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


def ref_eq_leaf(leaf: Any, target: Any) -> bool:
    if leaf is ABSENT:
        return target is None
    if canon(leaf) == canon(target):
        return True
    return isinstance(leaf, list) and any(canon(item) == canon(target) for item in leaf)


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


def pick(*choices: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Draw from one of ``choices`` with equal odds (``one_of`` favours its first branches)."""
    return st.sampled_from(choices).flatmap(lambda chosen: chosen)


KEYS = ["a", "b", "c", "0", "1"]
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


def sub_values(value: Any) -> list[Any]:
    found = [value]
    children = (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    )
    for child in children:
        found.extend(sub_values(child))
    return found


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
    ops = ["$set", "$unset", "$inc", "$push", "$addToSet", "$pull"]
    update: dict[str, dict[str, Any]] = {}
    taken: list[tuple[str, ...]] = []
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(ops))
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
UPDATE_OPS = ["$set", "$unset", "$inc", "$push", "$addToSet", "$pull"]


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


# ---------------------------------------------------------------------------------------------
# $set and $unset


def test_set_returns_a_new_document_and_copies_only_the_changed_path() -> None:
    doc = {"_id": 1, "a": {"b": 1, "c": [1]}, "d": {"e": 2}}
    before = copy.deepcopy(doc)
    result, modified = apply_update(doc, {"$set": {"a.b": 5}})
    assert modified
    assert result == {"_id": 1, "a": {"b": 5, "c": [1]}, "d": {"e": 2}}
    assert doc == before
    assert result["d"] is doc["d"]
    assert result["a"] is not doc["a"]


def test_set_creates_intermediate_objects() -> None:
    assert apply_update({}, {"$set": {"a.b.c": 1}}) == ({"a": {"b": {"c": 1}}}, True)
    assert apply_update({"a": {"x": 0}}, {"$set": {"a.0": 1}}) == ({"a": {"x": 0, "0": 1}}, True)


def test_set_copies_the_operand() -> None:
    value = {"tags": ["x"]}
    result, _ = apply_update({}, {"$set": {"v": value}})
    value["tags"].append("y")
    assert result == {"v": {"tags": ["x"]}}


@pytest.mark.parametrize(
    ("doc", "value", "modified"),
    [
        ({"a": 1}, 1, False),
        ({"a": 1}, 1.0, False),
        ({"a": 1}, True, True),
        ({"a": True}, 1, True),
        ({"a": {"x": 1, "y": 2}}, {"y": 2, "x": 1}, False),
        ({"a": [1, 2]}, [2, 1], True),
        ({"a": None}, None, False),
        ({}, None, True),
    ],
)
def test_set_same_value_is_not_a_modification(
    doc: dict[str, Any], value: Any, modified: bool
) -> None:
    result, changed = apply_update(doc, {"$set": {"a": value}})
    assert changed is modified
    if not modified:
        assert repr(result) == repr(doc)


def test_set_into_lists_by_index() -> None:
    doc: dict[str, Any] = {"items": [{"qty": 1}, {"qty": 2}], "n": [0, 1]}
    result, _ = apply_update(doc, {"$set": {"items.1.qty": 5, "n.0": 9}})
    assert result == {"items": [{"qty": 1}, {"qty": 5}], "n": [9, 1]}
    assert doc == {"items": [{"qty": 1}, {"qty": 2}], "n": [0, 1]}
    assert result["items"][0] is doc["items"][0]


@pytest.mark.parametrize(
    ("doc", "path", "words"),
    [
        ({"n": [0, 1]}, "n.2", ["n.2", "out of range"]),
        ({"n": [0, 1]}, "n.5.x", ["n.5.x", "out of range"]),
        ({"n": [0, 1]}, "n.x", ["n.x", "'x'"]),
        ({"n": [{"a": 1}]}, "n.a", ["n.a"]),
        ({"a": 5}, "a.b", ["a.b", "'a'"]),
        ({"a": None}, "a.b", ["a.b"]),
        ({"a": [1]}, "a.0.b", ["a.0.b"]),
    ],
)
def test_set_through_a_dead_end_is_an_error(
    doc: dict[str, Any], path: str, words: list[str]
) -> None:
    with pytest.raises(ValueError, match=re.escape(words[0])) as info:
        apply_update(doc, {"$set": {path: 1}})
    for word in words:
        assert word in str(info.value)


def test_unset() -> None:
    doc = {"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]}
    assert apply_update(doc, {"$unset": {"a": ""}}) == ({"b": {"c": 2, "d": 3}, "l": [1, 2]}, True)
    assert apply_update(doc, {"$unset": {"b.c": 1}})[0]["b"] == {"d": 3}
    assert apply_update(doc, {"$unset": {"l.0": True}})[0]["l"] == [None, 2]
    for path in ("zz", "b.zz", "a.b", "zz.y", "l.5", "l.x", "l.0.x"):
        result, modified = apply_update(doc, {"$unset": {path: ""}})
        assert not modified, path
        assert result == doc
    assert doc == {"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]}
    assert apply_update({"l": [None]}, {"$unset": {"l.0": ""}})[1] is False


# ---------------------------------------------------------------------------------------------
# $inc


def test_inc() -> None:
    result, modified = apply_update({"n": 1, "f": 1.5}, {"$inc": {"n": 2, "f": 1}})
    assert (result, modified) == ({"n": 3, "f": 2.5}, True)
    assert type(result["n"]) is int
    result, _ = apply_update({"n": 1}, {"$inc": {"n": 0.5}})
    assert result == {"n": 1.5}
    assert apply_update({}, {"$inc": {"a.b": -2}}) == ({"a": {"b": -2}}, True)
    assert apply_update({"l": [1, 2]}, {"$inc": {"l.1": 10}})[0] == {"l": [1, 12]}
    result, modified = apply_update({"n": 5}, {"$inc": {"n": 0}})
    assert not modified
    result, modified = apply_update({"n": 5}, {"$inc": {"n": 0.0}})
    assert not modified
    assert type(result["n"]) is int


@pytest.mark.parametrize("value", ["5", True, None, [1], {"x": 1}])
def test_inc_of_a_non_number_field_is_an_error(value: Any) -> None:
    with pytest.raises(ValueError, match="'count'"):
        apply_update({"count": value}, {"$inc": {"count": 1}})


@pytest.mark.parametrize("amount", ["1", True, None, [1]])
def test_inc_by_a_non_number_is_an_error(amount: Any) -> None:
    with pytest.raises(ValueError, match=r"\$inc.*'count'"):
        apply_update({"count": 1}, {"$inc": {"count": amount}})


# ---------------------------------------------------------------------------------------------
# $push and $addToSet


def test_push() -> None:
    doc = {"l": [1]}
    assert apply_update(doc, {"$push": {"l": 2}}) == ({"l": [1, 2]}, True)
    assert apply_update(doc, {"$push": {"l": [2, 3]}}) == ({"l": [1, [2, 3]]}, True)
    assert apply_update(doc, {"$push": {"l": {"$each": [2, 3]}}}) == ({"l": [1, 2, 3]}, True)
    assert apply_update(doc, {"$push": {"l": {"k": 1}}}) == ({"l": [1, {"k": 1}]}, True)
    assert apply_update(doc, {"$push": {"l": {"$each": []}}}) == ({"l": [1]}, False)
    assert apply_update(doc, {"$push": {"new.deep": "x"}})[0] == {"l": [1], "new": {"deep": ["x"]}}
    assert apply_update({}, {"$push": {"l": {"$each": []}}}) == ({"l": []}, True)
    assert doc == {"l": [1]}


def test_push_does_not_alias_the_original_list() -> None:
    doc = {"l": [1]}
    result, _ = apply_update(doc, {"$push": {"l": 2}})
    assert result["l"] is not doc["l"]
    assert doc["l"] == [1]


@pytest.mark.parametrize("op", ["$push", "$addToSet"])
def test_append_errors(op: str) -> None:
    with pytest.raises(ValueError, match=rf"\{op}.*'tags'"):
        apply_update({"tags": "x"}, {op: {"tags": 1}})
    with pytest.raises(ValueError, match=rf"\{op}.*'tags'"):
        apply_update({"tags": None}, {op: {"tags": 1}})
    with pytest.raises(ValueError, match=r"\$each"):
        apply_update({}, {op: {"tags": {"$each": "ab"}}})
    with pytest.raises(ValueError, match=r"'\$slice'"):
        apply_update({}, {op: {"tags": {"$each": [1], "$slice": 2}}})
    with pytest.raises(ValueError, match=r"'\$position'"):
        apply_update({}, {op: {"tags": {"$position": 0}}})


def test_add_to_set() -> None:
    doc = {"s": [1, "a", {"x": 1, "y": 2}]}
    assert apply_update(doc, {"$addToSet": {"s": "a"}}) == (doc, False)
    assert apply_update(doc, {"$addToSet": {"s": 1.0}}) == (doc, False)
    assert apply_update(doc, {"$addToSet": {"s": {"y": 2, "x": 1}}}) == (doc, False)
    result, modified = apply_update(doc, {"$addToSet": {"s": True}})
    assert modified
    assert result["s"][-1] is True
    result, _ = apply_update(doc, {"$addToSet": {"s": {"$each": ["b", "b", 1, 2]}}})
    assert result["s"] == [1, "a", {"x": 1, "y": 2}, "b", 2]
    assert apply_update({}, {"$addToSet": {"s": {"$each": [0, False, 0.0]}}})[0] == {
        "s": [0, False]
    }


# ---------------------------------------------------------------------------------------------
# $pull


def test_pull_by_value() -> None:
    doc = {"l": [1, 2, 1.0, True, [1], "1"]}
    assert apply_update(doc, {"$pull": {"l": 1}})[0] == {"l": [2, True, [1], "1"]}
    assert apply_update(doc, {"$pull": {"l": True}})[0] == {"l": [1, 2, 1.0, [1], "1"]}
    assert apply_update(doc, {"$pull": {"l": [1]}})[0] == {"l": [1, 2, 1.0, True, "1"]}
    assert apply_update(doc, {"$pull": {"l": 7}}) == (doc, False)


def test_pull_by_condition() -> None:
    doc = {"l": [1, 5, 7, True, "9", [3, 8]]}
    assert apply_update(doc, {"$pull": {"l": {"$gte": 5}}})[0] == {"l": [1, True, "9"]}
    assert apply_update(doc, {"$pull": {"l": {"$in": [1, "9"]}}})[0] == {"l": [5, 7, True, [3, 8]]}
    assert apply_update(doc, {"$pull": {"l": {"$not": {"$lt": 6}}}})[0] == {"l": [1, 5, [3, 8]]}


def test_pull_by_filter_on_object_elements() -> None:
    doc = {"r": [{"score": 8, "item": "B"}, {"score": 8, "item": "A"}, {"score": 3}, 8]}
    result, modified = apply_update(doc, {"$pull": {"r": {"score": 8, "item": "B"}}})
    assert modified
    assert result["r"] == [{"score": 8, "item": "A"}, {"score": 3}, 8]
    result, _ = apply_update(doc, {"$pull": {"r": {"score": {"$gt": 5}}}})
    assert result["r"] == [{"score": 3}, 8]
    assert apply_update(doc, {"$pull": {"r": {}}})[0] == {"r": [8]}


def test_pull_edge_cases() -> None:
    assert apply_update({}, {"$pull": {"l": 1}}) == ({}, False)
    assert apply_update({"a": 5}, {"$pull": {"a.l": 1}}) == ({"a": 5}, False)
    with pytest.raises(ValueError, match=r"\$pull.*'l'"):
        apply_update({"l": 5}, {"$pull": {"l": 5}})
    with pytest.raises(ValueError, match=r"'\$regex'"):
        apply_update({"l": []}, {"$pull": {"l": {"$regex": "x"}}})
    with pytest.raises(ValueError, match="'l'"):
        apply_update({"l": []}, {"$pull": {"l": {"$gt": 1, "x": 2}}})


# ---------------------------------------------------------------------------------------------
# Update-document validation


@pytest.mark.parametrize(
    "op", ["$rename", "$mul", "$min", "$max", "$currentDate", "$setOnInsert", "$pop", "$pullAll"]
)
def test_unsupported_operators(op: str) -> None:
    with pytest.raises(ValueError, match=rf"unsupported update operator '\{op}'"):
        apply_update({"a": 1}, {op: {"a": 1}})


def test_plain_update_is_set_of_each_field() -> None:
    result, modified = apply_update({"_id": 1, "a": 1, "b": 2}, {"a": 5, "c.d": 3})
    assert (result, modified) == ({"_id": 1, "a": 5, "b": 2, "c": {"d": 3}}, True)
    assert apply_update({"_id": 1, "a": 1}, {"_id": 1, "a": 1}) == ({"_id": 1, "a": 1}, False)


@pytest.mark.parametrize(
    ("update", "words"),
    [
        ({}, ["empty"]),
        ({"$set": {"a": 1}, "b": 2}, ["mix"]),
        ({"a": 1, "$set": {"b": 2}}, ["mix"]),
        ({"$set": 5}, ["$set"]),
        ({"$set": {"a": object()}}, ["$set", "'a'"]),
        ({"$set": {"a..b": 1}}, ["$set", "a..b"]),
        ({"$set": {"": 1}}, ["$set"]),
        ({"$set": {"a.$": 1}}, ["$set", "a.$"]),
        ({"$inc": {"a.$[].b": 1}}, ["$inc", "a.$[].b"]),
    ],
)
def test_malformed_updates(update: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(ValueError, match=re.escape(words[0])) as info:
        apply_update({"a": [1]}, update)
    for word in words:
        assert word in str(info.value)


def test_update_must_be_an_object() -> None:
    with pytest.raises(ValueError, match="object"):
        apply_update({}, [("$set", {})])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "update",
    [
        {"$set": {"a": 1}, "$inc": {"a": 1}},
        {"$set": {"a": 1}, "$unset": {"a.b": 1}},
        {"$set": {"a.b": 1, "a": {}}},
        {"$push": {"l.0": 1}, "$pull": {"l": 1}},
        {"$inc": {"x.y.z": 1}, "$addToSet": {"x.y": 1}},
    ],
)
def test_conflicting_paths(update: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="conflict"):
        apply_update({}, update)


def test_sibling_paths_do_not_conflict() -> None:
    update = {"$set": {"a.b": 1, "ab": 2}, "$inc": {"a.c": 1}, "$push": {"a.bb": 3}}
    result, _ = apply_update({"a": {"b": 0}}, update)
    assert result == {"a": {"b": 1, "c": 1, "bb": [3]}, "ab": 2}


@pytest.mark.parametrize("key", ["_id", "id"])
@pytest.mark.parametrize(
    "update",
    [
        {"$set": {"KEY": 2}},
        {"$set": {"KEY": True}},
        {"$unset": {"KEY": ""}},
        {"$inc": {"KEY": 1}},
        {"$set": {"KEY.x": 1}},
        {"KEY": 3},
    ],
)
def test_ids_are_immutable(key: str, update: dict[str, Any]) -> None:
    update = json.loads(json.dumps(update).replace("KEY", key))
    with pytest.raises(ValueError, match="_id is immutable"):
        apply_update({key: 1, "x": 0}, update)


def test_ids_may_be_written_unchanged_or_left_alone() -> None:
    assert apply_update({"_id": 1}, {"$set": {"_id": 1.0, "a": 1}}) == ({"_id": 1, "a": 1}, True)
    assert apply_update({"id": "k"}, {"$unset": {"_id": ""}}) == ({"id": "k"}, False)
    with pytest.raises(ValueError, match="_id is immutable"):
        apply_update({"_id": {"x": 1}}, {"$set": {"_id.x": 1}})
    with pytest.raises(ValueError, match="_id is immutable"):
        apply_update({}, {"$set": {"id": 1}})


def test_compile_update_applies_to_many_documents() -> None:
    updater = compile_update({"$inc": {"n": 1}, "$push": {"seen": "x"}})
    docs: list[dict[str, Any]] = [{"n": 1}, {}, {"n": 2, "seen": ["y"]}]
    results = [updater(doc) for doc in docs]
    assert results == [
        ({"n": 2, "seen": ["x"]}, True),
        ({"n": 1, "seen": ["x"]}, True),
        ({"n": 3, "seen": ["y", "x"]}, True),
    ]
    # each document gets its own copy of pushed values
    assert results[0][0]["seen"] is not results[1][0]["seen"]
    with pytest.raises(ValueError, match="'n'"):
        updater({"n": "many"})
