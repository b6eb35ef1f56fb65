"""Which lines of a damaged log keep their place in its order.

A log whose records carry a sequence number (the event stream's ``id``) is written with those
numbers strictly increasing in file order. A damaged line (a hand edit, a copied line, a bad
disk) may claim any number. Trusting the first number read would let one line claiming a high
number push every intact line after it out of order, and a loader that skips lines out of order
would then lose all of them. So the lines kept are the longest run of lines whose numbers
increase: a damaged line costs itself alone, wherever it sits and whatever it claims.

Where two choices keep as many lines (two lines claim the same number), the earlier line is
kept, as a reader going from the top would keep it.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

__all__ = ["longest_increasing"]


def longest_increasing(keys: Sequence[int]) -> set[int]:
    """Positions in ``keys`` of a longest strictly increasing subsequence, earliest on ties.

    O(n log n). Computed from the end as the longest strictly *decreasing* run read backwards,
    so that of two equal keys the one met last in that scan, the earlier position, wins its slot.
    """
    # tails[k]: the position whose key is the largest possible first key of a run of k+1
    # increasing keys starting there (kept as negated keys, so bisect sees an increasing list).
    tails_neg: list[int] = []
    tails_pos: list[int] = []
    after: list[int] = [-1] * len(keys)  # the next position in the run starting at each one
    for position in range(len(keys) - 1, -1, -1):
        negated = -keys[position]
        slot = bisect.bisect_left(tails_neg, negated)
        after[position] = tails_pos[slot - 1] if slot else -1
        if slot == len(tails_neg):
            tails_neg.append(negated)
            tails_pos.append(position)
        else:
            tails_neg[slot] = negated
            tails_pos[slot] = position
    kept: set[int] = set()
    position = tails_pos[-1] if tails_pos else -1
    while position != -1:
        kept.add(position)
        position = after[position]
    return kept
