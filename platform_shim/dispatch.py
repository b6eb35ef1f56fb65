"""Delivering the event stream to handlers, event triggers and queue consumers.

Each handler and each event-triggered workflow has a durable cursor (the id of the last event
it finished) in ``dispatch.jsonl``. When the worker starts, the cursors of handlers and
triggers that are no longer registered are dropped (each is logged): one that comes back later
starts at the end of the stream, like a new one. A consumer handles the events after its cursor in stream
order, one at a time, then moves its cursor: delivery is at least once (a crash between the
handling and the cursor write delivers again), in order, and a crash between a write and its
dispatch still dispatches it after restart, because the cursor had not passed it. A handler
that raises is retried with backoff, then the event is recorded as dead for that handler and its
cursor moves on; every consumer has its own task, so one slow or failing handler never holds
up another. An event trigger starts its run under an id derived from the event id, so however
often the event is delivered, it starts one run.

Queue consumers read the pending set (``queue.sent`` events minus acknowledgements), deliver
batches when messages are due, record attempts before delivering, acknowledge on success, and
after ``maxAttempts`` failures move the message to ``deadletter.jsonl``.

What ``dispatch.jsonl`` holds (its record kinds and keys) and how it folds is in
``dispatch_records.py``; this module only writes records, through ``Dispatcher.record``.

Size (over 400 lines, on purpose): handler consumers, event triggers and the queue consumers'
bookkeeping share one cursor log and one delivery loop; its records are in ``dispatch_records``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from platform_shim.background import observe, supervise
from platform_shim.clock import Clock
from platform_shim.context import HandlerContext
from platform_shim.dispatch_records import (
    AckRecord,
    CursorRecord,
    DeadRecord,
    DispatchRecord,
    DispatchState,
    DropRecord,
    ErrorInfo,
    RelayRecord,
    compacted_lines,
)
from platform_shim.errors import DefinitionError
from platform_shim.events import EventHandler
from platform_shim.jsonvalue import dumps
from platform_shim.queue_consumer import DeliveredMessage, QueueConsumer
from platform_shim.services.stream import StreamEvent
from platform_shim.store.protocol import Log, Record, Store
from platform_shim.workflows.definition import EventTrigger, Workflow

if TYPE_CHECKING:
    from platform_shim.platform import Platform
    from platform_shim.workflows.engine import Engine

__all__ = ["DispatchState", "Dispatcher", "HandlerContext", "derived_run_id"]

log = logging.getLogger("platform_shim.dispatch")

_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def derived_run_id(workflow_id: str, kind: str, n: int) -> str:
    """A run id made from what started the run (``onboarding-after-signup.evt42``), so starting
    it twice is starting it once."""
    safe = _SAFE.sub("_", workflow_id)[:80]
    if safe != workflow_id:
        safe += "-" + hashlib.blake2b(workflow_id.encode(), digest_size=4).hexdigest()
    return f"{safe}.{kind}{n}"


def default_handler_backoff(attempt: int) -> int:
    """Milliseconds before retry ``attempt`` of a handler: 100 ms, 200 ms, 400 ms, ..."""
    return int(min(100 * 2 ** (attempt - 1), 30_000))


class _Consumer:
    """One cursor over the stream: a handler or an event trigger."""

    def __init__(self, dispatcher: Dispatcher, key: str, cursor: int) -> None:
        self.dispatcher = dispatcher
        self.key = key
        self.cursor = cursor
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.busy = False

    def matches(self, event: StreamEvent) -> bool:
        raise NotImplementedError

    async def deliver(self, event: StreamEvent) -> None:
        raise NotImplementedError

    async def run(self) -> None:
        stream = self.dispatcher.platform.stream
        while True:
            self.busy = True
            for event in stream.since(self.cursor):
                if self.matches(event):
                    await self.dispatcher.deliver_with_retries(self, event)
                self.cursor = event.id
            self.dispatcher.save_cursor(self.key, self.cursor)
            self.busy = False
            self.wake.clear()
            if not stream.since(self.cursor):
                await self.wake.wait()


class _HandlerConsumer(_Consumer):
    def __init__(self, dispatcher: Dispatcher, handler: EventHandler, cursor: int) -> None:
        super().__init__(dispatcher, handler.id, cursor)
        self.handler = handler
        self.context = HandlerContext(dispatcher.platform, handler.id)

    def matches(self, event: StreamEvent) -> bool:
        return self.handler.matches(event.t, event.r, event.ns, event.k)

    async def deliver(self, event: StreamEvent) -> None:
        await self.handler.fn(self.handler.shape(event.to_dict()), self.context)


class _TriggerConsumer(_Consumer):
    def __init__(self, dispatcher: Dispatcher, workflow: Workflow, cursor: int) -> None:
        super().__init__(dispatcher, f"trigger:{workflow.id}", cursor)
        self.workflow = workflow
        assert isinstance(workflow.trigger, EventTrigger)
        self.trigger: EventTrigger = workflow.trigger

    def matches(self, event: StreamEvent) -> bool:
        return self.trigger.matches(event.t, event.r, event.ns)

    async def deliver(self, event: StreamEvent) -> None:
        engine = self.dispatcher.engine
        await engine.start_run(
            self.workflow.id,
            event.to_dict(),
            run_id=derived_run_id(self.workflow.id, "evt", event.id),
        )


class Dispatcher:
    """Runs every consumer of the stream in the worker."""

    def __init__(
        self,
        platform: Platform,
        engine: Engine,
        store: Store,
        state: DispatchState,
        log_: Log,
        *,
        clock: Clock,
        handler_attempts: int = 3,
        handler_backoff: Callable[[int], int] = default_handler_backoff,
    ) -> None:
        self.platform = platform
        self.engine = engine
        self.state = state
        self.log = log_
        self.clock = clock
        self.handler_attempts = handler_attempts
        self.handler_backoff = handler_backoff
        self.deadletter = store.open_log("deadletter", _Ignore())
        self._consumers: dict[str, _Consumer] = {}
        self._queues: dict[str, QueueConsumer] = {}
        self._saved: dict[str, int] = {}
        self._running = False
        platform.stream.add_listener(self._on_event)
        # Acknowledgements already recorded apply to the pending set.
        for queue, ids in state.acked.items():
            for message_id in ids:
                platform.queue_state.ack(queue, message_id)

    # ---------------------------------------------------------------------------- setup

    def configure(self, handlers: Iterable[EventHandler], workflows: Iterable[Workflow]) -> None:
        """Install exactly these handlers and event triggers (called again on hot reload)."""
        wanted: dict[str, EventHandler | Workflow] = {}
        queues: dict[str, EventHandler] = {}
        for handler in handlers:
            if handler.kind == "queue":
                assert handler.queue is not None
                if handler.queue in queues:
                    raise DefinitionError(
                        f"queue {handler.queue!r} has two consumers: {queues[handler.queue].where} and {handler.where}"
                    )
                queues[handler.queue] = handler
            else:
                if handler.id in wanted:
                    raise DefinitionError(
                        f"two handlers share the id {handler.id!r}: {wanted[handler.id].where} and {handler.where}"
                    )
                wanted[handler.id] = handler
        for workflow in workflows:
            if isinstance(workflow.trigger, EventTrigger):
                wanted[f"trigger:{workflow.id}"] = workflow
        if not self._running:
            self._drop_cursors(set(wanted))
        for key in list(self._consumers):
            consumer = self._consumers[key]
            target = wanted.get(key)
            same = isinstance(consumer, _HandlerConsumer) and consumer.handler is target
            same = same or (isinstance(consumer, _TriggerConsumer) and consumer.workflow is target)
            if not same:
                self._stop(consumer)
                del self._consumers[key]
        start = self.platform.stream.last_id
        for key, target in wanted.items():
            if key in self._consumers:
                continue
            # A consumer seen for the first time starts at the end of the stream: it reacts to
            # what happens from now on, not to the folder's whole past.
            cursor = self.state.cursors.get(key, start)
            if isinstance(target, EventHandler):
                self._consumers[key] = _HandlerConsumer(self, target, cursor)
            else:
                self._consumers[key] = _TriggerConsumer(self, target, cursor)
            if key not in self.state.cursors:
                self.save_cursor(key, cursor)
        for name in list(self._queues):
            if queues.get(name) is not self._queues[name].handler:
                self._stop(self._queues.pop(name))
        for name, handler in queues.items():
            if name not in self._queues:
                self._queues[name] = QueueConsumer(self, handler)
        self._update_retention()
        if self._running:
            self._start_all()

    def _drop_cursors(self, wanted: set[str]) -> None:
        # At start, a cursor whose handler or trigger is not registered is gone for good: kept,
        # it would make the handler, if it ever came back, replay everything it missed, and it
        # would hold old events in memory at every start. (A hot reload keeps them until the
        # next start: a module that fails to import for a moment must not lose its place.)
        for key in [key for key in self.state.cursors if key not in wanted]:
            log.warning(
                "dropping the cursor of %s (at event %d): no such handler or trigger is registered;"
                " if it comes back it starts at the end of the stream",
                key,
                self.state.cursors[key],
            )
            self._saved.pop(key, None)
            self.record(DropRecord(rec="drop", handler=key))
            self.state.cursors.pop(key, None)

    def start(self) -> None:
        self._running = True
        self._start_all()

    def _all(self) -> list[_Consumer | QueueConsumer]:
        return [*self._consumers.values(), *self._queues.values()]

    def _start_all(self) -> None:
        loop = asyncio.get_running_loop()
        for consumer in self._all():
            if consumer.task is None:
                name = (
                    f"handler {consumer.key}"
                    if isinstance(consumer, _Consumer)
                    else f"queue consumer {consumer.handler.id} of {consumer.queue!r}"
                )
                # Supervised: a consumer loop that crashes (a bug, a failed write) is logged and
                # restarted from its cursor, instead of ending silently with its task.
                consumer.task = loop.create_task(
                    supervise(name, consumer.run, log), name=name, context=self.platform.context
                )

    @staticmethod
    def _stop(consumer: _Consumer | QueueConsumer) -> None:
        if consumer.task is not None:
            consumer.task.cancel()
            consumer.task = None

    async def stop(self) -> None:
        self._running = False
        consumers = self._all()
        tasks = [c.task for c in consumers if c.task is not None]
        for consumer in consumers:
            self._stop(consumer)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for key, consumer in self._consumers.items():
            self.save_cursor(key, consumer.cursor)
        await self.log.barrier()

    def idle(self) -> bool:
        stream = self.platform.stream
        for consumer in self._consumers.values():
            if consumer.busy or stream.since(consumer.cursor):
                return False
        now = self.clock.now_ms()
        return all(q.idle(now) for q in self._queues.values())

    # ------------------------------------------------------------------------- delivery

    def _on_event(self, event: StreamEvent) -> None:
        for consumer in self._consumers.values():
            consumer.wake.set()
        if event.t == "queue.sent":
            queue = self._queues.get(event.ns or "")
            if queue is not None:
                queue.wake.set()

    async def deliver_with_retries(self, consumer: _Consumer, event: StreamEvent) -> None:
        attempt = 1
        while True:
            try:
                await consumer.deliver(event)
                return
            except Exception as exc:
                if attempt >= self.handler_attempts:
                    log.error(
                        "handler %s gave up on event %d (%s) after %d attempts",
                        consumer.key,
                        event.id,
                        event.t,
                        attempt,
                        exc_info=exc,
                    )
                    self.record(
                        DeadRecord(
                            rec="dead",
                            handler=consumer.key,
                            eventId=event.id,
                            eventType=event.t,
                            error=ErrorInfo(type=type(exc).__name__, message=str(exc)),
                            at=self.clock.now_ms(),
                        ),
                        durable=True,
                    )
                    return
                log.warning(
                    "handler %s failed on event %d (attempt %d): %s",
                    consumer.key,
                    event.id,
                    attempt,
                    exc,
                )
                await self._sleep(self.handler_backoff(attempt))
                attempt += 1

    async def _sleep(self, ms: int) -> None:
        if ms <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        timer = self.clock.call_at(self.clock.now_ms() + ms, wake)
        try:
            await future
        finally:
            timer.cancel()

    # ---------------------------------------------------------------------- bookkeeping

    def record(
        self,
        record: DispatchRecord,
        *,
        durable: bool = False,
        then: Callable[[], None] | None = None,
    ) -> asyncio.Future[None]:
        """Append a bookkeeping record; ``then`` is its in-memory effect, applied with it (so
        never for a write that failed). A failure is logged: most callers do not await."""
        state = self.state
        line = dumps(record, "dispatch record")

        def apply() -> None:
            state.fold(record)
            if then is not None:
                then()

        future = self.log.submit(lambda: (line, apply), durable=durable)
        observe(future, f"dispatch.jsonl: writing a {record['rec']!r} record", log)
        return future

    def save_cursor(self, key: str, cursor: int) -> None:
        if self._saved.get(key) == cursor:
            return

        def saved() -> None:
            self._saved[key] = cursor

        self.record(CursorRecord(rec="cursor", handler=key, lastEvent=cursor), then=saved)
        self._update_retention()

    def save_relay(self, seq: int) -> None:
        self.record(RelayRecord(rec="relay", lastSeq=seq))

    def _update_retention(self) -> None:
        if self._consumers:
            self.platform.stream.retain_from = min(c.cursor for c in self._consumers.values())
        else:
            self.platform.stream.retain_from = None

    def ack(self, queue: str, ids: list[str]) -> asyncio.Future[None]:
        queue_state = self.platform.queue_state

        def acked() -> None:
            for message_id in ids:
                queue_state.ack(queue, message_id)

        # Acknowledged in memory only once written: a failed write leaves them pending, to be
        # delivered again (at least once), rather than dropped until the next restart.
        return self.record(AckRecord(rec="ack", queue=queue, messageIds=ids), then=acked)

    async def dead_letter(self, queue: str, message: DeliveredMessage, error: ErrorInfo) -> None:
        line = dumps(
            {"q": queue, "msg": message, "error": error, "at": self.clock.now_ms()}, "dead letter"
        )
        log.error(
            "queue %r: message %s moved to deadletter.jsonl after %d attempts",
            queue,
            message["id"],
            message["attempt"],
        )
        await self.deadletter.submit(lambda: (line, None))

    async def compact(self, in_stream: set[str]) -> None:
        """Rewrite ``dispatch.jsonl`` to the live cursors, relay position and queue state.

        ``in_stream``: the ids of every queued message whose ``queue.sent`` event may still be
        in ``events.jsonl`` (their acks are kept; the others' are dropped)."""
        state = self.state
        platform = self.platform
        retained = in_stream

        def take() -> list[bytes]:
            # Small (cursors, acks of retained messages, the last dead deliveries): made on the
            # loop, so the lines match the state exactly when the log is caught up.
            pending = {
                message_id: name
                for name, messages in platform.queue_state.queues.items()
                for message_id in messages
            }
            return compacted_lines(state, pending, retained)

        await self.log.rewrite(take)
        for queue in list(state.acked):
            state.acked[queue] &= retained

    def context_for(self, handler_id: str) -> HandlerContext:
        """The ``ctx`` a handler receives."""
        return HandlerContext(self.platform, handler_id)

    def bookkeeping(self) -> dict[str, int]:
        """How many entries of each per-message or per-consumer table are held in memory
        (tests and the soak benchmark check that they stay bounded)."""
        return {
            "cursors": len(self.state.cursors),
            "attempts": len(self.state.attempts),
            "acked": sum(len(ids) for ids in self.state.acked.values()),
            "retry_at": sum(len(q.retry_at) for q in self._queues.values()),
            "dead": len(self.state.dead),
        }

    def consumers(self) -> dict[str, int]:
        """Cursor of each stream consumer (for the dashboard and tests)."""
        return {key: consumer.cursor for key, consumer in self._consumers.items()}


class _Ignore:
    def apply(self, record: Record, line: bytes) -> None:
        pass

    def reset(self) -> None:
        pass
