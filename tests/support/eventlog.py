"""Reading ``events.jsonl`` directly, the way a person with ``jq`` would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

EVENT_KEYS = {"id", "t", "r", "ns", "k", "data", "ts"}


def raw(data_dir: Path) -> bytes:
    """The bytes of the events file (empty when there is none yet)."""
    try:
        return (data_dir / "events.jsonl").read_bytes()
    except FileNotFoundError:
        return b""


def read_events(data_dir: Path) -> list[dict[str, Any]]:
    """Every line of the events file, parsed; fails the test on a line that does not parse."""
    events: list[dict[str, Any]] = []
    content = raw(data_dir)
    assert content == b"" or content.endswith(b"\n"), "events.jsonl ends in a partial line"
    for number, line in enumerate(content.splitlines(), 1):
        record = orjson.loads(line)
        assert isinstance(record, dict), f"events.jsonl:{number} is not an object"
        events.append(record)
    return events


def of_type(data_dir: Path, t: str) -> list[dict[str, Any]]:
    return [event for event in read_events(data_dir) if event["t"] == t]
