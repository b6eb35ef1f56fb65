"""The lines of an archive segment (``store/archive.py``): one entry is two JSON lines,

    {"key", "order", "at", "tags": [...], "head"}     what the index is rebuilt from, and the head
    {"key", "body"}                                    the body, read only with the whole entry

so a page reads heads alone and rebuilding the index never parses a body.

Invariant: **every segment ever written stays readable.** Segments are append-only and never
rewritten; those written before 2026-12 spell the keys ``k``, ``o``, ``a``, ``t``, ``h`` and
``b``, and an old segment gets new entries appended in today's keys, so a segment may hold both.
Everything that reads a line goes through ``entry_of``, ``head_of`` and ``body_of``, which
accept both; ``encode`` writes today's keys only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

import orjson

__all__ = ["ArchiveEntry", "BodyLine", "HeadLine", "body_of", "encode", "entry_of", "head_of"]


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One archived record: ``head`` and ``body`` are JSON (bytes); ``order`` sorts pages
    (newest = highest first), ``at`` is what retention compares, ``tags`` what pages filter by."""

    key: str
    order: int
    at: int
    tags: tuple[str, ...]
    head: bytes
    body: bytes


class HeadLine(TypedDict):
    """An entry's first line."""

    key: str
    order: int
    at: int
    tags: list[str]
    head: Any  # the entry's head (JSON)


class BodyLine(TypedDict):
    """An entry's second line."""

    key: str
    body: Any  # the entry's body (JSON)


# Today's key -> the key segments written before 2026-12 used.
_OLD_KEYS = {"key": "k", "order": "o", "at": "a", "tags": "t", "head": "h", "body": "b"}


def _field(line: dict[str, Any], key: str) -> Any:
    if key in line:
        return line[key]
    return line[_OLD_KEYS[key]]


def encode(entry: ArchiveEntry) -> tuple[bytes, bytes]:
    """The entry's two lines (without their newlines), in today's keys."""
    head = HeadLine(
        key=entry.key,
        order=entry.order,
        at=entry.at,
        tags=list(entry.tags),
        head=orjson.Fragment(entry.head),
    )
    body = BodyLine(key=entry.key, body=orjson.Fragment(entry.body))
    return orjson.dumps(head), orjson.dumps(body)


def entry_of(head_line: bytes, body_line: bytes) -> ArchiveEntry:
    """What the index needs of an entry (its head and body left empty). Raises
    ``orjson.JSONDecodeError``, ``KeyError``, ``TypeError`` or ``ValueError`` for a damaged one."""
    head = orjson.loads(head_line)
    body = orjson.loads(body_line)
    key = _field(head, "key")
    if _field(body, "key") != key:
        raise ValueError("head and body name different keys")
    return ArchiveEntry(
        key, _field(head, "order"), _field(head, "at"), tuple(_field(head, "tags")), b"", b""
    )


def head_of(line: Any) -> Any:
    """The head held by a parsed first line."""
    return _field(line, "head")


def body_of(line: Any) -> Any:
    """The body held by a parsed second line."""
    return _field(line, "body")
