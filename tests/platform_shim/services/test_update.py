"""Tests of platform_shim.services.update by example: every operator and every error.

``test_update_properties.py`` checks ``apply_update`` against a reference model.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from platform_shim.services.update import apply_update, compile_update

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
