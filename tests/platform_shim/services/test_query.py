"""Tests of platform_shim.services.query filters: equality, null and missing, the comparison
and logical operators, dotted paths, validation and equality terms, by example.

``test_query_properties.py`` checks the same rules against a reference model; sorting and
projection have their own modules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest

from platform_shim.services.query import (
    apply_projection,
    compile_filter,
    compile_value_condition,
    equality_terms,
)

NAN = float("nan")


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
