"""Tests of platform_shim.services.query ordering: ``compare_values`` and ``sort_documents``."""

from __future__ import annotations

import math
from typing import Any

import pytest

from platform_shim.services.query import compare_values, sort_documents

NAN = float("nan")


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
