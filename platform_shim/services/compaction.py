"""Compaction of the event stream: snapshots of the live state, then a short stream.

Order is what makes it crash-safe. Each service's snapshot is written whole (temp file, fsync,
rename) with the id of the last event it covers; only then is ``events.jsonl`` replaced by the
events still needed (those a handler or trigger has not consumed, and the recent window). A
crash between two steps leaves snapshots that are newer than some of the stream, and loading
skips the events a snapshot already covers, so every state is reached again exactly.
Only the folder's worker compacts (it holds the worker lock), under the stream's append lock,
so no other process's append can fall between the snapshot and the swap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson

from platform_shim.services.storage import StorageState
from platform_shim.services.stream import EventStream
from platform_shim.store.protocol import Store

__all__ = ["CompactionReport", "compact_stream"]

log = logging.getLogger("platform_shim.compaction")

BLOB_GRACE_S = 3600.0
"""An unreferenced blob younger than this may belong to a put still in flight in some process."""


@dataclass(frozen=True)
class CompactionReport:
    """What a compaction did."""

    bytes_before: int
    bytes_after: int
    events_kept: int
    checkpoint: int
    blobs_removed: int


def compact_stream(
    store: Store,
    stream: EventStream,
    *,
    storage: StorageState | None = None,
    before_rename: Callable[[], None] | None = None,
) -> CompactionReport:
    """Write every fold's snapshot and rewrite ``events.jsonl`` to what is still needed."""
    before = stream.log.size()
    kept: list[int] = []
    checkpoint: list[int] = []

    def produce() -> Iterator[bytes]:
        last = stream.last_id
        checkpoint.append(last)
        header = orjson.dumps({"checkpoint": last, "format": 1})
        for fold in stream.folds:
            store.write_snapshot(fold.snapshot_name, _with_header(header, fold.snapshot_records()))
            fold.checkpoint = last
        events = stream.retained()
        kept.append(len(events))
        return (event.line for event in events)

    stream.log.rewrite(produce, before_rename=before_rename)
    removed = _collect_blobs(store, storage) if storage is not None else 0
    report = CompactionReport(before, stream.log.size(), kept[0], checkpoint[0], removed)
    log.info(
        "compacted events.jsonl: %d -> %d bytes, %d events kept, snapshot at event %d, %d blobs removed",
        report.bytes_before,
        report.bytes_after,
        report.events_kept,
        report.checkpoint,
        report.blobs_removed,
    )
    return report


def _with_header(header: bytes, lines: Iterator[bytes]) -> Iterator[bytes]:
    yield header
    yield from lines


def _collect_blobs(store: Store, storage: StorageState) -> int:
    live = storage.referenced_blobs()
    cutoff = time.time() - BLOB_GRACE_S
    removed = 0
    for digest, mtime in list(store.blob_digests()):
        if digest not in live and mtime < cutoff:
            store.delete_blob(digest)
            removed += 1
    return removed
