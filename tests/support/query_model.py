"""A naive reference model of the document query language, written from the rules.

The property tests of ``platform_shim.services.query`` and ``.update`` compare the real code
with these functions: no closures, no sort keys, just the semantics spelled out. ``ABSENT`` is
what a path reaches when nothing is there (unlike ``None``, a stored null).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

# ---------------------------------------------------------------------------------------------
# The reference model


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
# Shared by the generators


def pick(*choices: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Draw from one of ``choices`` with equal odds (``one_of`` favours its first branches)."""
    return st.sampled_from(choices).flatmap(lambda chosen: chosen)


KEYS = ["a", "b", "c", "0", "1"]


def sub_values(value: Any) -> list[Any]:
    found = [value]
    children = (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    )
    for child in children:
        found.extend(sub_values(child))
    return found
