"""Which lines of a damaged log keep their place in its order.

A log whose records carry a sequence number (the event stream's ``id``) is written with those
numbers strictly increasing in file order. A damaged line (a hand edit, a copied line, a bad
disk) may claim any number. Trusting the first number read would let one line claiming a high
number push every intact line after it out of order, and a loader that skips lines out of order
would then lose all of them. So the lines kept are a longest run of lines whose numbers
increase: a damaged line costs itself alone, wherever it sits and whatever it claims.

Several runs can be longest. A damaged second-to-last line claiming a high number, or a damaged
second line claiming a low one, makes a run of the same length with it as without it; the run
kept is then one that leaves room for the numbers of the lines it drops (a line dropped between
kept lines numbered 5 and 6 cannot have had a number of its own: that run is the wrong one), and
among those the one spanning fewer numbers (intact numbers are dense: each is the last plus
one, gaps come only from compaction). Where two lines claim the same number that rule cannot
choose, and the earlier line is kept, as a reader going from the top would keep it.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence

__all__ = ["longest_increasing"]


def longest_increasing(keys: Sequence[int]) -> set[int]:
    """Positions in ``keys`` of a longest strictly increasing subsequence (module docstring).

    O(n log n): one pass from each end, each giving a longest run; the narrower one wins.
    """
    earliest = _from_the_end(keys)
    smallest = _from_the_start(keys)
    if not earliest:
        return earliest

    def span(kept: set[int]) -> int:
        return keys[max(kept)] - keys[min(kept)]

    fits_smallest, fits_earliest = _fits(keys, smallest), _fits(keys, earliest)
    if fits_smallest != fits_earliest:
        return smallest if fits_smallest else earliest
    return smallest if span(smallest) < span(earliest) else earliest


def _fits(keys: Sequence[int], kept: set[int]) -> bool:
    """Whether the lines left out of ``kept`` could have had numbers of their own: between two
    kept lines ``p`` and ``q`` there must be room for the ``q - p - 1`` dropped between them."""
    ordered = sorted(kept)
    return all(keys[q] - keys[p] >= q - p for p, q in itertools.pairwise(ordered))


def _from_the_start(keys: Sequence[int]) -> set[int]:
    """A longest run ending in the smallest possible numbers (later lines win ties)."""
    tails: list[int] = []  # tails[k]: smallest last key of a run of k+1 keys so far
    tails_pos: list[int] = []
    before: list[int] = [-1] * len(keys)
    for position, key in enumerate(keys):
        slot = bisect.bisect_left(tails, key)
        before[position] = tails_pos[slot - 1] if slot else -1
        if slot == len(tails):
            tails.append(key)
            tails_pos.append(position)
        else:
            tails[slot] = key
            tails_pos[slot] = position
    return _chain(tails_pos[-1] if tails_pos else -1, before)


def _from_the_end(keys: Sequence[int]) -> set[int]:
    """A longest run starting at the largest possible numbers (earlier lines win ties).

    The same algorithm read backwards, on negated keys: a longest decreasing run from the end."""
    tails: list[int] = []
    tails_pos: list[int] = []
    after: list[int] = [-1] * len(keys)
    for position in range(len(keys) - 1, -1, -1):
        negated = -keys[position]
        slot = bisect.bisect_left(tails, negated)
        after[position] = tails_pos[slot - 1] if slot else -1
        if slot == len(tails):
            tails.append(negated)
            tails_pos.append(position)
        else:
            tails[slot] = negated
            tails_pos[slot] = position
    return _chain(tails_pos[-1] if tails_pos else -1, after)


def _chain(position: int, link: list[int]) -> set[int]:
    kept: set[int] = set()
    while position != -1:
        kept.add(position)
        position = link[position]
    return kept
