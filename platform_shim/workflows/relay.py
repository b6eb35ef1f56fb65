"""Relaying run status changes to the platform event stream: ``workflow.run.<status>``.

A status change lands in the ledger first; the relay then appends its stream event (not
awaited for durability: nobody's acknowledgement depends on it). The relayed position moves
only over events that were written: one that failed is logged and tried again. Which ledger ``seq`` was
relayed last is kept in ``dispatch.jsonl``, and at start every status change after it is relayed
again, so each one reaches the stream at least once, also across a crash between the two writes.
Changes that live in memory only (``running``) are relayed without moving that position.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from platform_shim.jsonvalue import dumps
from platform_shim.workflows.records import RunStatus
from platform_shim.workflows.state import RunState

if TYPE_CHECKING:
    from platform_shim.services.stream import EventStream

__all__ = ["StatusRelay"]

log = logging.getLogger("platform_shim.workflows")

_RETRY_S = 1.0  # real seconds before a failed relay is tried again


class StatusRelay:
    """Puts the ledger's status changes on the event stream, in order, at least once."""

    def __init__(
        self,
        stream: Callable[[], EventStream],
        cursor: int = 0,
        on_relayed: Callable[[int], None] | None = None,
    ) -> None:
        self._stream = stream
        self.cursor = cursor
        self.on_relayed = on_relayed
        self._queue: list[tuple[int, RunState, RunStatus]] = []
        self._scheduled = False
        self.paused = True  # while the ledger loads: changes queue up, flushed at start
        self._retrying = False  # a failed batch waits for its retry; nothing overtakes it
        self._hold: int | None = None  # the lowest seq whose event failed and is not yet written
        self._inflight: set[asyncio.Future[list[Any]]] = set()  # batches not yet written

    def note(self, run: RunState, seq: int) -> None:
        """A run's status changed (``seq`` of the record, or 0 for a change in memory only)."""
        if seq and seq <= self.cursor:
            return
        self._queue.append((seq, run, run.status))
        if not self._scheduled and not self.paused:
            self._scheduled = True
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:
                self._scheduled = False

    def flush(self) -> None:
        """Put ``workflow.run.<status>`` events on the platform stream (at least once)."""
        self._scheduled = False
        if self._retrying:
            return  # a failed batch goes first, in order, when its retry comes
        queue, self._queue = self._queue, []
        if not queue:
            return
        stream = self._stream()
        writes: list[asyncio.Future[Any]] = []
        for seq, run, status in queue:
            data: dict[str, Any] = {
                "runId": run.run_id,
                "workflowId": run.workflow_id,
                "status": status.value,
                "attempt": run.attempt,
                "seq": seq,
            }
            if status.terminal:
                data["error"] = run.error
                if status is RunStatus.COMPLETED and run.output is not None:
                    data["output"] = orjson.Fragment(run.output)
            if run.parent_run_id is not None:
                data["parentRunId"] = run.parent_run_id
            writes.append(
                stream.submit(
                    f"workflow.run.{status.value}",
                    "workflow",
                    run.workflow_id,
                    run.run_id,
                    dumps(data, "workflow status event"),
                    durable=False,
                )
            )
        # The cursor moves once the events are written, and never past one that was not.
        done = asyncio.gather(*writes, return_exceptions=True)
        self._inflight.add(done)
        done.add_done_callback(self._inflight.discard)
        done.add_done_callback(functools.partial(self._written, queue))

    async def drain(self) -> None:
        """Wait until every relayed event is written and the cursor moved past it (at stop)."""
        self.flush()
        while self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
            await asyncio.sleep(0)  # let the done callbacks move the cursor

    def _written(
        self, batch: list[tuple[int, RunState, RunStatus]], done: asyncio.Future[list[Any]]
    ) -> None:
        results = done.result()
        failed = next((i for i, r in enumerate(results) if isinstance(r, BaseException)), None)
        relayed = batch if failed is None else batch[:failed]
        if self._hold is not None and any(seq == self._hold for seq, _, _ in relayed):
            self._hold = None  # the change that failed before went through on its retry
        if failed is not None:
            lost = [seq for seq, _, _ in batch[failed:] if seq]
            if lost:
                self._hold = min(lost) if self._hold is None else min(self._hold, *lost)
        cursor = max((seq for seq, _, _ in relayed), default=0)
        if self._hold is not None:
            # Batches in flight when a write failed may land after it: never past the failure.
            cursor = min(cursor, self._hold - 1)
        if cursor > self.cursor:
            self.cursor = cursor
            if self.on_relayed is not None:
                self.on_relayed(self.cursor)
        if failed is not None:
            error = results[failed]
            log.error(
                "relaying %d run status change(s) to the event stream failed (%s); retrying in %.0f s",
                len(batch) - failed,
                error,
                _RETRY_S,
            )
            # Retried in this process; after a restart, everything past the cursor is anyway.
            self._queue[:0] = batch[failed:]
            if not self._retrying:
                self._retrying = True
                asyncio.get_running_loop().call_later(_RETRY_S, self._retry)

    def _retry(self) -> None:
        self._retrying = False
        if not self.paused:
            self.flush()
