"""Compaction of the event stream: snapshots of the live state, then a short stream.

Order is what makes it crash-safe. Each service's snapshot is written whole (temp file, fsync,
rename) with the id of the last event it covers; only then is ``events.jsonl`` replaced by the
events still needed (those a handler or trigger has not consumed, and the recent window). A
crash between two steps leaves snapshots that are newer than some of the stream, and loading
skips the events a snapshot already covers, so every state is reached again exactly.
Only the folder's worker compacts (it holds the worker lock). The state is copied on the loop
at one event id; the snapshots and the new stream are written on a thread while events go on
being appended (by any process); the stream's ``rewrite`` then keeps those events after the
retained ones, so none is lost, and the loop is never held for the size of the state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson

from platform_shim.services.storage import StorageState
from platform_shim.services.stream import EventStream, StreamEvent
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


async def compact_stream(
    store: Store,
    stream: EventStream,
    *,
    storage: StorageState | None = None,
    before_rename: Callable[[], None] | None = None,
    serializing: Callable[[], None] | None = None,
) -> CompactionReport:
    """Write every fold's snapshot and rewrite ``events.jsonl`` to what is still needed.

    The live state is copied on the loop (``snapshot_records`` copies its containers; the
    values are immutable); serializing, writing and fsyncing happen on a thread while the
    stream goes on taking events, which the new file keeps after the retained ones.
    ``serializing`` runs on that thread first (tests hold it there to see the loop go on).
    """
    before = stream.log.size()
    taken: list[tuple[int, int]] = []

    def take() -> Iterator[bytes]:
        last = stream.last_id
        snapshots = [(fold.snapshot_name, fold.snapshot_records()) for fold in stream.folds]
        for fold in stream.folds:
            fold.checkpoint = last
        events = stream.retained()
        taken.append((last, len(events)))
        header = orjson.dumps({"checkpoint": last, "format": 1})
        return _new_stream(store, header, snapshots, events, serializing)

    await stream.log.rewrite(take, before_rename=before_rename)
    removed = 0
    if storage is not None:
        live = storage.referenced_blobs()
        removed = await asyncio.to_thread(_collect_blobs, store, live)
    checkpoint, kept = taken[0]
    report = CompactionReport(before, stream.log.size(), kept, checkpoint, removed)
    log.info(
        "compacted events.jsonl: %d -> %d bytes, %d events kept, snapshot at event %d, %d blobs removed",
        report.bytes_before,
        report.bytes_after,
        report.events_kept,
        report.checkpoint,
        report.blobs_removed,
    )
    return report


def _new_stream(
    store: Store,
    header: bytes,
    snapshots: list[tuple[str, Iterator[bytes]]],
    events: list[StreamEvent],
    serializing: Callable[[], None] | None,
) -> Iterator[bytes]:
    # Consumed on the rewrite's thread. Every snapshot is in place (with its checkpoint) before
    # the first line of the new stream is written, so the stream never lacks what it dropped.
    if serializing is not None:
        serializing()
    for name, records in snapshots:
        store.write_snapshot(name, _with_header(header, records))
    for event in events:
        yield event.line


def _with_header(header: bytes, lines: Iterator[bytes]) -> Iterator[bytes]:
    yield header
    yield from lines


def _collect_blobs(store: Store, live: set[str]) -> int:
    cutoff = time.time() - BLOB_GRACE_S
    removed = 0
    for digest, mtime in list(store.blob_digests()):
        if digest not in live and mtime < cutoff:
            store.delete_blob(digest)
            removed += 1
    return removed
