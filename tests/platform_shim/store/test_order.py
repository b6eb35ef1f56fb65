"""``store.order.longest_increasing``: which lines of a damaged log keep their place."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from platform_shim.store.order import longest_increasing


def _longest_by_brute_force(keys: list[int]) -> int:
    for size in range(len(keys), -1, -1):
        for chosen in itertools.combinations(keys, size):
            if all(a < b for a, b in itertools.pairwise(chosen)):
                return size
    return 0


@given(st.lists(st.integers(-3, 6), max_size=9))
def test_a_longest_strictly_increasing_run(keys: list[int]) -> None:
    kept = sorted(longest_increasing(keys))
    assert all(keys[a] < keys[b] for a, b in itertools.pairwise(kept))
    assert len(kept) == _longest_by_brute_force(keys)


@given(
    size=st.integers(3, 40),
    gaps=st.lists(st.integers(1, 3), min_size=40, max_size=40),
    where=st.integers(0, 39),
    claim=st.one_of(st.integers(-5, 200), st.integers(10**9, 2**63)),
)
def test_one_damaged_number_costs_that_line_alone(
    size: int, gaps: list[int], where: int, claim: int
) -> None:
    """Numbers as a log holds them (increasing, small gaps from compaction), one line claiming
    any other number: every other line is kept, unless the claim ties with a neighbour's or
    fits between them (then it is no damage to the order)."""
    keys = list(itertools.accumulate(gaps[:size]))
    where %= size
    before = keys[where - 1] if where else None
    after = keys[where + 1] if where + 1 < size else None
    if claim in (before, after) or (
        (before is None or before < claim) and (after is None or claim < after)
    ):
        return
    keys[where] = claim
    if _another_line_could_be_the_damaged_one(keys, where):
        return  # two worlds fit the file: no loader can tell which line was damaged
    kept = longest_increasing(keys)
    assert kept >= set(range(size)) - {where}, (keys, sorted(kept))


def _another_line_could_be_the_damaged_one(keys: list[int], where: int) -> bool:
    """Whether, keeping line ``where``, dropping one other line ``j`` leaves numbers that
    increase with room for ``j``'s own (so ``j`` damaged, ``where`` intact, is as good a story)."""
    for j in range(len(keys)):
        if j == where:
            continue
        rest = [(i, k) for i, k in enumerate(keys) if i != j]
        if all(a[1] < b[1] for a, b in itertools.pairwise(rest)):
            low = keys[j - 1] if j else None
            high = keys[j + 1] if j + 1 < len(keys) else None
            if low is None or high is None or high - low >= 2:
                return True
    return False


def test_the_issue_s_reproduction() -> None:
    # Ten puts, the first line's id changed from 1 to 9: only that line goes.
    assert longest_increasing([9, 2, 3, 4, 5, 6, 7, 8, 9, 10]) == set(range(1, 10))
    # A copied line: the first copy stays.
    assert longest_increasing([1, 2, 3, 3, 4]) == {0, 1, 2, 4}


def test_a_run_that_leaves_no_room_for_a_dropped_line_is_not_kept() -> None:
    """The first line claims 5 before lines 4, 6, 8: keeping it would drop line 4, which would
    then have had to be numbered between 5 and 6. Found by the property above (issue 14's CI)."""
    assert longest_increasing([5, 4, 6, 8]) == {1, 2, 3}
    assert longest_increasing([1, 2, 9, 3, 4]) == {0, 1, 3, 4}
