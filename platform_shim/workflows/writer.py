"""Writing the workflow ledger (``runs.jsonl``): the one place that builds its records.

The worker's engine and a client process write through the same ``RunWriter``: creating a run
(with the steps a rerun starts with), recording a signal, asking for a cancel, recording a cron
tick, and (the worker only) step, status and ``attempting`` records.

Invariants:

- **A record's ``seq`` is decided inside the log's commit cycle** (``state.last_seq + 1`` in the
  prepare callback, after the log caught up with every other process), and the in-memory fold
  changes only in the apply callback, once the record is written: a write that fails changes
  nothing in memory.
- **A run is created once.** Whether its id is free is decided in the same commit cycle that
  writes it (``LedgerState.claim_run_id``): two concurrent starts of one id start one run, and an
  id that belongs to another workflow is a ``RunIdConflict``. A run and the steps it starts with
  are one write: they appear together or not at all.
- **A signal is taken at most once per run**: a step record that takes one claims it when the
  record is submitted (the next wait of the same activation must see it taken), and gives it
  back if the write fails.
- Writing a step result is: ``record_step`` -> ``submit`` -> the log's commit cycle ->
  ``LedgerState.put_step``; the run's next visible effect first awaits ``barrier``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

import orjson

from platform_shim.clock import Clock
from platform_shim.ids import new_id
from platform_shim.jsonvalue import dumps
from platform_shim.store.protocol import Log
from platform_shim.workflows.ledger import LedgerState
from platform_shim.workflows.records import RunStatus, StepStatus
from platform_shim.workflows.state import RunState, Signal, StepState
from platform_shim.workflows.traces import FAILURES_KEPT

__all__ = ["RunWriter", "check_event_type", "check_run_id"]

log = logging.getLogger("platform_shim.workflows")


class RunWriter:
    """Builds and submits every ledger record; applies each to ``state`` once it is written."""

    def __init__(self, state: LedgerState, log_: Log, clock: Clock) -> None:
        self.state = state
        self.log = log_
        self.clock = clock

    def submit(
        self, build: Callable[[int], bytes], apply: Callable[[int], None], *, durable: bool = True
    ) -> asyncio.Future[None]:
        """Write one record whose line ``build(seq)`` makes; ``apply(seq)`` once it is written."""
        state = self.state

        def prepare() -> tuple[bytes, Callable[[], None]]:
            seq = state.last_seq + 1
            line = build(seq)

            def applied() -> None:
                state.last_seq = max(state.last_seq, seq)
                apply(seq)

            return line, applied

        return self.log.submit(prepare, durable=durable)

    # ------------------------------------------------------------------------------ runs

    def create_run(
        self,
        run_id: str,
        workflow_id: str,
        input_bytes: bytes,
        *,
        parent: tuple[str, str] | None = None,
        prefill: list[StepState] | None = None,
        rerun_of: dict[str, str] | None = None,
        minted: bool = False,
        then: Callable[[RunState], None] | None = None,
    ) -> asyncio.Future[None]:
        """Create the run ``run_id`` unless it exists (then nothing is written). ``parent`` is
        ``(run id, step name)`` of the invoke that starts it; ``prefill`` the steps a rerun
        starts with; ``then`` runs once the new run is committed (the worker schedules it):
        not when it is applied, inside the commit cycle, since a commit that fails replays
        the ledger without it, and nothing of the run may run before its creation is durable."""
        state = self.state
        created_at = self.clock.now_ms()
        created: list[RunState] = []

        def prepare() -> tuple[bytes | None, Callable[[], None] | None]:
            # Created meanwhile, here or by another process? (A minted id skips the archive.)
            if not state.claim_run_id(run_id, workflow_id, minted=minted):
                return None, None
            seq = state.last_seq + 1
            run = RunState(
                run_id,
                workflow_id,
                input_bytes,
                created_at,
                seq,
                parent_run_id=parent[0] if parent else None,
                parent_step=parent[1] if parent else None,
                rerun_of=rerun_of,
            )
            lines = [run.run_record(seq)]
            for offset, step in enumerate(prefill or (), start=1):
                step.seq = seq + offset
                lines.append(step.record(run_id))

            def applied() -> None:
                state.last_seq = max(state.last_seq, seq + len(lines) - 1)
                state.add_run(run, seq)
                for step in prefill or ():
                    state.put_step(run, step)
                created.append(run)

            return b"\n".join(lines), applied

        future: asyncio.Future[None] = self.log.submit(prepare)
        if then is not None:
            future.add_done_callback(functools.partial(_then_created, created, then))
        return future

    def cancel_request(self, run_id: str) -> asyncio.Future[None]:
        """Ask the worker to cancel ``run_id`` (a client process cannot stop it itself)."""
        now = self.clock.now_ms()
        return self.submit(
            lambda seq: dumps(
                {"rec": "cancel", "seq": seq, "runId": run_id, "at": now}, "cancel request"
            ),
            lambda seq: self.state.set_cancel(run_id, seq),
        )

    def tick(self, workflow_id: str, at: int) -> asyncio.Future[None]:
        """Record that the cron tick ``at`` of ``workflow_id`` fired (it never fires again)."""
        return self.submit(
            lambda seq: orjson.dumps(
                {"rec": "tick", "seq": seq, "workflowId": workflow_id, "at": at}
            ),
            lambda seq: self.state.set_tick(workflow_id, at, seq),
        )

    # --------------------------------------------------------------------------- signals

    async def signal(self, event_type: str, payload: Any, then: Callable[[Signal], int]) -> int:
        """Record a signal for ``wait_for_event``; ``then`` (applied with it) says how many
        waits it resumes."""
        check_event_type(event_type)
        body = dumps(payload, f"payload of event {event_type!r}")
        now = self.clock.now_ms()
        signal_id = new_id(now)
        resumed: list[int] = []

        def apply(seq: int) -> None:
            signal = Signal(signal_id, event_type, body, now, seq)
            self.state.add_signal(signal)
            resumed.append(then(signal))

        await self.submit(lambda seq: Signal(signal_id, event_type, body, now, seq).record(), apply)
        return resumed[0] if resumed else 0

    # ----------------------------------------------------------- the worker's run records

    def record_step(self, run: RunState, step: StepState) -> None:
        """Append a step record; the run's next effect waits for it to be durable."""
        state = self.state
        run_id = run.run_id

        def build(seq: int) -> bytes:
            step.seq = seq
            return step.record(run_id)

        future = self.submit(build, lambda seq: state.put_step(run, step))
        if step.signal_id is not None:
            # Taken now, not when the record is applied: the next wait of this activation may
            # look for a signal before this record's commit cycle runs.
            run.claim(step.signal_id)
            future.add_done_callback(functools.partial(_unclaim_if_lost, run, step.signal_id))
        self.track(run, future)

    def complete_step(self, run: RunState, pending: StepState, **fields: Any) -> StepState:
        """Record ``pending`` (a sleep, wait or invoke) as finished (once: ``pending.done``
        holds the record until it is applied, or is cleared if its write fails)."""
        now = self.clock.now_ms()
        done = StepState(
            pending.name,
            pending.kind,
            fields.pop("status", StepStatus.COMPLETED),
            pending.attempt,
            pending.started_at,
            completed_at=now,
            wake_at=pending.wake_at,
            event_type=pending.event_type,
            match=pending.match,
            timeout_at=pending.timeout_at,
            child_run_id=pending.child_run_id,
            on_parent_close=pending.on_parent_close,
            **fields,
        )
        pending.done = done
        self.record_step(run, done)
        run.write.add_done_callback(functools.partial(_undo_if_lost, pending, done))
        return done

    def set_status(
        self,
        run: RunState,
        status: RunStatus,
        *,
        attempt: int | None = None,
        output: bytes | None = None,
        error: dict[str, Any] | None = None,
        retry_at: int | None = None,
        durable: bool = False,
        after: asyncio.Future[None] | None = None,
        failure: dict[str, Any] | None = None,
    ) -> asyncio.Future[None]:
        """Submit a status record; with ``after``, refuse it if that earlier write failed.
        Every status record carries the run's failed attempts (``failure`` is a new one), so
        compaction, which keeps only the latest, keeps them all."""
        now = self.clock.now_ms()
        record: dict[str, Any] = {
            "rec": "status",
            "seq": 0,
            "runId": run.run_id,
            "status": status.value,
            "at": now,
            "attempt": attempt if attempt is not None else run.attempt,
        }
        if output is not None:
            # A fragment, not a parsed copy: an output nested as deep as JSON allows would be one
            # level too deep once wrapped in this record and re-serialized.
            record["output"] = orjson.Fragment(output)
        if error is not None:
            record["error"] = error
        if retry_at is not None:
            record["retryAt"] = retry_at
        failures = run.failures
        if failure is not None:
            failures = [*(failures or ())[1 - FAILURES_KEPT :], failure]
        if failures:
            record["failures"] = failures
        if status.terminal:
            record["completedAt"] = now
        state = self.state

        def build(seq: int) -> bytes:
            if after is not None and after.done() and not after.cancelled():
                earlier = after.exception()
                if earlier is not None:
                    raise earlier
            record["seq"] = seq
            return dumps(record, f"status of run {run.run_id!r}")

        return self.submit(build, lambda seq: state.set_status(run, record, seq), durable=durable)

    def attempting(self, run: RunState, step: str, count: int) -> asyncio.Future[None]:
        """A recovered run starts step ``step``'s body: ``count`` deaths in a row so far."""
        now = self.clock.now_ms()
        record = {"rec": "attempting", "runId": run.run_id, "step": step, "n": count, "at": now}
        return self.submit(
            lambda seq: dumps({**record, "seq": seq}, "attempting record"),
            lambda seq: self.state.set_attempting(run, step, count, seq),
        )

    # ------------------------------------------------------------- a run's pending writes

    def track(self, run: RunState, future: asyncio.Future[None]) -> None:
        """``future`` is the run's latest write: its failure is raised at the next barrier."""
        run.write = future
        future.add_done_callback(functools.partial(_note_write, run))

    @staticmethod
    async def barrier(run: RunState) -> None:
        """Wait until the run's recorded steps are durable (before any new visible effect)."""
        write = run.write
        if write is not None and not write.done():
            # A private waiter rather than asyncio.shield: cancelling this run must not cancel
            # the write, and shield costs a future and two callbacks more per step.
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            write.add_done_callback(functools.partial(_release, waiter))
            await waiter
        if run.write_error is not None:
            error, run.write_error = run.write_error, None
            raise error


