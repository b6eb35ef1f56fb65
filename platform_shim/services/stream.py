"""The platform event stream: ``events.jsonl``, the one log every service change goes to.

Every change (a KV put, a document update, a stored object, a queued message, a custom event)
is exactly one line ``{"id", "t", "r", "ns", "k", "data", "ts"}`` appended here, and that line
*is* the change: the services' state is a fold of this stream (plus the snapshots compaction
writes), so a change and its event can never disagree, and one fsync acknowledges both.

Ids are assigned inside the log's commit cycle, under the cross-process lock, after catching up
with other processes: they increase strictly in file order, whichever process wrote the line.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

import orjson

from platform_shim.clock import Clock
from platform_shim.jsonvalue import loads, tight
from platform_shim.services.ownwrites import HeldUntilWritten, Write
from platform_shim.store.protocol import Log, OutOfOrder, Prepare, Record, Store

__all__ = ["DomainFold", "EventSpec", "EventStream", "StreamEvent"]

T = TypeVar("T")

EventSpec = tuple[str, str, "str | None", "str | None", bytes]
"""``(t, r, ns, k, data as JSON bytes)`` of one event to append."""

_DEFAULT_WINDOW = 1000

log = logging.getLogger("platform_shim.store")


def _split_header(name: str, records: Iterator[Record]) -> tuple[int, Iterator[Record]]:
    """The checkpoint in a snapshot's header line, and the records after it.

    Compaction writes ``{"checkpoint": id, "format": 1}`` first. A header line that is damaged
    (skipped by the reader) or missing must not cost the first record, so the header is
    recognised by its ``checkpoint`` field, never by its position. Without a readable one the
    checkpoint is 0: every event the stream still holds is replayed over the snapshot, which is
    harmless (the stream holds a suffix of the events, and each fold keeps the last write per
    key, document or object, so replaying events the snapshot covers ends in the same state).
    """
    first = next(records, None)
    if first is None:
        return 0, records
    if "checkpoint" not in first:
        log.warning(
            "%s.jsonl: the snapshot has no readable header line; its records load, and the"
            " events still held are replayed over them",
            name,
        )
        return 0, itertools.chain((first,), records)
    checkpoint = first["checkpoint"]
    if type(checkpoint) is not int or checkpoint < 0:
        log.warning(
            "%s.jsonl:1: the snapshot header's checkpoint %r is not an event id; the events"
            " still held are replayed over the snapshot",
            name,
            checkpoint,
        )
        return 0, records
    return checkpoint, records


class StreamEvent:
    """One event of the stream, kept as its line; ``to_dict`` parses a fresh copy."""

    __slots__ = ("id", "k", "line", "ns", "r", "t", "ts")

    def __init__(
        self, id: int, t: str, r: str, ns: str | None, k: str | None, ts: int, line: bytes
    ) -> None:
        self.id = id
        self.t = t
        self.r = r
        self.ns = ns
        self.k = k
        self.ts = ts
        self.line = line

    def to_dict(self) -> dict[str, Any]:
        event: dict[str, Any] = loads(self.line)
        return event

    def __repr__(self) -> str:
        return f"StreamEvent(id={self.id}, t={self.t!r}, ns={self.ns!r}, k={self.k!r})"


def _event_id(event: StreamEvent) -> int:
    return event.id


def _event(
    eid: int, t: str, r: str, ns: str | None, k: str | None, data: bytes, ts: int
) -> StreamEvent:
    """A new event with its line (``data`` is JSON already, embedded as is)."""
    fields = {"id": eid, "t": t, "r": r, "ns": ns, "k": k, "data": orjson.Fragment(data), "ts": ts}
    return StreamEvent(eid, t, r, ns, k, ts, tight(orjson.dumps(fields)))


class DomainFold(Protocol):
    """A service's state as a fold of stream events, with a snapshot for compaction."""

    snapshot_name: str
    resource: str  # the ``r`` of the events it folds
    checkpoint: int  # events with an id up to this are already in the snapshot

    def load_snapshot(self, records: Iterable[Record]) -> None:
        """Replace the state with a snapshot's records (the stream has read the header and set
        ``checkpoint`` from it)."""

    def apply_event(self, event: Record) -> None:
        """Apply an event read from the file (ours at load time, or another process's)."""

    def snapshot_records(self) -> Iterator[bytes]:
        """The live state as snapshot lines (without the header). Called on the loop, it copies
        what it needs at once; the lines are made as they are read, on a thread, while the
        state moves on (compaction)."""


