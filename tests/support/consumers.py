"""A log consumer for store tests: it keeps every record it is handed."""

from __future__ import annotations

from typing import Any

__all__ = ["Recorder"]


class Recorder:
    """Keeps the records a log hands it (another writer's, or replayed at load) in order."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def apply(self, record: dict[str, Any], line: bytes) -> None:
        self.records.append(record)

    def reset(self) -> None:
        self.records.clear()