def _then_created(
    created: list[RunState], then: Callable[[RunState], None], future: asyncio.Future[None]
) -> None:
    if created and not future.cancelled() and future.exception() is None:
        then(created[-1])  # prepared again after a failed cycle: the last one applied


def _note_write(run: RunState, future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        # Raised at the run's next barrier; logged now, as the run may be parked.
        log.error("run %s: a ledger write failed: %s", run.run_id, future.exception())
        run.write_error = future.exception()


def _undo_if_lost(pending: StepState, done: StepState, future: asyncio.Future[None]) -> None:
    if (future.cancelled() or future.exception() is not None) and pending.done is done:
        pending.done = None  # the step is pending again: a replay parks it anew


def _unclaim_if_lost(run: RunState, signal_id: str, future: asyncio.Future[None]) -> None:
    if future.cancelled() or future.exception() is not None:
        run.unclaim(signal_id)


def _release(waiter: asyncio.Future[None], _: object) -> None:
    if not waiter.done():
        waiter.set_result(None)


def check_event_type(event_type: object) -> str:
    if not isinstance(event_type, str) or not event_type:
        raise ValueError(
            f"send_event needs an event type as a non-empty string, not {event_type!r}"
        )
    return event_type


def check_run_id(run_id: object) -> str:
    """A caller-chosen run id must be URL-safe enough to name a run in paths."""
    if not isinstance(run_id, str) or not run_id or len(run_id) > 200:
        raise ValueError(
            f"a run id must be a non-empty string of at most 200 characters, not {run_id!r}"
        )
    if any(c in run_id for c in "/\\?#%") or not run_id.isprintable() or run_id.strip() != run_id:
        raise ValueError(
            f"a run id may not contain '/', '\\\\', '?', '#', '%', spaces at its ends or control characters: {run_id!r}"
        )
    return run_id
