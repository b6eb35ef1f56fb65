"""The workflow engine: runs activations of the replay executor and keeps every run moving.

Invariants:

- **A step's result is on disk before anything depends on it.** A step record is appended
  without waiting; the next step's body, an ``invoke``, and the run's completion first wait for
  the run's previous records to be durable (``barrier``). Pure code between steps is invisible,
  so a one-step run pays two group-committed fsyncs: its creation, then its step and completion
  together.
- **A parked run holds nothing but its ledger state and one timer.** Sleeps, waits and
  invokes end the activation's task; a timer, a signal or a child's end starts a new one,
  which replays the handler from the top against the recorded steps.
- **One activation per run at a time**, and none after a terminal status was submitted.
- **Recovery is idempotent**: it re-arms timers and re-registers waits from the ledger and
  schedules queued and running runs once; running it again schedules nothing twice.
- **No wake-up is lost.** ``send_event`` records the signal and, in the same step of the event
  loop, resumes every registered matching wait; a wait reached later first looks for matching
  signals sent after its run was created (the no-race rule), oldest first, each taken once.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson

from platform_shim.background import observe
from platform_shim.clock import Clock
from platform_shim.errors import (
    DuplicateStepName,
    NonDeterminismError,
    UnknownRun,
    UnknownWorkflow,
    WorkflowCancelled,
)
from platform_shim.ids import new_id
from platform_shim.jsonvalue import dumps, loads
from platform_shim.platform import ServicesContext
from platform_shim.store.protocol import Log, Record, Store
from platform_shim.workflows.archive import ARCHIVE_NAME, RunArchive
from platform_shim.workflows.definition import Workflow, WorkflowRegistry
from platform_shim.workflows.ledger import LedgerState
from platform_shim.workflows.records import RunStatus, StepKind, StepRecord, StepStatus, WorkflowRun
from platform_shim.workflows.relay import StatusRelay
from platform_shim.workflows.state import RunState, Signal, StepState, steps_before
from platform_shim.workflows.steps import Step, Stop, describe_error
from platform_shim.workflows.traces import FAILURES_KEPT, failure_entry
from platform_shim.workflows.waiting import Waiting

if TYPE_CHECKING:
    from platform_shim.platform import Platform

__all__ = ["Engine", "WorkflowContext", "default_backoff"]

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


class WorkflowContext(ServicesContext):
    """The ``ctx`` argument of a workflow handler: the services, and which run this is."""

    __slots__ = ("attempt", "run_id", "workflow_id")

    def __init__(self, platform: Platform, run: RunState) -> None:
        super().__init__(platform)
        self.run_id = run.run_id
        self.workflow_id = run.workflow_id
        self.attempt = run.attempt


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
        self.max_suspended = max_suspended
        self.max_recoveries = max_recoveries
        self._step_threads = step_threads
        self._executor: ThreadPoolExecutor | None = None
        # Runs whose activation is suspended on a parked step, least recently parked first.
        self._suspended: OrderedDict[str, RunState] = OrderedDict()
        # Runs that were queued or running when the worker started: their first activation
        # marks each step body it starts (the poison-pill count).
        self._recovering: set[str] = set()
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
        self._started = False
        self.state.on_status = self.relay.note
        # Finished runs leave memory for the archive; those the ledger still holds are handed
        # over again while it loads (the archive skips the ones it has).
        self.archive = RunArchive(store.open_archive(ARCHIVE_NAME, writable=True), retiring=True)
        self.state.archive = self.archive
        self.state.loading = self.archive.loading = True
        self.log: Log = store.open_log("runs", self.state)
        self.state.loading = self.archive.loading = False
        self.archive.log = self.log
        self.archive.flush_now()
        self.state.on_record = self._on_foreign

    # ------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Recover: resume every non-terminal run from the ledger (idempotent)."""
        self._started = True
        now = self.clock.now_ms()
        for run_id in list(self.state.cancels):
            # Asked for while no worker ran: carry it out before anything resumes.
            run = self.state.runs.get(run_id)
            if run is not None and not run.ending and not run.status.terminal:
                self.stop_run(
                    run, RunStatus.CANCELLED, {"type": "WorkflowCancelled", "message": "cancelled"}
                )
        for run in list(self.state.runs.values()):
            if run.status.terminal or run.ending:
                continue
            try:
                self._recover(run, now)
            except Exception as exc:
                # One run that cannot be recovered must not keep the others from resuming: it
                # is logged and ended failed, naming the error, so it shows instead of hanging.
                log.exception("run %s of %r could not be recovered", run.run_id, run.workflow_id)
                error = describe_error(exc)
                error["message"] = f"could not be recovered after a restart: {error['message']}"
                self._terminate(run, RunStatus.FAILED, error=error)
        self.relay.paused = False
        self.relay.flush()

    def _recover(self, run: RunState, now: int) -> None:
        """Re-arm a non-terminal run's timers and waits, or schedule it (idempotent)."""
        self.waiting.arm_deadline(run)
        if self.waiting.overdue(run):
            # Past its timeoutSecs while no worker ran: it ends now, before anything resumes.
            self.waiting._deadline_passed(run)
            return
        if run.status in (RunStatus.QUEUED, RunStatus.RUNNING):
            self._recovering.add(run.run_id)
            if run.retry_at is not None and run.retry_at > now:
                self.waiting.arm(run, "wake", run.retry_at)
            else:
                self.schedule(run)
            return
        if run.pending is None:
            self.schedule(run)
            return
        for step in run.parked_steps():
            # Each parked step's timer and index entry; one whose outcome is already known
            # (an event recorded meanwhile, a child that ended) is finished, which resumes it.
            if step.kind is StepKind.WAIT_EVENT:
                if self.waiting.take_waiting_signal(run, step) is None:
                    self.waiting.park(run, step)
            elif step.kind is StepKind.INVOKE:
                if self.waiting.settle_invoke(run, step) is None:
                    self.waiting.park(run, step)
            else:
                self.waiting.park(run, step)

    async def stop(self) -> None:
        """Unwind every activation (runs resume after the next start) and flush the ledger.

        Unwinding runs the handlers' cleanup code (``finally``), but no ``step.*`` call made
        during it runs or is recorded: the run goes on from its last record next time."""
        self._started = False
        self.waiting.wheel.stop()
        for run in self.state.runs.values():
            if run.activation is not None:
                run.activation.unwinding = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._suspended.clear()
        if self._executor is not None:
            # Bodies still running in threads finish on their own; nobody records them.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        await self.log.barrier()
        await self.archive.close()

    def registry_changed(self) -> None:
        """Workflows were (re)loaded: runs that waited for their code can go on."""
        if not self._started:
            return
        for run in self.state.runs.values():
            if (
                run.status in (RunStatus.QUEUED, RunStatus.RUNNING)
                and not run.active
                and run.retry_at is None
                and self.registry.get(run.workflow_id) is not None
            ):
                self.schedule(run)

    # ------------------------------------------------------------------------ the ledger

    def _submit(
        self, build: Callable[[int], bytes], apply: Callable[[int], None], *, durable: bool = True
    ) -> asyncio.Future[None]:
        state = self.state

        def prepare() -> tuple[bytes, Callable[[], None]]:
            seq = state.last_seq + 1
            line = build(seq)

            def applied() -> None:
                state.last_seq = max(state.last_seq, seq)
                apply(seq)

            return line, applied

        return self.log.submit(prepare, durable=durable)

    def _track(self, run: RunState, future: asyncio.Future[None]) -> None:
        run.write = future
        future.add_done_callback(functools.partial(self._note_write, run))

    @staticmethod
    def _note_write(run: RunState, future: asyncio.Future[None]) -> None:
        if not future.cancelled() and future.exception() is not None:
            # Raised at the run's next barrier; logged now, as the run may be parked.
            log.error("run %s: a ledger write failed: %s", run.run_id, future.exception())
            run.write_error = future.exception()

    async def barrier(self, run: RunState) -> None:
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

    def record_step(self, run: RunState, step: StepState) -> None:
        """Append a step record; the run's next effect waits for it to be durable."""
        state = self.state
        run_id = run.run_id

        def build(seq: int) -> bytes:
            step.seq = seq
            return step.record(run_id)

        future = self._submit(build, lambda seq: state.put_step(run, step))
        if step.signal_id is not None:
            # Taken now, not when the record is applied: the next wait of this activation may
            # look for a signal before this record's commit cycle runs.
            run.claim(step.signal_id)
            future.add_done_callback(functools.partial(_unclaim_if_lost, run, step.signal_id))
        self._track(run, future)

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

    def _set_status(
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
            if (
                after is not None
                and after.done()
                and not after.cancelled()
                and after.exception() is not None
            ):
                raise after.exception()  # type: ignore[misc]
            record["seq"] = seq
            return dumps(record, f"status of run {run.run_id!r}")

        return self._submit(build, lambda seq: state.set_status(run, record, seq), durable=durable)

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
        state = self.state
        created_at = self.clock.now_ms()

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
                parent_run_id=parent[0].run_id if parent else None,
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
                self.waiting.arm_deadline(run)
                self.schedule(run)

            # One write: the run and the steps it starts with appear together or not at all.
            return b"\n".join(lines), applied

        return self.log.submit(prepare)

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
            if not self._over(parent) and step.status is StepStatus.PENDING and step.done is None:
                self.start_child(parent, step, workflow_id, input_bytes)

        self.clock.call_at(self.clock.now_ms() + 1000, again)

    def schedule(self, run: RunState) -> None:
        """Start an activation of ``run``, or, if one is active, have it looked at again when
        that one ends (a wake-up that arrives while a run unwinds is not lost)."""
        if run.ending or run.status.terminal or not self._started:
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

    def suspending(self, run: RunState, *, evictable: bool) -> None:
        """``run``'s activation suspends on a parked step: keep it, within the cache's bound
        (which counts only activations that may be evicted: those suspended in the handler's
        own task; one inside a parallel section stays until it ends)."""
        if not evictable:
            self._suspended.pop(run.run_id, None)
            return
        self._suspended[run.run_id] = run
        self._suspended.move_to_end(run.run_id)
        if len(self._suspended) <= self.max_suspended:
            return
        for candidate in list(self._suspended.values()):
            if self.parked(candidate):
                del self._suspended[candidate.run_id]
                self._evict(candidate)
                if len(self._suspended) <= self.max_suspended:
                    return

    def resumed(self, run: RunState, step: Step) -> None:
        if step.suspended == 0:
            self._suspended.pop(run.run_id, None)

    @staticmethod
    def parked(run: RunState) -> bool:
        """Whether ``run``'s activation is suspended on parked steps with nothing else to do."""
        step = run.activation
        return (
            step is not None
            and step.calls == 0
            and bool(step.waits)
            and not any(future.done() for future in step.waits)
        )

    def busy_tasks(self) -> list[asyncio.Task[None]]:
        """Activations doing work (not suspended on parked steps)."""
        return [
            task for task, run in self._running.items() if not task.done() and not self.parked(run)
        ]

    def _evict(self, run: RunState) -> None:
        """Unwind a suspended activation to free its memory; its wake-up replays it."""
        activation, task = run.activation, run.task
        if activation is None or task is None or task.done():
            return
        activation.unwinding = True
        task.cancel()

    # ---------------------------------------------------------------------- step bodies

    async def call_body(self, fn: Callable[[], Any], *, inline: bool) -> Any:
        """Call a ``step.run`` body: a sync one in a worker thread (unless ``inline``), and
        whatever awaitable it returns on the loop."""
        if inline or inspect.iscoroutinefunction(fn):
            result = fn()
        else:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self._step_threads, thread_name_prefix="step-body"
                )
            context = contextvars.copy_context()  # get_platform() and friends in the thread
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self._executor, context.run, fn)
        if inspect.isawaitable(result):
            try:
                result = await result
            except asyncio.CancelledError:
                if inspect.iscoroutine(result):
                    result.close()
                raise
        return result

    async def mark_attempting(self, run: RunState, name: str) -> None:
        """Before a recovered run starts the body of step ``name``: count, durably, how many
        times the process died while that body ran; past the bound the run fails instead."""
        previous = run.attempting
        count = previous[1] + 1 if previous is not None and previous[0] == name else 1
        if count > self.max_recoveries:
            error = {
                "type": "StepCrashedProcess",
                "message": (
                    f"the process died while step {name!r} ran, {count - 1} times in a row; "
                    "the run was failed instead of running it again"
                ),
                "step": name,
            }
            log.error("run %s of %r: %s", run.run_id, run.workflow_id, error["message"])
            self._terminate(run, RunStatus.FAILED, error=error)
            raise Stop
        now = self.clock.now_ms()
        record = {"rec": "attempting", "runId": run.run_id, "step": name, "n": count, "at": now}
        state = self.state

        def build(seq: int) -> bytes:
            return dumps({**record, "seq": seq}, "attempting record")

        await self._submit(build, lambda seq: state.set_attempting(run, name, count, seq))

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
            if self._over(run):
                return
            if self.waiting.overdue(run):
                self.waiting._deadline_passed(run)  # before any step body runs again
                return
            if run.status is not RunStatus.RUNNING or run.retry_at is not None:
                self._mark_running(run)
            recovering = run.run_id in self._recovering
            self._recovering.discard(run.run_id)
            step = run.activation = Step(self, run, recovering=recovering)
            context = WorkflowContext(self.platform, run)
            try:
                output = await workflow.handler(loads(run.input), step, context)
            except Stop:
                return
            except asyncio.CancelledError:
                if self._over(run) or step.unwinding:
                    return
                raise
            except BaseExceptionGroup as group:
                # A TaskGroup of steps: Stop and cancellation inside it mean the same as alone.
                rest = group.split((Stop, asyncio.CancelledError))[1]
                if rest is None or self._over(run) or step.unwinding:
                    return
                if isinstance(rest, ExceptionGroup):
                    self._attempt_failed(run, workflow, rest, None)
                    return
                raise
            except Exception as exc:
                if self._over(run) or step.unwinding:
                    return  # raised while unwinding: the run goes on from its records
                if isinstance(exc, DuplicateStepName | NonDeterminismError | WorkflowCancelled):
                    # Retrying cannot help (and for a cancelled child it would silently start
                    # a replacement): the run fails now.
                    log.error(
                        "run %s of %r failed without retry: %s", run.run_id, run.workflow_id, exc
                    )
                    self._terminate(run, RunStatus.FAILED, error=describe_error(exc))
                    return
                self._attempt_failed(run, workflow, exc, None)
                return
            if self._over(run) or step.unwinding:
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
                self._attempt_failed(run, workflow, exc, None)
                return
            # No barrier here: the completion record follows the step records in the same log,
            # so it cannot be durable before them, and nobody hears of it before it is.
            self._terminate(run, RunStatus.COMPLETED, output=output_bytes)
        except Exception:  # a bug of ours: never leave a run silently stuck
            log.exception("run %s: the engine failed while running it", run.run_id)
            if not run.ending:
                self._terminate(
                    run,
                    RunStatus.FAILED,
                    error={"type": "EngineError", "message": "internal error; see the host log"},
                )
        finally:
            run.active = False
            run.task = None
            run.activation = None
            self._suspended.pop(run.run_id, None)
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

    @staticmethod
    def _over(run: RunState) -> bool:
        """Whether the run ended or is ending (read after an await: it may have changed)."""
        return run.ending or run.status.terminal

    def _attempt_failed(
        self, run: RunState, workflow: Workflow, exc: Exception, step_name: str | None
    ) -> None:
        error = describe_error(exc, step_name)
        if run.ending:
            return
        failure = failure_entry(error, exc, run.attempt, self.clock.now_ms())
        if run.attempt <= workflow.retries:
            delay = max(0, int(self.retry_backoff(run.attempt)))
            retry_at = self.clock.now_ms() + delay
            log.warning(
                "run %s of %r failed on attempt %d (%s: %s); retrying in %d ms",
                run.run_id,
                run.workflow_id,
                run.attempt,
                error["type"],
                error["message"],
                delay,
            )  # one line per retried attempt: the full traceback comes with the last one
            observe(
                self._set_status(
                    run,
                    RunStatus.QUEUED,
                    attempt=run.attempt + 1,
                    error=error,
                    retry_at=retry_at,
                    failure=failure,
                ),
                f"run {run.run_id}: recording its retry",
                log,
            )
            self.waiting.arm(run, "wake", retry_at)
            return
        log.error(
            "run %s of %r failed on its last attempt %d: %s: %s",
            run.run_id,
            run.workflow_id,
            run.attempt,
            error["type"],
            error["message"],
            exc_info=exc,
        )
        self._terminate(run, RunStatus.FAILED, error=error, failure=failure)

    def _terminate(
        self,
        run: RunState,
        status: RunStatus,
        *,
        output: bytes | None = None,
        error: dict[str, Any] | None = None,
        failure: dict[str, Any] | None = None,
    ) -> asyncio.Future[None]:
        """Submit the run's final status; when it is durable, wake whoever waits on it."""
        run.ending = True
        self.waiting.cancel_timer(run, "wake")
        self.waiting.cancel_timer(run, "deadline")
        self.waiting.unwait(run)
        self._recovering.discard(run.run_id)
        # Children end with their parent, unless invoked with on_parent_close="abandon".
        for step in run.steps.values():
            if (
                step.kind is StepKind.INVOKE
                and step.status is StepStatus.PENDING
                and step.on_parent_close != "abandon"
            ):
                self.cancel_child(run, step, f"its parent run {run.run_id} {status.value}")
        future = self._set_status(
            run, status, output=output, error=error, durable=True, after=run.write, failure=failure
        )
        future.add_done_callback(functools.partial(self._after_terminal, run))
        return future

    def _after_terminal(self, run: RunState, future: asyncio.Future[None]) -> None:
        if future.cancelled() or future.exception() is not None:
            # The final record did not make it to disk (disk full?): the run is not over.
            log.error(
                "run %s: recording its end failed (%s); retrying it in 1 s",
                run.run_id,
                future.exception(),
            )
            run.ending = False
            self.waiting.arm(run, "wake", self.clock.now_ms() + 1000)
            return
        waiters, run.waiters = run.waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)
        if run.parent_run_id is not None and run.parent_step is not None:
            parent = self.state.runs.get(run.parent_run_id)
            if parent is not None and not parent.ending and not parent.status.terminal:
                step = parent.steps.get(run.parent_step)
                if (
                    step is not None
                    and step.kind is StepKind.INVOKE
                    and step.status is StepStatus.PENDING
                    and step.child_run_id == run.run_id
                ):
                    # Records the invoke's outcome and resumes the parent (or schedules it).
                    self.waiting.settle_invoke(parent, step)

    def stop_run(
        self, run: RunState, status: RunStatus, error: dict[str, Any]
    ) -> asyncio.Future[None]:
        future = self._terminate(run, status, error=error)
        task = run.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        return future

    def cancel_child(self, parent: RunState, step: StepState, why: str) -> None:
        """Cancel the child run of ``parent``'s invoke ``step``, if it still runs."""
        child = self.state.runs.get(step.child_run_id or "")
        if child is not None and not self._over(child):
            log.info("run %s: cancelling child run %s (%s)", parent.run_id, child.run_id, why)
            self.stop_run(child, RunStatus.CANCELLED, {"type": "WorkflowCancelled", "message": why})

    # ------------------------------------------------------------------------ public API

    async def cancel(self, run_id: str) -> bool:
        """Cancel a run (and the children it waits on); True if it changed state."""
        run = self.state.runs.get(run_id)
        if run is None or run.ending or run.status.terminal:
            return False
        await self.stop_run(
            run, RunStatus.CANCELLED, {"type": "WorkflowCancelled", "message": "cancelled"}
        )
        return True

    async def send_event(self, event_type: str, payload: Any = None) -> int:
        """Record a signal and resume the matching parked waits; returns how many."""
        if not isinstance(event_type, str) or not event_type:
            raise ValueError(
                f"send_event needs an event type as a non-empty string, not {event_type!r}"
            )
        body = dumps(payload, f"payload of event {event_type!r}")
        state = self.state
        now = self.clock.now_ms()
        signal_id = new_id(now)
        resumed: list[int] = []

        def build(seq: int) -> bytes:
            return Signal(signal_id, event_type, body, now, seq).record()

        def apply(seq: int) -> None:
            signal = Signal(signal_id, event_type, body, now, seq)
            state.add_signal(signal)
            resumed.append(self.waiting.deliver(signal))

        await self._submit(build, apply)
        return resumed[0] if resumed else 0

    def run_state(self, run_id: str) -> RunState | None:
        return self.state.lookup(run_id)

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
        kind = record["rec"]
        if kind == "run":
            run = self.state.runs.get(record["runId"])
            if run is None or run.active or run.status is not RunStatus.QUEUED or not self._started:
                return
            if self.registry.get(run.workflow_id) is None:
                error = UnknownWorkflow(run.workflow_id, self.registry.ids())
                self._terminate(run, RunStatus.FAILED, error=describe_error(error))
                return
            self.waiting.arm_deadline(run)
            self.schedule(run)
        elif kind == "signal":
            signals = self.state.signals.get(record["type"], [])
            for signal in reversed(signals):
                if signal.signal_id == record["signalId"]:
                    self.waiting.deliver(signal)
                    break
        elif kind == "cancel":
            run = self.state.runs.get(record["runId"])
            if run is not None and not run.ending and not run.status.terminal:
                self.stop_run(
                    run, RunStatus.CANCELLED, {"type": "WorkflowCancelled", "message": "cancelled"}
                )
        elif kind == "compact" and self.on_compact_request is not None:
            self.on_compact_request()


def _undo_if_lost(pending: StepState, done: StepState, future: asyncio.Future[None]) -> None:
    if (future.cancelled() or future.exception() is not None) and pending.done is done:
        pending.done = None  # the step is pending again: a replay parks it anew


def _unclaim_if_lost(run: RunState, signal_id: str, future: asyncio.Future[None]) -> None:
    if future.cancelled() or future.exception() is not None:
        run.unclaim(signal_id)


def _release(waiter: asyncio.Future[None], _: object) -> None:
    if not waiter.done():
        waiter.set_result(None)


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


def _applied_fence() -> tuple[None, None]:
    """A submission that writes nothing: it resolves once every earlier one is applied."""
    return None, None
