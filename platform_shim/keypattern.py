"""Key patterns: ``*`` matches any run of characters; every other character is itself.

Guarantee: :func:`compile_key_pattern` returns a pure predicate that decides a match in time
linear in the key for the common shapes and at most O(len(key) * len(pattern)) otherwise; a
pattern can never make matching slow the way a backtracking regex can. ``?``, ``[``, ``.``,
``+``, ``\\`` and every other character besides ``*`` are literal, and ``*`` matches ``/`` too, so
``uploads/*`` covers the whole ``uploads/`` tree. :func:`key_pattern_prefix` gives the literal
start every matching key shares, for narrowing a scan of sorted keys.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from functools import partial

__all__ = ["compile_key_pattern", "key_pattern_prefix"]

_STAR_RUN = re.compile(r"\*{2,}")


def _match_all(key: str) -> bool:
    return True


def _segment_matcher(parts: list[str]) -> Callable[[str], bool]:
    """Match ``parts`` joined by ``*``: a fixed head and tail with middles found in order.

    This replaces a ``.*``-joined regex on purpose: ``re`` backtracks, and a pattern such as
    ``*a*a*a*a*c`` took seconds on a 200-character key. For ``*``-only globs taking the
    leftmost occurrence of each middle part is always safe (it leaves the most room for the
    rest), so a single left-to-right pass of ``str.find`` decides the match.
    """
    head, *middles, tail = parts
    min_len = sum(map(len, parts))
    head_len = len(head)
    tail_len = len(tail)

    def match(key: str) -> bool:
        # The length check also keeps head and tail from overlapping ("ab*ba" vs "aba").
        if len(key) < min_len or not key.startswith(head) or not key.endswith(tail):
            return False
        pos = head_len
        end = len(key) - tail_len
        for middle in middles:
            found = key.find(middle, pos, end)
            if found < 0:
                return False
            pos = found + len(middle)
        return True

    return match


def compile_key_pattern(pattern: str | None) -> Callable[[str], bool]:
    """Return a predicate telling whether a key matches ``pattern``.

    ``None`` and ``"*"`` match every key. In a pattern, ``*`` matches any run of characters,
    including the empty run and runs containing ``/``; all other characters match only
    themselves (there are no character classes, ``?`` wildcards or escapes). A pattern without
    ``*`` matches exactly itself. The predicate is pure and safe to share between threads.
    """
    if pattern is None:
        return _match_all
    # "a**b" means the same as "a*b"; collapsing first lets more patterns take a fast path.
    pattern = _STAR_RUN.sub("*", pattern)
    if pattern == "*":
        return _match_all
    parts = pattern.split("*")
    if len(parts) == 1:
        return partial(operator.eq, pattern)
    if len(parts) == 2:
        head, tail = parts
        if not tail:
            return partial(_starts_with, head)
        if not head:
            return partial(_ends_with, tail)
    return _segment_matcher(parts)


def _starts_with(prefix: str, key: str) -> bool:
    return key.startswith(prefix)


def _ends_with(suffix: str, key: str) -> bool:
    return key.endswith(suffix)


def key_pattern_prefix(pattern: str | None) -> str:
    """Return the literal text before the first ``*`` of ``pattern`` (``""`` for ``None``).

    Every key that matches ``pattern`` starts with this prefix, so a scan of sorted keys can
    begin at the prefix and stop at the first key that no longer starts with it.
    """
    if pattern is None:
        return ""
    return pattern.split("*", 1)[0]
