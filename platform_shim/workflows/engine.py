"""The workflow engine: schedules activations of the replay executor and keeps every run moving.

The engine is the worker's side of ``platform.workflows``; its parts each have a module:
``writer`` (every ledger record), ``recovery`` (start, other processes' records, poison pills),
``suspension`` (the bounded cache of suspended activations), ``waiting`` (timers and what
parked steps wait for), ``ending`` (retries, final statuses, children), ``bodies`` (where step
bodies run) and ``steps`` (the ``step`` object a handler gets). This module holds what ties
them together: one activation per run, its scheduling, and the public API. (Over 400 lines
because the activation loop and the run-creation paths read best in one place.)

Invariants:

- **A step's result is on disk before anything depends on it.** A step record is appended
  without waiting; the next step's body, an ``invoke``, and the run's completion first wait for
  the run's previous records to be durable (``RunWriter.barrier``). Pure code between steps is
  invisible, so a one-step run pays two group-committed fsyncs: its creation, then its step and
  completion together.
- **A parked run is suspended, not unwound**: its activation awaits the parked step's outcome
  (``Engine.resume`` continues it); only an eviction or a stop unwinds it, and then nothing is
  recorded (``suspension``).
- **One activation per run at a time**, and none after a terminal status was submitted.
- **No wake-up is lost.** ``schedule`` on a run whose activation is still active marks it
  (``rewake``) and the activation's end schedules it again; ``send_event`` records the signal
  and, in the same step of the event loop, resumes every matching parked wait, and a wait
  reached later first looks for matching signals sent after its run was created (the no-race
  rule), oldest first, each taken once per run.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from platform_shim.clock import Clock
from platform_shim.context import WorkflowContext
from platform_shim.errors import (
    DuplicateStepName,
    NonDeterminismError,
    UnknownRun,
    UnknownWorkflow,
    WorkflowCancelled,
)
from platform_shim.ids import new_id
from platform_shim.jsonvalue import dumps, loads
from platform_shim.store.protocol import Log, Record, Store
from platform_shim.workflows import ending, recovery, suspension
from platform_shim.workflows.archive import ARCHIVE_NAME, RunArchive
from platform_shim.workflows.bodies import StepBodies
from platform_shim.workflows.definition import WorkflowRegistry
from platform_shim.workflows.ledger import LedgerState
from platform_shim.workflows.records import RunStatus, StepRecord, StepStatus, WorkflowRun
from platform_shim.workflows.relay import StatusRelay
from platform_shim.workflows.state import RunState, StepState, steps_before
from platform_shim.workflows.steps import Step
from platform_shim.workflows.suspension import Stop, SuspendedRuns
from platform_shim.workflows.traces import describe_error
from platform_shim.workflows.waiting import Waiting
from platform_shim.workflows.writer import RunWriter, check_run_id

if TYPE_CHECKING:
    from platform_shim.platform import Platform

__all__ = ["Engine", "default_backoff"]

log = logging.getLogger("platform_shim.workflows")

DEFAULT_OUTPUT_LIMIT = 4 * 1024 * 1024
# Suspended activations kept in memory (each holds its coroutine: a few kilobytes); past this
# the least recently parked is unwound, and replays from the ledger when it wakes.
DEFAULT_MAX_SUSPENDED = 2000
# A run whose step body was running each time the process died this many times is failed.
DEFAULT_MAX_RECOVERIES = 5
# Worker threads for sync step bodies (blocking code must not stall the event loop).
DEFAULT_STEP_THREADS = 32


def default_backoff(attempt: int) -> int:
    """Milliseconds before retry number ``attempt``: 1 s, 2 s, 4 s, ... capped at 5 minutes."""
    return int(min(1000 * 2 ** (attempt - 1), 300_000))


class Engine:
    """Executes the workflows of one data folder (the worker's side of ``platform.workflows``)."""

    def __init__(
        self,
        platform: Platform,
        store: Store,
        registry: WorkflowRegistry,
        *,
        clock: Clock,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        retry_backoff: Callable[[int], int] = default_backoff,
        relay_cursor: int = 0,
        on_relayed: Callable[[int], None] | None = None,
        max_suspended: int = DEFAULT_MAX_SUSPENDED,
        max_recoveries: int = DEFAULT_MAX_RECOVERIES,
        step_threads: int = DEFAULT_STEP_THREADS,
    ) -> None:
        self.platform = platform
        self.max_recoveries = max_recoveries
        self.bodies = StepBodies(step_threads)
        self.suspended = SuspendedRuns(max_suspended)
        # Runs that were queued or running when the worker started: their first activation
        # marks each step body it starts (the poison-pill count).
        self.recovering: set[str] = set()
        self.registry = registry
        self.clock = clock
        self.output_limit = output_limit
        self.retry_backoff = retry_backoff
        self.state = LedgerState()
        self.waiting = Waiting(self)
        self._tasks: set[asyncio.Task[None]] = set()
        self._running: dict[asyncio.Task[None], RunState] = {}
        self.relay = StatusRelay(lambda: platform.stream, relay_cursor, on_relayed)
        self.on_compact_request: Callable[[], None] | None = None
        self.started = False
        self.state.on_status = self.relay.note
        # Finished runs leave memory for the archive; those the ledger still holds are handed
        # over again while it loads (the archive skips the ones it has).
        self.archive = RunArchive(store.open_archive(ARCHIVE_NAME, writable=True), retiring=True)
        self.state.archive = self.archive
        self.state.loading = self.archive.loading = True
        self.log: Log = store.open_log("runs", self.state)
        self.state.loading = self.archive.loading = False
        self.archive.log = self.log
        self.writer = RunWriter(self.state, self.log, clock)
        self.archive.flush_now()
        self.state.on_record = self._on_foreign

    # ------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Recover: resume every non-terminal run from the ledger (idempotent)."""
        self.started = True
        recovery.recover(self)
        self.relay.paused = False
        self.relay.flush()

    async def stop(self) -> None:
        """Unwind every activation (runs resume after the next start) and flush the ledger.

        Unwinding runs the handlers' cleanup code (``finally``), but no ``step.*`` call made
        during it runs or is recorded: the run goes on from its last record next time."""
        self.started = False
        self.waiting.wheel.stop()
        for run in self.state.runs.values():
            if run.activation is not None:
                run.activation.unwinding = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.suspended.clear()
        self.bodies.shutdown()  # bodies still running in threads: nobody records them
        await self.log.barrier()
        await self.archive.close()

    def registry_changed(self) -> None:
        """Workflows were (re)loaded: runs that waited for their code can go on."""
        if self.started:
            recovery.registry_changed(self)

    # ---------------------------------------------------------------------- starting runs

    async def start_run(
        self,
        workflow_id: str,
        input: Any = None,
        *,
        run_id: str | None = None,
        parent: tuple[RunState, str] | None = None,
    ) -> str:
        """Create a run (durably) and schedule it; an existing ``run_id`` starts nothing."""
        if self.registry.get(workflow_id) is None:
            raise UnknownWorkflow(workflow_id, self.registry.ids())
        input_bytes = dumps(input, f"input of workflow {workflow_id!r}")
        minted = run_id is None
        if run_id is None:
            run_id = new_id(self.clock.now_ms())
        else:
            check_run_id(run_id)
            if not self.state.claim_run_id(run_id, workflow_id):
                return run_id
        await self._create_run(run_id, workflow_id, input_bytes, parent, minted=minted)
        await _first_steps()
        return run_id

    def _create_run(
        self,
        run_id: str,
        workflow_id: str,
        input_bytes: bytes,
        parent: tuple[RunState, str] | None,
        *,
        prefill: list[StepState] | None = None,
        rerun_of: dict[str, str] | None = None,
        minted: bool = False,
    ) -> asyncio.Future[None]:
        return self.writer.create_run(
            run_id,
            workflow_id,
            input_bytes,
            parent=(parent[0].run_id, parent[1]) if parent else None,
            prefill=prefill,
            rerun_of=rerun_of,
            minted=minted,
            then=self._created,
        )

    def _created(self, run: RunState) -> None:
        """The run's creation is durable: now it may run (a cancel may have come first)."""
        if ending.over(run):
            return
        self.waiting.arm_deadline(run)
        self.schedule(run)

    async def rerun(self, run_id: str, from_step: str) -> str:
        """A new run of the same workflow and input that reuses the recorded results of the
        steps before ``from_step`` (they replay; ``from_step`` and later run again)."""
        original = self.state.lookup(run_id)
        if original is None:
            raise UnknownRun(run_id)
        if self.registry.get(original.workflow_id) is None:
            raise UnknownWorkflow(original.workflow_id, self.registry.ids())
        prefill = steps_before(original, from_step)
        rerun_id = new_id(self.clock.now_ms())
        await self._create_run(
            rerun_id,
            original.workflow_id,
            original.input,
            None,
            prefill=prefill,
            rerun_of={"runId": run_id, "fromStep": from_step},
            minted=True,
        )
        await _first_steps()
        return rerun_id

    def start_child(
        self, parent: RunState, step: StepState, workflow_id: str, input_bytes: bytes
    ) -> None:
        """Create the child an ``invoke`` waits for (once: its id is derived from the step)."""
        assert step.child_run_id is not None
        if self.state.workflow_of(step.child_run_id) is None:
            future = self._create_run(
                step.child_run_id, workflow_id, input_bytes, (parent, step.name)
            )
            retry = functools.partial(self._retry_child, parent, step, workflow_id, input_bytes)
            future.add_done_callback(retry)

    def _retry_child(
        self,
        parent: RunState,
        step: StepState,
        workflow_id: str,
        input_bytes: bytes,
        future: asyncio.Future[None],
    ) -> None:
        if future.cancelled() or future.exception() is None:
            return
        # The parent would wait for a child that does not exist: create it again soon (the
        # parent's activation may be suspended on the invoke, so nothing else would).
        log.error(
            "run %s: creating its child run failed (%s); trying again in 1 s",
            parent.run_id,
            future.exception(),
        )

        def again() -> None:
            if not ending.over(parent) and step.status is StepStatus.PENDING and step.done is None:
                self.start_child(parent, step, workflow_id, input_bytes)

        self.clock.call_at(self.clock.now_ms() + 1000, again)

    def schedule(self, run: RunState) -> None:
        """Start an activation of ``run``, or, if one is active, have it looked at again when
        that one ends (a wake-up that arrives while a run unwinds is not lost)."""
        if run.ending or run.status.terminal or not self.started:
            return
        if run.active:
            run.rewake = True
            return
        run.active = True
        run.rewake = False
        task = asyncio.get_running_loop().create_task(
            self._activate(run), name=f"run:{run.run_id}", context=self.platform.context
        )
        run.task = task
        self._tasks.add(task)
        self._running[task] = run
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._running.pop(task, None)

    def resume(self, run: RunState, pending: StepState, done: StepState) -> None:
        """``pending`` was finished by ``done``: continue the activation suspended on it, or
        start one (which finds ``done`` when it reaches the step)."""
        future = pending.resume
        if future is not None and not future.done():
            future.set_result(done)
        else:
            self.schedule(run)

    # ------------------------------------------------------------- suspended activations

    def busy_tasks(self) -> list[asyncio.Task[None]]:
        """Activations doing work (not suspended on parked steps)."""
        return suspension.busy(self._running.items())

    def active_count(self) -> int:
        """How many activations exist (running or suspended)."""
        return len(self._tasks)

    # ----------------------------------------------------------------------- activations

    async def _activate(self, run: RunState) -> None:
        step: Step | None = None
        try:
            self.waiting.cancel_timer(run, "wake")
            workflow = self.registry.get(run.workflow_id)
            if workflow is None:
                log.warning(
                    "run %s waits for workflow %r, which is not loaded (known: %s)",
                    run.run_id,
                    run.workflow_id,
                    ", ".join(self.registry.ids()) or "none",
                )
                return
            # Replay must see every record submitted before this activation was scheduled (the
            # step completion that resumed it, a retry's new attempt). Their commit cycle may
            # still be waiting for the append lock (another process appending): wait for it.
            if self.log.has_pending():
                await self.log.submit(_applied_fence, durable=False)
            if ending.over(run):
                return
            if self.waiting.overdue(run):
                self.waiting.deadline_passed(run)  # before any step body runs again
                return
            if run.status is not RunStatus.RUNNING or run.retry_at is not None:
                self._mark_running(run)
            recovering = run.run_id in self.recovering
            self.recovering.discard(run.run_id)
            step = run.activation = Step(self, run, recovering=recovering)
            context = WorkflowContext(self.platform, run.run_id, run.workflow_id, run.attempt)
            try:
                output = await workflow.handler(loads(run.input), step, context)
            except Stop:
                return
            except asyncio.CancelledError:
                if ending.over(run) or step.unwinding:
                    return
                raise
            except BaseExceptionGroup as group:
                # A TaskGroup of steps: Stop and cancellation inside it mean the same as alone.
                rest = group.split((Stop, asyncio.CancelledError))[1]
                if rest is None or ending.over(run) or step.unwinding:
                    return
                if isinstance(rest, ExceptionGroup):
                    ending.attempt_failed(self, run, workflow, rest, None)
                    return
                raise
            except Exception as exc:
                if ending.over(run) or step.unwinding:
                    return  # raised while unwinding: the run goes on from its records
                if isinstance(exc, DuplicateStepName | NonDeterminismError | WorkflowCancelled):
                    # Retrying cannot help (and for a cancelled child it would silently start
                    # a replacement): the run fails now.
                    log.error(
                        "run %s of %r failed without retry: %s", run.run_id, run.workflow_id, exc
                    )
                    ending.terminate(self, run, RunStatus.FAILED, error=describe_error(exc))
                    return
                ending.attempt_failed(self, run, workflow, exc, None)
                return
            if ending.over(run) or step.unwinding:
                return
            try:
                output_bytes = dumps(
                    output, f"output of workflow {run.workflow_id!r} (run {run.run_id!r})"
                )
                if len(output_bytes) > self.output_limit:
                    raise ValueError(
                        f"output of run {run.run_id!r} is {len(output_bytes)} bytes, over the limit of {self.output_limit}"
                    )
            except (TypeError, ValueError) as exc:
                ending.attempt_failed(self, run, workflow, exc, None)
                return
            # No barrier here: the completion record follows the step records in the same log,
            # so it cannot be durable before them, and nobody hears of it before it is.
            ending.terminate(self, run, RunStatus.COMPLETED, output=output_bytes)
        except Exception:  # a bug of ours: never leave a run silently stuck
            log.exception("run %s: the engine failed while running it", run.run_id)
            if not run.ending:
                ending.terminate(
                    self,
                    run,
                    RunStatus.FAILED,
                    error={"type": "EngineError", "message": "internal error; see the host log"},
                )
        finally:
            run.active = False
            run.task = None
            run.activation = None
            self.suspended.discard(run)
            if run.rewake:
                # Something woke the run while this activation was ending: look again now.
                run.rewake = False
                self.schedule(run)

    def _mark_running(self, run: RunState) -> None:
        """An activation began. Memory only: recovery treats queued and running alike, so a
        record would cost a ledger line per activation for nothing durable."""
        self.state.change_status(run, RunStatus.RUNNING)
        run.retry_at = None
        run.updated_at = self.clock.now_ms()
        self.relay.note(run, 0)

    # ------------------------------------------------------------------------ public API

    async def cancel(self, run_id: str) -> bool:
        """Cancel a run (and the children it waits on); True if it changed state."""
        run = self.state.runs.get(run_id)
        if run is None or run.ending or run.status.terminal:
            return False
        await ending.stop_run(self, run, RunStatus.CANCELLED, dict(recovery.CANCELLED))
        return True

    async def send_event(self, event_type: str, payload: Any = None) -> int:
        """Record a signal and resume the matching parked waits; returns how many."""
        return await self.writer.signal(event_type, payload, self.waiting.deliver)

    def run_state(self, run_id: str) -> RunState | None:
        return self.state.lookup(run_id)

    def snapshot(self, run_id: str) -> WorkflowRun | None:
        """The run as it is now (live or archived), without waiting for pending writes."""
        return self.state.snapshot(run_id)

    async def status(self, run_id: str) -> WorkflowRun | None:
        run = self.state.snapshot(run_id)
        if run is None:
            return None
        await self.log.barrier()
        return run

    async def history(self, run_id: str) -> list[StepRecord]:
        run = self.state.lookup(run_id)
        if run is None:
            return []
        await self.log.barrier()
        return [step.snapshot() for step in run.steps.values()]

    async def wait_terminal(self, run_id: str) -> RunState | None:
        """Wait until the run's terminal status is durable; None for an unknown run."""
        run = self.state.lookup(run_id)
        if run is None:
            return None
        if run.status.terminal:
            # Applied means written; the barrier makes it durable before anyone hears of it.
            await self.log.barrier()
            return run
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if run.waiters is None:
            run.waiters = []
        run.waiters.append(waiter)
        await waiter
        return run

    def list_runs(
        self,
        workflow_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[WorkflowRun]:
        return self.state.page(workflow_id, status, limit, before)

    # ------------------------------------------------------------- other processes' writes

    def _on_foreign(self, record: Record) -> None:
        if self.started:
            recovery.on_foreign_record(self, record)


async def _first_steps() -> None:
    """One loop turn for the run just scheduled (with its acknowledged creation) to reach its
    first park before its creator goes on: an event sent right after ``start`` finds it waiting."""
    await asyncio.sleep(0)


def _applied_fence() -> tuple[None, None]:
    """A submission that writes nothing: it resolves once every earlier one is applied."""
    return None, None
