"""An in-memory ``Archive``: entries by key, pages by tag (newest first), pruned by ``at``.

The memory store's counterpart of ``store/archive.py``, with the same promises: the first copy
of a key wins, only a writable archive adds, readers see every entry added so far. Entries
are kept as given (JSON bytes), so a reader gets its own parsed copy.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from platform_shim.errors import StoreError
from platform_shim.store.archive import ArchiveEntry

__all__ = ["ArchiveData", "MemoryArchive"]


class ArchiveData:
    """One archive's entries, shared by its writer and its readers."""

    def __init__(self) -> None:
        self.entries: dict[str, ArchiveEntry] = {}
        self.lock = threading.Lock()  # the worker adds from a thread while the loop reads


class MemoryArchive:
    """An ``Archive`` in a ``MemorySpace``: entries by key, pages by tag, newest first."""

    def __init__(self, data: ArchiveData, name: str, *, writable: bool) -> None:
        self._data = data
        self.name = name
        self.writable = writable

    def add(self, entries: list[ArchiveEntry]) -> int:
        if not self.writable:
            raise StoreError(None, f"archive {self.name!r} is open read-only")
        added = 0
        with self._data.lock:
            have = self._data.entries
            for entry in entries:
                if entry.key not in have:  # the first copy wins
                    have[entry.key] = entry
                    added += 1
        return added

    def known(self, keys: Iterable[str]) -> set[str]:
        have = self._data.entries
        return {key for key in keys if key in have}

    def order_of(self, key: str) -> int | None:
        entry = self._data.entries.get(key)
        return entry.order if entry is not None else None

    def head(self, key: str) -> Any:
        entry = self._data.entries.get(key)
        return orjson.loads(entry.head) if entry is not None else None

    def entry(self, key: str) -> tuple[Any, Any] | None:
        entry = self._data.entries.get(key)
        if entry is None:
            return None
        return orjson.loads(entry.head), orjson.loads(entry.body)

    def page(self, tag: str | None, before: int | None, limit: int) -> list[tuple[int, str, Any]]:
        below = before if before is not None else 1 << 62
        with self._data.lock:
            chosen = [
                entry
                for entry in self._data.entries.values()
                if entry.order < below and (tag is None or tag in entry.tags)
            ]
        chosen.sort(key=lambda entry: (entry.order, entry.key), reverse=True)
        return [(entry.order, entry.key, orjson.loads(entry.head)) for entry in chosen[:limit]]

    def count(self, tag: str = "") -> int:
        entries = list(self._data.entries.values())
        if not tag:
            return len(entries)
        return sum(1 for entry in entries if tag in entry.tags)

    def prune(self, cutoff: int) -> int:
        with self._data.lock:
            doomed = [key for key, entry in self._data.entries.items() if entry.at < cutoff]
            for key in doomed:
                del self._data.entries[key]
        return len(doomed)

    def oldest(self) -> int | None:
        return min((entry.at for entry in list(self._data.entries.values())), default=None)

    def sync(self) -> None:
        """Nothing to make durable."""

    def __iter__(self) -> Iterator[tuple[str, Any, Any]]:
        for key, entry in list(self._data.entries.items()):
            yield key, orjson.loads(entry.head), orjson.loads(entry.body)

    def close(self) -> None:
        """Nothing to close: the entries stay in the space."""
