"""Dotted field paths, read the way MongoDB queries read them.

What this module guarantees:

* ``parse_path`` accepts a non-empty string of non-empty, dot-separated segments and raises
  ``ValueError`` naming the path otherwise. A segment of ASCII digits without a leading zero
  (``"0"``, ``"12"``) can index a list; every segment can name an object key.
* ``resolve(doc, steps)`` returns every value the path reaches, never an empty list, and never
  mutates the document. An object step looks the key up; an index step on a list takes that
  element; a name step on a list is looked up in each element (one level deep, Mongo's implicit
  array traversal). Where the path cannot be followed (absent key, index out of range, a scalar,
  an empty list, an element that is not an object) the result holds ``MISSING`` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

__all__ = ["MISSING", "Steps", "list_index", "parse_path", "resolve"]


class _Missing:
    """The type of ``MISSING``: a path that reaches no value (distinct from a null value)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final[Any] = _Missing()
"""Stands for "no value here"; compare with ``is``."""

Steps = tuple[tuple[str, int | None], ...]
"""A parsed path: each segment with its list index, or ``None`` if it cannot index a list."""


def list_index(segment: str) -> int | None:
    """Return the list index a path segment denotes, or ``None`` if it is only a key."""
    if segment.isdigit() and segment.isascii() and (segment == "0" or segment[0] != "0"):
        return int(segment)
    return None


def parse_path(path: Any) -> Steps:
    """Split a dotted path into steps; ``ValueError`` names the path if it is malformed."""
    if not isinstance(path, str) or not path:
        raise ValueError(f"field path must be a non-empty string, got {path!r}")
    segments = path.split(".")
    if "" in segments:
        raise ValueError(f"field path {path!r} has an empty segment")
    return tuple((segment, list_index(segment)) for segment in segments)


def resolve(doc: Mapping[str, Any], steps: Steps) -> list[Any]:
    """Return the values ``steps`` reaches in ``doc``; ``MISSING`` marks a dead end."""
    values = [doc.get(steps[0][0], MISSING)]
    for name, index in steps[1:]:
        reached: list[Any] = []
        for value in values:
            if isinstance(value, dict):
                reached.append(value.get(name, MISSING))
            elif not isinstance(value, list) or not value:
                reached.append(MISSING)
            elif index is not None:
                reached.append(value[index] if index < len(value) else MISSING)
            else:
                for item in value:
                    reached.append(item.get(name, MISSING) if isinstance(item, dict) else MISSING)
        values = reached
    return values
