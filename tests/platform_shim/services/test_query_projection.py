"""Tests of platform_shim.services.query projections: inclusion, exclusion, validation."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from platform_shim.services.query import apply_projection, compile_projection

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
