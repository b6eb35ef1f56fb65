"""Relaying run status changes to the platform event stream: ``workflow.run.<status>``.

A status change lands in the ledger first; the relay then appends its stream event (not
awaited for durability: nobody's acknowledgement depends on it). The relayed position moves
only over events that were written: one that failed is logged and tried again. Which ledger ``seq`` was
relayed last is kept in ``dispatch.jsonl``, and at start every status change after it is relayed
again, so each one reaches the stream at least once, also across a crash between the two writes.
Changes that live in memory only (``running``) are relayed without moving that position.

Changes are put on the stream in batches, ``linger`` (20 ms) after the first of a batch was
noted: the ``queued``, ``running`` and end of every run that moves meanwhile share one write
instead of one each; ``hurry`` flushes at once (``settle``, a stop). Nobody's acknowledgement
waits for a batch, so a run's own commits never wait for its status events. Each event says
what the run was when its change was noted (its attempt, error, output), not when the batch is
written. The position is written at most once per ``save_interval`` (and at ``drain``, when the
worker stops), not once per relayed batch: it only bounds what a restart relays again, and a write per
run status change was most of the bookkeeping a short run cost (on PostgreSQL, a commit each,
competing with the runs' own). A crash may relay up to ``save_interval`` of changes twice, which
at-least-once allows.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from platform_shim.jsonvalue import dumps
from platform_shim.workflows.records import RunStatus
from platform_shim.workflows.state import RunState

if TYPE_CHECKING:
    from platform_shim.services.stream import EventStream

__all__ = ["StatusRelay"]

log = logging.getLogger("platform_shim.workflows")

_RETRY_S = 1.0  # real seconds before a failed relay is tried again
SAVE_INTERVAL_S = 0.05
"""Real seconds the relayed position may go unwritten after it moved (see the docstring)."""
LINGER_S = 0.02
"""Real seconds a noted change waits for others to share its write to the stream. As long as
the archive's: a short run takes 1-3 ms, so at 2 ms nearly every run paid a stream write of its
own (on PostgreSQL a commit, a notification and a wake-up of every listener, competing with the
next run's commits: ~0.35 ms of a 1.8 ms run); at 20 ms about ten runs share one. A stream
reader sees a status change at most this much later; ``hurry`` (``settle``, a stop) skips it."""


class _Change(NamedTuple):
    """A status change waiting for its batch, its event's data made when it was noted."""

    seq: int
    run_id: str
    workflow_id: str
    status: RunStatus
    data: bytes


def _data(run: RunState, seq: int) -> bytes:
    status = run.status
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
    return dumps(data, "workflow status event")


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
        self._queue: list[_Change] = []
        self._scheduled: asyncio.TimerHandle | None = None  # the flush of the queued changes
        self.linger = LINGER_S
        self.paused = True  # while the ledger loads: changes queue up, flushed at start
        self._retrying = False  # a failed batch waits for its retry; nothing overtakes it
        self._hold: int | None = None  # the lowest seq whose event failed and is not yet written
        self._inflight: set[asyncio.Future[list[Any]]] = set()  # batches not yet written
        self.save_interval = SAVE_INTERVAL_S
        self._saved = cursor  # the position last handed to ``on_relayed``
        self._save_timer: asyncio.TimerHandle | None = None

    def note(self, run: RunState, seq: int) -> None:
        """A run's status changed (``seq`` of the record, or 0 for a change in memory only)."""
        if seq and seq <= self.cursor:
            return
        self._queue.append(_Change(seq, run.run_id, run.workflow_id, run.status, _data(run, seq)))
        if self._scheduled is None and not self.paused:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            self._scheduled = loop.call_later(self.linger, self.flush)

    def hurry(self) -> bool:
        """Flush the changes waiting for their batch now; False if none were waiting."""
        if self._scheduled is None:
            return False
        self.flush()
        return True

    def flush(self) -> None:
        """Put ``workflow.run.<status>`` events on the platform stream (at least once)."""
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if self._retrying:
            return  # a failed batch goes first, in order, when its retry comes
        queue, self._queue = self._queue, []
        if not queue:
            return
        stream = self._stream()
        writes: list[asyncio.Future[Any]] = []
        for change in queue:
            writes.append(
                stream.submit(
                    f"workflow.run.{change.status.value}",
                    "workflow",
                    change.workflow_id,
                    change.run_id,
                    change.data,
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
        self._save()

    def save_pending(self) -> bool:
        """Write the relayed position now if it waits for its interval; False if it does not
        (settling: a settled worker writes nothing more of its own accord)."""
        if self._save_timer is None or self._inflight:
            return False
        self._save()
        return True

    def _save_soon(self) -> None:
        if self._save_timer is None and self.on_relayed is not None:
            self._save_timer = asyncio.get_running_loop().call_later(self.save_interval, self._save)

    def _save(self) -> None:
        """Hand the relayed position to ``on_relayed`` (which writes it), if it moved."""
        if self._save_timer is not None:
            self._save_timer.cancel()
            self._save_timer = None
        if self.cursor > self._saved and self.on_relayed is not None:
            self._saved = self.cursor
            self.on_relayed(self.cursor)

    def _written(self, batch: list[_Change], done: asyncio.Future[list[Any]]) -> None:
        results = done.result()
        failed = next((i for i, r in enumerate(results) if isinstance(r, BaseException)), None)
        relayed = batch if failed is None else batch[:failed]
        if self._hold is not None and any(c.seq == self._hold for c in relayed):
            self._hold = None  # the change that failed before went through on its retry
        if failed is not None:
            lost = [c.seq for c in batch[failed:] if c.seq]
            if lost:
                self._hold = min(lost) if self._hold is None else min(self._hold, *lost)
        cursor = max((c.seq for c in relayed), default=0)
        if self._hold is not None:
            # Batches in flight when a write failed may land after it: never past the failure.
            cursor = min(cursor, self._hold - 1)
        if cursor > self.cursor:
            self.cursor = cursor
            self._save_soon()
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
