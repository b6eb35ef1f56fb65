"""Queue consumers: delivering one queue's due messages to its ``on_queue`` handler.

The pending set is the fold of ``queue.sent`` events minus acknowledgements. A consumer takes
due messages (``deliverAt`` passed, retry backoff over) in batches of up to ``batch``, records
each attempt before delivering, acknowledges the batch when the handler returns, and after
``maxAttempts`` failures moves a message to ``deadletter.jsonl``: at least once, never lost.

The messages come from the queue's pending set as ``QueuedMessage``s and reach the handler
as ``DeliveredMessage``s (a copy of the payload, and which attempt this is).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, TypedDict

import orjson

from platform_shim.clock import TimerHandle
from platform_shim.dispatch_records import AttemptRecord, ErrorInfo
from platform_shim.errors import StoreError
from platform_shim.events import EventHandler
from platform_shim.services.queue import QueuedMessage

if TYPE_CHECKING:
    from platform_shim.context import HandlerContext
    from platform_shim.dispatch import Dispatcher

__all__ = ["DeliveredMessage", "QueueConsumer"]

log = logging.getLogger("platform_shim.dispatch")


class DeliveredMessage(TypedDict):
    """One message as an ``on_queue`` handler receives it."""

    id: str
    payload: Any
    attempt: int  # 1 for the first delivery
    enqueuedAt: int


class QueueConsumer:
    """Delivers one queue's due messages to its handler in batches."""

    def __init__(self, dispatcher: Dispatcher, handler: EventHandler) -> None:
        self.dispatcher = dispatcher
        self.handler = handler
        self.queue = handler.queue or ""
        self.context: HandlerContext = dispatcher.context_for(handler.id)
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.timer: TimerHandle | None = None
        self.retry_at: dict[str, int] = {}
        self.busy = False

    def idle(self, now: int) -> bool:
        """Whether this consumer has nothing to deliver now (the dispatcher's ``idle`` asks)."""
        return not self.busy and not self._due(now)[0]

    def _due(self, now: int) -> tuple[list[QueuedMessage], int | None]:
        pending = self.dispatcher.platform.queue_state.queues.get(self.queue, {})
        due: list[QueuedMessage] = []
        later: int | None = None
        for message in pending.values():
            at = max(message["deliverAt"], self.retry_at.get(message["id"], 0))
            if at <= now:
                due.append(message)
                if len(due) >= self.handler.batch:
                    break
            elif later is None or at < later:
                later = at
        return due, later

    async def run(self) -> None:
        clock = self.dispatcher.clock
        while True:
            self.busy = True
            self.wake.clear()
            due, later = self._due(clock.now_ms())
            if due:
                await self._deliver(due)
                await asyncio.sleep(0)  # a handler that never awaits must not starve the loop
                continue
            self.busy = False
            if later is not None:
                if self.timer is not None:
                    self.timer.cancel()
                self.timer = clock.call_at(later, self.wake.set)
            await self.wake.wait()

    async def _deliver(self, batch: list[QueuedMessage]) -> None:
        dispatcher = self.dispatcher
        state = dispatcher.state
        messages: list[DeliveredMessage] = []
        for queued in batch:
            attempt = state.attempts.get(queued["id"], 0) + 1
            # Counted now, not when the record is applied: a handler that fails without
            # awaiting anything would otherwise be redelivered as attempt 1 forever.
            state.attempts[queued["id"]] = attempt
            dispatcher.record(
                AttemptRecord(
                    rec="attempt", queue=self.queue, messageId=queued["id"], attempt=attempt
                )
            )
            messages.append(
                DeliveredMessage(
                    id=queued["id"],
                    payload=orjson.loads(orjson.dumps(queued["payload"])),
                    attempt=attempt,
                    enqueuedAt=queued["enqueuedAt"],
                )
            )
        try:
            await self.handler.fn(messages, self.context)
        except Exception as exc:
            # One line while it will be retried; the traceback once a message is given up on.
            last = any(m["attempt"] >= self.handler.max_attempts for m in messages)
            log.log(
                logging.ERROR if last else logging.WARNING,
                "queue %r handler %s failed on %d message(s)%s: %s: %s",
                self.queue,
                self.handler.id,
                len(messages),
                "" if last else " (will retry)",
                type(exc).__name__,
                exc,
                exc_info=exc if last else None,
            )
            error = ErrorInfo(type=type(exc).__name__, message=str(exc))
            done: list[str] = []
            for message in messages:
                if message["attempt"] >= self.handler.max_attempts:
                    await dispatcher.dead_letter(self.queue, message, error)
                    done.append(message["id"])
                    # Its retry time is no use any more (the ack drops its attempt count).
                    self.retry_at.pop(message["id"], None)
                else:
                    delay = dispatcher.handler_backoff(message["attempt"])
                    self.retry_at[message["id"]] = dispatcher.clock.now_ms() + delay
            if done:
                await self._ack(done, messages)
            return
        if await self._ack([message["id"] for message in messages], messages):
            for message in messages:
                self.retry_at.pop(message["id"], None)

    async def _ack(self, ids: list[str], messages: list[DeliveredMessage]) -> bool:
        """Record the acknowledgement; if that write fails the messages stay pending and are
        delivered again after a backoff (at least once), instead of being retried at once."""
        try:
            await self.dispatcher.ack(self.queue, ids)
        except StoreError:  # logged by the dispatcher
            now = self.dispatcher.clock.now_ms()
            for message in messages:
                if message["id"] in ids:
                    delay = self.dispatcher.handler_backoff(message["attempt"])
                    self.retry_at[message["id"]] = now + max(delay, 1000)
            return False
        return True
