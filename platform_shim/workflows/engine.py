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
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from platform_shim.clock import Clock
from platform_shim.errors import (
    DuplicateStepName,
    NonDeterminismError,
    UnknownRun,
    UnknownWorkflow,
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
from platform_shim.workflows.steps import Park, Step, Stop, describe_error
from platform_shim.workflows.waiting import Waiting

if TYPE_CHECKING:
    from platform_shim.platform import Platform

__all__ = ["Engine", "WorkflowContext", "default_backoff"]

log = logging.getLogger("platform_shim.workflows")

DEFAULT_OUTPUT_LIMIT = 4 * 1024 * 1024


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
    ) -> None:
        self.platform = platform
        self.registry = registry
        self.clock = clock
        self.output_limit = output_limit
        self.retry_backoff = retry_backoff
        self.state = LedgerState()
        self.waiting = Waiting(self)
        self._tasks: set[asyncio.Task[None]] = set()
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
            self.waiting.arm_deadline(run)
            if run.status in (RunStatus.QUEUED, RunStatus.RUNNING):
                if run.retry_at is not None and run.retry_at > now:
                    self.waiting.arm(run, "wake", run.retry_at)
                else:
                    self.schedule(run)
                continue
            step = run.pending_step()
            if step is None:
                self.schedule(run)
            elif step.kind is StepKind.SLEEP:
                self.waiting.park_sleep(run, step)
            elif step.kind is StepKind.WAIT_EVENT:
                if self.waiting.take_waiting_signal(run, step) is not None:
                    self.schedule(run)
                else:
                    self.waiting.park_wait(run, step)
            elif self.waiting.settle_invoke(run, step) is not None:
                self.schedule(run)
            else:
                self.waiting.park_invoke(run, step)
        self.relay.paused = False
        self.relay.flush()

    async def stop(self) -> None:
        """Stop every activation (runs resume after the next start) and flush the ledger."""
        self._started = False
        self.waiting.wheel.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
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

        self._track(run, self._submit(build, lambda seq: state.put_step(run, step)))

    def complete_step(self, run: RunState, pending: StepState, **fields: Any) -> StepState:
        """Record ``pending`` (a sleep, wait or invoke) as finished."""
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
            **fields,
        )
        self.record_step(run, done)
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
    ) -> asyncio.Future[None]:
        """Submit a status record; with ``after``, refuse it if that earlier write failed."""
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
            if self.state.known(run_id):
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
            # Created meanwhile, here or by another process? A freshly minted id cannot be
            # archived already: only the live runs need a look (the archive's is a disk lookup).
            if run_id in state.runs if minted else state.known(run_id):
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
        if not self.state.known(step.child_run_id):
            self._create_run(step.child_run_id, workflow_id, input_bytes, (parent, step.name))

    def schedule(self, run: RunState) -> None:
        if run.active or run.ending or run.status.terminal or not self._started:
            return
        run.active = True
        task = asyncio.get_running_loop().create_task(
            self._activate(run), name=f"run:{run.run_id}", context=self.platform.context
        )
        run.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
            if run.status is not RunStatus.RUNNING or run.retry_at is not None:
                self._mark_running(run)
            step = Step(self, run)
            context = WorkflowContext(self.platform, run)
            try:
                output = await workflow.handler(loads(run.input), step, context)
            except (Park, Stop):
                return
            except asyncio.CancelledError:
                if self._over(run):
                    return
                raise
            except (DuplicateStepName, NonDeterminismError) as exc:
                log.error("run %s of %r failed without retry: %s", run.run_id, run.workflow_id, exc)
                self._terminate(run, RunStatus.FAILED, error=describe_error(exc, step.current))
                return
            except Exception as exc:
                self._attempt_failed(run, workflow, exc, step.current)
                return
            if self._over(run):
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
                exc_info=exc,
            )
            self._set_status(
                run, RunStatus.QUEUED, attempt=run.attempt + 1, error=error, retry_at=retry_at
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
        self._terminate(run, RunStatus.FAILED, error=error)

    def _terminate(
        self,
        run: RunState,
        status: RunStatus,
        *,
        output: bytes | None = None,
        error: dict[str, Any] | None = None,
    ) -> asyncio.Future[None]:
        """Submit the run's final status; when it is durable, wake whoever waits on it."""
        run.ending = True
        self.waiting.cancel_timer(run, "wake")
        self.waiting.cancel_timer(run, "deadline")
        self.waiting.unwait(run)
        future = self._set_status(
            run, status, output=output, error=error, durable=True, after=run.write
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
                    and self.waiting.settle_invoke(parent, step) is not None
                ):
                    self.schedule(parent)

    def stop_run(
        self, run: RunState, status: RunStatus, error: dict[str, Any]
    ) -> asyncio.Future[None]:
        future = self._terminate(run, status, error=error)
        task = run.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        step = run.pending_step()
        if step is not None and step.kind is StepKind.INVOKE and step.child_run_id:
            child = self.state.runs.get(step.child_run_id)
            if child is not None and not child.ending and not child.status.terminal:
                self.stop_run(
                    child,
                    RunStatus.CANCELLED,
                    {
                        "type": "WorkflowCancelled",
                        "message": f"parent run {run.run_id} {status.value}",
                    },
                )
        return future

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
