"""Relaying run status changes to the platform event stream: ``workflow.run.<status>``.

A status change lands in the ledger first; the relay then appends its stream event (not
awaited for durability: nobody's acknowledgement depends on it). Which ledger ``seq`` was
relayed last is kept in ``dispatch.jsonl``, and at start every status change after it is relayed
again, so each one reaches the stream at least once, also across a crash between the two writes.
Changes that live in memory only (``running``) are relayed without moving that position.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from platform_shim.jsonvalue import dumps
from platform_shim.workflows.records import RunStatus
from platform_shim.workflows.state import RunState

if TYPE_CHECKING:
    from platform_shim.services.stream import EventStream

__all__ = ["StatusRelay"]


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
        queue, self._queue = self._queue, []
        if not queue:
            return
        stream = self._stream()
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
            stream.submit(
                f"workflow.run.{status.value}",
                "workflow",
                run.workflow_id,
                run.run_id,
                dumps(data, "workflow status event"),
                durable=False,
            )
        self.cursor = max(self.cursor, *(seq for seq, _, _ in queue))
        if self.on_relayed is not None:
            self.on_relayed(self.cursor)