class EventStream:
    """The events log, its folds, a window of recent events and listeners for new ones."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        folds: list[DomainFold],
        *,
        window: int = _DEFAULT_WINDOW,
        retain_from: int | None = None,
    ) -> None:
        self._store = store
        self.clock = clock
        self.folds = folds
        self.window = window
        self.last_id = 0  # the highest id in use: new events get the next one
        self._last_read = 0  # the id of the last line applied, to refuse lines out of order
        self.events: list[StreamEvent] = []  # ids strictly increasing
        # Events with an id above this are kept in memory (and by compaction) for a consumer
        # that has not handled them yet; None: nobody consumes here, keep just the window.
        self.retain_from = retain_from
        self._listeners: list[Callable[[StreamEvent], None]] = []
        # Listeners hear an event once its write committed, each once, in id order: our own
        # events wait in ``_own`` from their apply, which comes before the commit, until that
        # write is done; ``_heard`` is the last id they heard.
        self._own: HeldUntilWritten[StreamEvent] = HeldUntilWritten(self._announce)
        self._heard = 0
        self._fold_for = {fold.resource: fold for fold in folds}
        self.order_key = "id"  # the log skips a line whose id breaks the order (OutOfOrder)
        self._loading = True
        self.log: Log = store.open_log("events", self)
        self._loading = False
        self._heard = self.last_id

    # ------------------------------------------------------------------ Consumer protocol

    def reset(self) -> None:
        # A replay: what waited for its write was in a write that failed (or is read again).
        self._own.clear()
        self.events.clear()
        self.last_id = self._last_read = 0
        for fold in self.folds:
            records = iter(self._store.read_snapshot(fold.snapshot_name))
            fold.checkpoint, rest = _split_header(fold.snapshot_name, records)
            fold.load_snapshot(rest)
            self.last_id = max(self.last_id, fold.checkpoint)

    def apply(self, record: Record, line: bytes) -> None:
        eid = record["id"]
        if type(eid) is not int:
            raise ValueError(f"event id {eid!r} is not an integer")
        if eid <= self._last_read:
            # A hand edit or a copy of an already-applied line; applying it again would fork
            # state. While loading, the log then keeps the longest run of lines in order.
            raise OutOfOrder(f"event id {eid} does not follow {self._last_read}")
        self._last_read = eid
        # The id is taken even if a fold cannot read this line (a hand edit): were it not, our
        # next event would reuse it, and a reload would drop that event as out of order.
        if eid > self.last_id:
            self.last_id = eid
        # Each event concerns one service's fold at most (by its resource): one lookup, not four
        # calls (a reopen applies a million of these).
        fold = self._fold_for.get(record["r"])
        if fold is not None and eid > fold.checkpoint:
            fold.apply_event(record)
        self._record(
            StreamEvent(
                eid,
                record["t"],
                record["r"],
                record.get("ns"),
                record.get("k"),
                record.get("ts", 0),
                line,
            )
        )

    def _record(self, event: StreamEvent, write: Write | None = None) -> None:
        """Keep ``event`` (applied); ``write``: it is ours, heard once that write is done."""
        # Events kept from before a snapshot's checkpoint have ids below last_id.
        if event.id > self.last_id:
            self.last_id = event.id
        self._last_read = event.id
        self.events.append(event)
        if len(self.events) > 2 * self.window and (
            self.retain_from is None or self.events[self.window].id <= self.retain_from
        ):
            self._trim()
        if self._loading:
            return
        if write is not None:
            self._own.hold(event, write)
            return
        # Another process's event: ours before it were committed before it could be written.
        self._own.release()
        self._announce(event)

    def _announce(self, event: StreamEvent) -> None:
        if event.id > self._heard:
            self._heard = event.id
            for listener in self._listeners:
                listener(event)

    def _submit(self, prepare: Prepare[T], write: Write, durable: bool) -> asyncio.Future[T]:
        return self._own.track(self.log.submit(prepare, durable=durable), write)

    def _first_retained(self) -> int:
        # Keep everything a consumer still needs, and at least the last `window` events.
        cut = max(0, len(self.events) - self.window)
        if self.retain_from is not None:
            cut = min(cut, bisect.bisect_right(self.events, self.retain_from, key=_event_id))
        return cut

    def _trim(self) -> None:
        del self.events[: self._first_retained()]

    # ------------------------------------------------------------------------- appending

    def submit(
        self,
        t: str,
        r: str,
        ns: str | None,
        k: str | None,
        data: bytes | Callable[[], bytes],
        apply: Callable[[int, int], T] | None = None,
        *,
        validate: Callable[[], bool] | None = None,
        durable: bool = True,
    ) -> asyncio.Future[T | None]:
        """Append one event whose ``data`` is already-serialized JSON (or a function making it,
        called after ``validate``, for data only known then).

        ``validate`` runs in the commit cycle against the latest state; it may raise to refuse
        the write, or return False to write nothing (the change turned out to be a no-op).
        ``apply(id, ts)`` updates the service's state right after the line is written; its
        result is what the future resolves to.
        """

        write: Write = []

        def prepare() -> tuple[bytes | None, Callable[[], T | None] | None]:
            if validate is not None and not validate():
                return None, None
            ts = self.clock.now_ms()
            body = data if isinstance(data, bytes) else data()
            event = _event(self.last_id + 1, t, r, ns, k, body, ts)

            def applied() -> T | None:
                result = apply(event.id, ts) if apply is not None else None
                self._record(event, write)
                return result

            return event.line, applied

        return self._submit(prepare, write, durable)

    def submit_batch(
        self,
        plan: Callable[[], list[EventSpec]],
        apply: Callable[[list[int]], T] | None = None,
        *,
        durable: bool = True,
    ) -> asyncio.Future[T | None]:
        """Append the events ``plan()`` returns, in one ``write``.

        ``plan`` runs in the commit cycle against the latest state and may raise to refuse the
        whole batch; an empty plan writes nothing. ``apply(ids)`` updates the state after the
        write.
        """

        write: Write = []

        def prepare() -> tuple[bytes | None, Callable[[], T | None] | None]:
            specs = plan()
            if not specs:
                return None, (lambda: apply([])) if apply is not None else None
            ts = self.clock.now_ms()
            first = self.last_id + 1
            events = [
                _event(first + offset, t, r, ns, k, body, ts)
                for offset, (t, r, ns, k, body) in enumerate(specs)
            ]

            def applied() -> T | None:
                result = apply([event.id for event in events]) if apply is not None else None
                for event in events:
                    self._record(event, write)
                return result

            return b"\n".join(event.line for event in events), applied

        return self._submit(prepare, write, durable)

    # --------------------------------------------------------------------------- reading

    def fresh(self) -> None:
        """Catch up with other processes (at most once per loop turn: ``Log.fresh``)."""
        self.log.fresh()

    def add_listener(self, listener: Callable[[StreamEvent], None]) -> None:
        """Call ``listener`` with every event applied from now on (ours and other processes')."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[StreamEvent], None]) -> None:
        self._listeners.remove(listener)

    def retained(self) -> list[StreamEvent]:
        """The events compaction keeps: unconsumed ones and the recent window."""
        return self.events[self._first_retained() :]

    def held(self, event_id: int) -> StreamEvent | None:
        """The event with this id, if it is still held in memory."""
        events = self.events
        at = bisect.bisect_left(events, event_id, key=_event_id)
        return events[at] if at < len(events) and events[at].id == event_id else None

    def written_since(self, mark: int, r: str, ns: str, keys: set[str]) -> dict[str, str] | None:
        """For a writer that read outside the commit cycle and checks in it: the type of the
        last event after id ``mark`` (``last_id`` when it read) for each of ``keys`` of
        resource ``r`` in namespace ``ns`` (absent: not written since), or None when the events
        kept in memory no longer reach back to ``mark`` (then assume every key was)."""
        events = self.events
        if self.last_id > mark and (not events or events[0].id > mark + 1):
            return None
        last: dict[str, str] = {}
        for event in self.since(mark):
            if event.r == r and event.ns == ns and event.k in keys:
                last[event.k] = event.t
        return last

    def since(self, after_id: int) -> list[StreamEvent]:
        """Events still held in memory with an id above ``after_id``, oldest first."""
        start = bisect.bisect_right(self.events, after_id, key=_event_id)
        return self.events[start:]
