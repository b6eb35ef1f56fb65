"""The dispatcher's file, ``dispatch.jsonl``: its record kinds, their keys, and their fold.

Record kinds (``"rec"``), one JSON object a line, in the order they were written:

- ``cursor``   ``handler`` (a handler id, or ``trigger:<workflow id>`` for an event trigger)
               finished every stream event up to ``lastEvent`` (an event id); the highest wins
- ``drop``     ``handler``'s cursor was dropped at start (no such handler or trigger any more)
- ``relay``    run status changes up to ``lastSeq`` (a ``runs.jsonl`` seq) are on the stream;
               the highest wins
- ``ack``      ``queue``'s messages ``messageIds`` were handled (or dead-lettered): no longer pending
- ``attempt``  ``queue``'s message ``messageId`` is being delivered for the ``attempt``-th time
               (written before the handler runs; an ack forgets it)
- ``dead``     ``handler`` gave up on the event ``eventId`` (of type ``eventType``) with
               ``error`` (``{"type", "message"}``) at ``at`` (epoch ms); the last 1000 are kept

Invariant: **a folder written before these names still loads.** Until 2026-12 the keys were
one letter (``h`` handler, ``c`` lastEvent or lastSeq, ``q`` queue, ``ids`` messageIds, ``id``
messageId, ``n`` attempt, ``event`` eventId, ``t`` eventType); ``read_record`` accepts both
spellings, so old and new lines may share a file. Only the new keys are written, and
compaction (``compacted_lines``) rewrites an old file entirely in them.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Literal, TypedDict, cast

import orjson

from platform_shim.store.protocol import Record

__all__ = [
    "AckRecord",
    "AttemptRecord",
    "CursorRecord",
    "DeadRecord",
    "DispatchRecord",
    "DispatchState",
    "DropRecord",
    "ErrorInfo",
    "RelayRecord",
    "compacted_lines",
    "read_record",
]

DEAD_KEPT = 1000  # dead deliveries held in memory and kept by compaction


class ErrorInfo(TypedDict):
    """What a handler raised: the exception's class name and message."""

    type: str
    message: str


class CursorRecord(TypedDict):
    rec: Literal["cursor"]
    handler: str
    lastEvent: int


class DropRecord(TypedDict):
    rec: Literal["drop"]
    handler: str


class RelayRecord(TypedDict):
    rec: Literal["relay"]
    lastSeq: int


class AckRecord(TypedDict):
    rec: Literal["ack"]
    queue: str
    messageIds: list[str]


class AttemptRecord(TypedDict):
    rec: Literal["attempt"]
    queue: str
    messageId: str
    attempt: int


class DeadRecord(TypedDict):
    rec: Literal["dead"]
    handler: str
    eventId: int
    eventType: str
    error: ErrorInfo
    at: int


DispatchRecord = CursorRecord | DropRecord | RelayRecord | AckRecord | AttemptRecord | DeadRecord


# Per kind: the key only the old spelling has, and each old key's new name.
_OLD_KEYS: dict[str, tuple[str, dict[str, str]]] = {
    "cursor": ("h", {"h": "handler", "c": "lastEvent"}),
    "drop": ("h", {"h": "handler"}),
    "relay": ("c", {"c": "lastSeq"}),
    "ack": ("q", {"q": "queue", "ids": "messageIds"}),
    "attempt": ("q", {"q": "queue", "id": "messageId", "n": "attempt"}),
    "dead": ("h", {"h": "handler", "event": "eventId", "t": "eventType"}),
}


def read_record(raw: Record) -> DispatchRecord | None:
    """A line of ``dispatch.jsonl`` in today's keys, whichever keys it was written with; None
    for a kind this version does not know (skipped, as before).

    A line in today's keys is returned as it is (a restart reads every line: no copy); one in
    the old keys is copied with its keys renamed, in their order. Missing keys are found by
    the fold (a ``KeyError``, and the log skips that line with a warning)."""
    old = _OLD_KEYS.get(raw["rec"])
    if old is None:
        return None
    marker, renames = old
    if marker in raw:
        raw = {renames.get(key, key): value for key, value in raw.items()}
    return cast(DispatchRecord, raw)


class DispatchState:
    """The fold of ``dispatch.jsonl``: cursors, the status relay position, queue bookkeeping,
    dead deliveries."""

    def __init__(self) -> None:
        self.cursors: dict[str, int] = {}  # handler -> lastEvent
        self.relay = 0  # lastSeq
        self.acked: dict[str, set[str]] = {}  # queue -> message ids
        self.attempts: dict[str, int] = {}  # message id -> attempts so far
        self.dead: list[DeadRecord] = []  # the last DEAD_KEPT, oldest first

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    def apply(self, record: Record, line: bytes) -> None:
        """A line read from the file (old or new keys)."""
        typed = read_record(record)
        if typed is not None:
            self.fold(typed)

    def fold(self, record: DispatchRecord) -> None:
        """Apply one record (in today's keys)."""
        if record["rec"] == "cursor":
            handler = record["handler"]
            self.cursors[handler] = max(self.cursors.get(handler, 0), record["lastEvent"])
        elif record["rec"] == "drop":
            self.cursors.pop(record["handler"], None)
        elif record["rec"] == "relay":
            self.relay = max(self.relay, record["lastSeq"])
        elif record["rec"] == "ack":
            self.acked.setdefault(record["queue"], set()).update(record["messageIds"])
            for message_id in record["messageIds"]:
                self.attempts.pop(message_id, None)
        elif record["rec"] == "attempt":
            self.attempts[record["messageId"]] = record["attempt"]
        elif record["rec"] == "dead":
            self.dead.append(record)
            del self.dead[:-DEAD_KEPT]


def compacted_lines(
    state: DispatchState, pending: Mapping[str, str], retained: Set[str]
) -> list[bytes]:
    """The live content of ``dispatch.jsonl``, in today's keys: every cursor, the relay
    position, the acks of messages whose ``queue.sent`` event may still be read from the
    stream (``retained``: message ids), the attempt counts of pending messages (``pending``:
    message id -> queue) and the last dead deliveries."""
    lines = [
        orjson.dumps(CursorRecord(rec="cursor", handler=handler, lastEvent=cursor))
        for handler, cursor in state.cursors.items()
    ]
    lines.append(orjson.dumps(RelayRecord(rec="relay", lastSeq=state.relay)))
    for queue, ids in state.acked.items():
        # An ack matters while its message may still be read from the stream.
        keep = sorted(ids & retained)
        if keep:
            lines.append(orjson.dumps(AckRecord(rec="ack", queue=queue, messageIds=keep)))
    for message_id, attempt in state.attempts.items():
        name = pending.get(message_id)
        if name is not None:
            record = AttemptRecord(rec="attempt", queue=name, messageId=message_id, attempt=attempt)
            lines.append(orjson.dumps(record))
    lines.extend(orjson.dumps(record) for record in state.dead)
    return lines
