"""The durable queue's producer side and its state.

``send`` appends one ``queue.sent`` event; the message is then on disk and is delivered at
least once (the worker's dispatcher consumes it). The pending set is the fold of ``queue.sent``
events minus the acknowledgements the dispatcher records in ``dispatch.jsonl``; compaction
writes it to the ``queue`` snapshot, so an undelivered message outlives any stream compaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any, TypedDict

import orjson

from platform_shim.clock import Clock
from platform_shim.durations import parse_duration_ms
from platform_shim.ids import new_id
from platform_shim.jsonvalue import dumps
from platform_shim.services.stream import EventStream
from platform_shim.store.protocol import Record

__all__ = ["QueueService", "QueueState", "QueuedMessage"]


class QueuedMessage(TypedDict):
    """A pending message (the ``data`` of its ``queue.sent`` event)."""

    id: str
    payload: Any
    enqueuedAt: int  # epoch ms
    deliverAt: int  # epoch ms: not delivered before


class QueueState:
    """Pending messages per queue, by id."""

    snapshot_name = "queue"
    resource = "queue"

    def __init__(self) -> None:
        self.checkpoint = 0
        self.queues: dict[str, dict[str, QueuedMessage]] = {}
        self.acked: set[str] = set()  # acks read before the message they acknowledge

    def add(self, name: str, message: QueuedMessage) -> None:
        if message["id"] in self.acked:
            self.acked.discard(message["id"])
            return
        self.queues.setdefault(name, {})[message["id"]] = message

    def ack(self, name: str, message_id: str) -> None:
        pending = self.queues.get(name)
        if pending is not None and pending.pop(message_id, None) is not None:
            return
        self.acked.add(message_id)

    def load_snapshot(self, records: Iterable[Record]) -> None:
        self.queues.clear()
        for record in records:
            self.add(record["q"], record["msg"])

    def apply_event(self, event: Record) -> None:
        if event["t"] == "queue.sent":
            self.add(event["ns"], event["data"])

    def snapshot_records(self) -> Iterator[bytes]:
        # Copied now, on the loop; serialized as read, off the loop (messages are never
        # changed in place).
        copied = [(name, list(pending.values())) for name, pending in self.queues.items()]
        return (
            orjson.dumps({"q": name, "msg": message})
            for name, messages in copied
            for message in messages
        )


class QueueService:
    """``platform.queue``: ``send(name, payload, delay=None) -> message id``."""

    def __init__(self, stream: EventStream, state: QueueState, clock: Clock) -> None:
        self._stream = stream
        self._state = state
        self._clock = clock

    async def send(
        self, name: str, payload: Any, delay: int | float | str | timedelta | None = None
    ) -> str:
        """Enqueue ``payload`` (JSON) on queue ``name``; ``delay`` (ms, ``"30s"``, timedelta)
        holds delivery back. Returns the message id once the message is durable."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"queue name must be a non-empty string, not {name!r}")
        body = dumps(payload, f"payload for queue {name!r}")
        delay_ms = 0 if delay is None else parse_duration_ms(delay, f"delay for queue {name!r}")
        now = self._clock.now_ms()
        message_id = new_id(now)
        message = QueuedMessage(
            id=message_id,
            payload=orjson.Fragment(body),
            enqueuedAt=now,
            deliverAt=now + delay_ms,
        )
        data = orjson.dumps(message)
        state = self._state

        def apply(eid: int, ts: int) -> None:
            state.add(name, {**message, "payload": orjson.loads(body)})

        await self._stream.submit("queue.sent", "queue", name, message_id, data, apply)
        return message_id
