"""Tests of platform_shim.keypattern.

The property tests compare the compiled predicates with a reference matcher written here from
the rule alone ("``*`` matches any run, everything else is literal"): a memoized recursion over
(pattern position, key position), sharing no code or strategy with the module.
"""

from __future__ import annotations

import functools
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from platform_shim.keypattern import compile_key_pattern, key_pattern_prefix


def reference_match(pattern: str | None, key: str) -> bool:
    """Does ``key`` match ``pattern``? Dynamic programming straight from the definition."""
    if pattern is None:
        return True

    @functools.cache
    def rest(p: int, k: int) -> bool:
        if p == len(pattern):
            return k == len(key)
        if pattern[p] == "*":
            # The star takes nothing more, or one more character of the key.
            return rest(p + 1, k) or (k < len(key) and rest(p, k + 1))
        return k < len(key) and pattern[p] == key[k] and rest(p + 1, k + 1)

    return rest(0, 0)


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        (None, "", True),
        (None, "anything/at/all", True),
        ("*", "", True),
        ("*", "x/y/z", True),
        ("**", "abc", True),
        ("inv:*", "inv:", True),
        ("inv:*", "inv:42", True),
        ("inv:*", "inv:42:lines/3", True),
        ("inv:*", "inv", False),
        ("inv:*", "xinv:42", False),
        ("uploads/*", "uploads/a/b.png", True),
        ("uploads/*", "uploads", False),
        ("uploads/*", "upload/a", False),
        ("*.png", "uploads/a/b.png", True),
        ("*.png", ".png", True),
        ("*.png", "a.png.bak", False),
        ("*.png", "apng", False),  # "." is literal
        ("a*b*c", "abc", True),
        ("a*b*c", "a-b-c", True),
        ("a*b*c", "axxbyyc", True),
        ("a*b*c", "acb", False),
        ("a*b*c", "abcx", False),
        ("a*b*c", "ab", False),
        ("a*c", "ac", True),
        ("a*c", "abbbc", True),
        ("a*c", "a", False),
        ("ab*ba", "aba", False),  # head and tail may not overlap
        ("ab*ba", "abba", True),
        ("a**b", "ab", True),
        ("a**b", "a/x/b", True),
        ("*a*", "banana", True),
        ("*a*", "xyz", False),
        ("exact", "exact", True),
        ("exact", "exactly", False),
        ("exact", "Exact", False),
        ("", "", True),
        ("", "x", False),
        # Regex and glob metacharacters are plain characters.
        ("a.c", "abc", False),
        ("a.c", "a.c", True),
        ("a?c", "abc", False),
        ("a?c", "a?c", True),
        ("[ab]", "a", False),
        ("[ab]", "[ab]", True),
        ("[ab]*", "[ab]x", True),
        ("a+b", "aab", False),
        ("a+b", "a+b", True),
        ("(x|y)*", "(x|y)z", True),
        ("(x|y)*", "x", False),
        ("^a$*", "^a$b", True),
        ("*\\d", "x\\d", True),
        ("*\\d", "x5", False),
        ("{1,2}*", "{1,2}", True),
        ("a*.*b", "a.b", True),
        ("a*.*b", "axxb", False),
        ("*\n*", "line1\nline2", True),  # "*" crosses newlines too
        ("x*y", "x\ny", True),
        ("*é*", "café", True),
    ],
)
def test_examples(pattern: str | None, key: str, expected: bool) -> None:
    assert compile_key_pattern(pattern)(key) is expected
    assert reference_match(pattern, key) is expected


@pytest.mark.parametrize(
    ("pattern", "prefix"),
    [
        (None, ""),
        ("*", ""),
        ("", ""),
        ("inv:*", "inv:"),
        ("uploads/*/thumb", "uploads/"),
        ("*.png", ""),
        ("a*b*c", "a"),
        ("exact", "exact"),
        ("a.?[*", "a.?["),
    ],
)
def test_prefix_examples(pattern: str | None, prefix: str) -> None:
    assert key_pattern_prefix(pattern) == prefix


def test_many_stars_do_not_backtrack() -> None:
    # A ".*"-joined regex needs seconds here, and hours with a few more stars.
    match = compile_key_pattern("*a" * 12 + "*c")
    key = "a" * 5000
    started = time.perf_counter()
    assert match(key) is False
    assert match(key + "c") is True
    assert time.perf_counter() - started < 2.0  # microseconds in fact; generous for slow CI


# A small alphabet makes matches common and overlaps likely; "*" also appears in keys, where it
# is just a character. Metacharacters check that nothing is interpreted.
_ALPHABET = "ab/.*?[\\\n"
patterns = st.text(alphabet=_ALPHABET, max_size=10)
keys = st.text(alphabet=_ALPHABET, max_size=14)


@given(pattern=patterns, key=keys)
def test_agrees_with_reference(pattern: str, key: str) -> None:
    assert compile_key_pattern(pattern)(key) is reference_match(pattern, key)


@given(pattern=patterns, parts=st.lists(keys, max_size=4))
def test_agrees_with_reference_on_keys_built_to_match(pattern: str, parts: list[str]) -> None:
    # Random keys rarely match long patterns; fill the stars with random text to get matches.
    pieces = pattern.split("*")
    filled = pieces[0]
    for index, piece in enumerate(pieces[1:]):
        filled += (parts[index] if index < len(parts) else "") + piece
    assert reference_match(pattern, filled)
    assert compile_key_pattern(pattern)(filled) is True


@given(pattern=st.text(max_size=12).filter(lambda p: "*" not in p), key=st.text(max_size=12))
def test_pattern_without_star_matches_exactly_itself(pattern: str, key: str) -> None:
    match = compile_key_pattern(pattern)
    assert match(pattern) is True
    assert match(key) is (key == pattern)


@given(key=st.text())
def test_star_and_none_match_everything(key: str) -> None:
    assert compile_key_pattern("*")(key) is True
    assert compile_key_pattern(None)(key) is True


@given(pattern=patterns, key=keys)
def test_prefix_is_a_prefix_of_every_match(pattern: str, key: str) -> None:
    prefix = key_pattern_prefix(pattern)
    assert pattern.startswith(prefix)
    assert "*" not in prefix
    if compile_key_pattern(pattern)(key):
        assert key.startswith(prefix)


@given(pattern=patterns)
def test_prefix_is_everything_before_the_first_star(pattern: str) -> None:
    prefix = key_pattern_prefix(pattern)
    rest = pattern[len(prefix) :]
    assert rest == "" or rest.startswith("*")
