"""``platform.workflows``: start runs, get handles, list, send events.

Two implementations behind one API. In the worker (a host or ``open_platform``) calls go to the
engine. Anywhere else a client records requests in the ledger (a ``run`` record to start, a
``signal`` for ``send_event``, a ``cancel``) and the worker, which tails the ledger, carries them
out; a client's ``result()`` follows the ledger until the run ends.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from platform_shim.errors import UnknownRun, UnknownWorkflow, WorkflowCancelled, WorkflowFailed
from platform_shim.ids import new_id
from platform_shim.jsonvalue import dumps, loads
from platform_shim.workflows.archive import ARCHIVE_NAME, RunArchive
from platform_shim.workflows.engine import Engine, check_run_id
from platform_shim.workflows.ledger import LedgerState
from platform_shim.workflows.operator_detail import RunDetail
from platform_shim.workflows.records import (
    RunStatus,
    StepKind,
    StepRecord,
    StepStatus,
    WorkflowRun,
    close_open_steps,
)
from platform_shim.workflows.state import RunState, Signal, matches, steps_before

if TYPE_CHECKING:
    from platform_shim.platform import Platform

__all__ = ["WorkflowHandle", "WorkflowsService", "client_workflows"]

RunList = list[WorkflowRun]
StepList = list[StepRecord]


def _check_status(status: object) -> str | None:
    if status is None:
        return None
    value = status.value if isinstance(status, RunStatus) else status
    if value not in {s.value for s in RunStatus}:
        raise ValueError(f"unknown run status {status!r}; one of {[s.value for s in RunStatus]}")
    return str(value)


def _check_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be a positive integer, not {limit!r}")
    return limit


def _outcome(run: WorkflowRun) -> Any:
    if run.status is RunStatus.COMPLETED:
        return run.output
    message = (run.error or {}).get("message", run.status.value)
    if run.status is RunStatus.CANCELLED:
        raise WorkflowCancelled(f"run {run.run_id} of {run.workflow_id!r} was cancelled", run)
    raise WorkflowFailed(f"run {run.run_id} of {run.workflow_id!r} failed: {message}", run)


class WorkflowHandle:
    """A run: ``run_id``, ``status()``, ``history()``, ``result()``, ``cancel()``."""

    __slots__ = ("_service", "run_id")

    def __init__(self, service: WorkflowsService, run_id: str) -> None:
        self._service = service
        self.run_id = run_id

    async def status(self) -> WorkflowRun | None:
        """The run record, or None if there is no such run."""
        return await self._service.run_status(self.run_id)

    async def history(self) -> StepList:
        """Its steps, in the order they were first reached; once the run has ended, a step it
        left pending shows as ``abandoned``."""
        steps = await self._service.run_history(self.run_id)
        if any(step.status is StepStatus.PENDING for step in steps):
            run = await self._service.run_status(self.run_id)
            if run is not None:
                steps = close_open_steps(steps, run.status)
        return steps

    async def result(self, timeout: float | None = None) -> Any:
        """Wait for the end: the output, or ``WorkflowFailed``/``WorkflowCancelled`` (with
        ``.run``); ``TimeoutError`` after ``timeout`` seconds; ``UnknownRun`` for no such run."""
        return await asyncio.wait_for(self._service.run_result(self.run_id), timeout)

    async def cancel(self) -> bool:
        """Cancel the run; True if it changed state."""
        return await self._service.run_cancel(self.run_id)

    def __repr__(self) -> str:
        return f"WorkflowHandle({self.run_id!r})"


class WorkflowsService:
    """The API both the worker's and a client's ``platform.workflows`` offer."""

    async def start(
        self, workflow_id: str, input: Any = None, *, run_id: str | None = None
    ) -> WorkflowHandle:
        """Start a run; a ``run_id`` that exists returns its handle and starts nothing."""
        raise NotImplementedError

    def handle(self, run_id: str) -> WorkflowHandle:
        """A handle to an existing run (starts nothing)."""
        if not isinstance(run_id, str) or not run_id:
            raise ValueError(f"a run id must be a non-empty string, not {run_id!r}")
        return WorkflowHandle(self, run_id)

    async def send_event(self, event_type: str, payload: Any = None) -> int:
        """Record an event for ``wait_for_event``; returns how many parked runs it resumed."""
        raise NotImplementedError

    async def rerun(self, run_id: str, from_step: str) -> WorkflowHandle:
        """A new run of ``run_id``'s workflow and input that reuses the recorded results of the
        steps before ``from_step``: those replay, ``from_step`` and later run again."""
        raise NotImplementedError

    async def list(
        self,
        workflow_id: str | None = None,
        status: str | RunStatus | None = None,
        limit: int = 100,
        *,
        before: str | None = None,
    ) -> RunList:
        """Runs, newest first; ``before`` (the last run id of a page) gives the next page."""
        raise NotImplementedError

    async def counts(self, workflow_id: str | None = None) -> dict[str, int]:
        """How many runs there are in each status (of one workflow, if given)."""
        raise NotImplementedError

    async def run_status(self, run_id: str) -> WorkflowRun | None:
        raise NotImplementedError

    async def run_history(self, run_id: str) -> StepList:
        raise NotImplementedError

    async def run_detail(self, run_id: str) -> RunDetail | None:
        """What the run's public record leaves out (its rerun origin, its failed attempts'
        tracebacks: for the dashboard, never the public API), or None for no such run."""
        raise NotImplementedError

    async def run_result(self, run_id: str) -> Any:
        raise NotImplementedError

    async def run_cancel(self, run_id: str) -> bool:
        raise NotImplementedError


class EngineWorkflows(WorkflowsService):
    """``platform.workflows`` inside the worker."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def start(
        self, workflow_id: str, input: Any = None, *, run_id: str | None = None
    ) -> WorkflowHandle:
        return WorkflowHandle(self, await self.engine.start_run(workflow_id, input, run_id=run_id))

    async def send_event(self, event_type: str, payload: Any = None) -> int:
        return await self.engine.send_event(event_type, payload)

    async def rerun(self, run_id: str, from_step: str) -> WorkflowHandle:
        return WorkflowHandle(self, await self.engine.rerun(run_id, from_step))

    async def list(
        self,
        workflow_id: str | None = None,
        status: str | RunStatus | None = None,
        limit: int = 100,
        *,
        before: str | None = None,
    ) -> RunList:
        return self.engine.list_runs(
            workflow_id, _check_status(status), _check_limit(limit), before
        )

    async def counts(self, workflow_id: str | None = None) -> dict[str, int]:
        return self.engine.state.status_counts(workflow_id)

    async def run_status(self, run_id: str) -> WorkflowRun | None:
        return await self.engine.status(run_id)

    async def run_history(self, run_id: str) -> StepList:
        return await self.engine.history(run_id)

    async def run_detail(self, run_id: str) -> RunDetail | None:
        return RunDetail.of(self.engine.run_state(run_id))

    async def run_result(self, run_id: str) -> Any:
        run = await self.engine.wait_terminal(run_id)
        if run is None:
            raise UnknownRun(run_id)
        return _outcome(run.snapshot())

    async def run_cancel(self, run_id: str) -> bool:
        return await self.engine.cancel(run_id)


class ClientWorkflows(WorkflowsService):
    """``platform.workflows`` in a process that is not the worker: requests go through the ledger."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._clock = platform.clock
        self.state = LedgerState()
        # Finished runs compaction moved out of the ledger are read (read-only) from the archive.
        archive = platform.store.open_archive(ARCHIVE_NAME, writable=False)
        self.state.archive = RunArchive(archive, retiring=False)
        self.log = platform.store.open_log("runs", self.state)

    def _refresh(self) -> None:
        self.log.fresh()

    def _known_workflows(self) -> list[str] | None:
        """The workflow ids the folder's live worker advertises, if a worker is running."""
        store = self._platform.store
        path = store.data_dir / ".locks" / "worker.json"
        try:
            advert = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        if store.worker_pid() is None:
            return None
        ids = advert.get("workflows")
        return [str(w) for w in ids] if isinstance(ids, list) else None

    async def start(
        self, workflow_id: str, input: Any = None, *, run_id: str | None = None
    ) -> WorkflowHandle:
        if not isinstance(workflow_id, str) or not workflow_id:
            raise ValueError(f"a workflow id must be a non-empty string, not {workflow_id!r}")
        known = self._known_workflows()
        if known is not None and workflow_id not in known:
            raise UnknownWorkflow(workflow_id, known)
        input_bytes = dumps(input, f"input of workflow {workflow_id!r}")
        now = self._clock.now_ms()
        run_id = new_id(now) if run_id is None else check_run_id(run_id)
        state = self.state

        def prepare() -> tuple[bytes | None, Callable[[], None] | None]:
            if not state.claim_run_id(run_id, workflow_id):
                return None, None
            seq = state.last_seq + 1
            run = RunState(run_id, workflow_id, input_bytes, now, seq)

            def applied() -> None:
                state.last_seq = max(state.last_seq, seq)
                state.add_run(run, seq)

            return run.run_record(seq), applied

        await self.log.submit(prepare)
        return WorkflowHandle(self, run_id)

    async def send_event(self, event_type: str, payload: Any = None) -> int:
        if not isinstance(event_type, str) or not event_type:
            raise ValueError(
                f"send_event needs an event type as a non-empty string, not {event_type!r}"
            )
        body = dumps(payload, f"payload of event {event_type!r}")
        now = self._clock.now_ms()
        signal_id = new_id(now)
        state = self.state
        count: list[int] = []

        def prepare() -> tuple[bytes, Callable[[], None]]:
            seq = state.last_seq + 1
            signal = Signal(signal_id, event_type, body, now, seq)

            def applied() -> None:
                state.last_seq = max(state.last_seq, seq)
                state.add_signal(signal)
                count.append(self._would_resume(signal))

            return signal.record(), applied

        await self.log.submit(prepare)
        return count[0]

    async def rerun(self, run_id: str, from_step: str) -> WorkflowHandle:
        self._refresh()
        original = self.state.lookup(run_id)
        if original is None:
            raise UnknownRun(run_id)
        prefill = steps_before(original, from_step)
        now = self._clock.now_ms()
        rerun_id = new_id(now)
        state = self.state

        def prepare() -> tuple[bytes, Callable[[], None]]:
            seq = state.last_seq + 1
            run = RunState(
                rerun_id,
                original.workflow_id,
                original.input,
                now,
                seq,
                rerun_of={"runId": run_id, "fromStep": from_step},
            )
            lines = [run.run_record(seq)]
            for offset, step in enumerate(prefill, start=1):
                step.seq = seq + offset
                lines.append(step.record(rerun_id))

            def applied() -> None:
                state.last_seq = max(state.last_seq, seq + len(prefill))
                state.add_run(run, seq)
                for step in prefill:
                    state.put_step(run, step)

            return b"\n".join(lines), applied

        await self.log.submit(prepare)
        return WorkflowHandle(self, rerun_id)

    def _would_resume(self, signal: Signal) -> int:
        # The worker resumes these when it reads the signal; counted here from the same ledger.
        payload = loads(signal.payload)
        count = 0
        for run in self.state.runs.values():
            if run.status is not RunStatus.WAITING_EVENT or run.created_seq >= signal.seq:
                continue
            step = run.pending_step()
            if (
                step is None
                or step.kind is not StepKind.WAIT_EVENT
                or step.event_type != signal.type
            ):
                continue
            if step.match is None or matches(step.match, payload):
                count += 1
        return count

    async def list(
        self,
        workflow_id: str | None = None,
        status: str | RunStatus | None = None,
        limit: int = 100,
        *,
        before: str | None = None,
    ) -> RunList:
        wanted = _check_status(status)
        _check_limit(limit)
        self._refresh()
        return self.state.page(workflow_id, wanted, limit, before)

    async def counts(self, workflow_id: str | None = None) -> dict[str, int]:
        self._refresh()
        return self.state.status_counts(workflow_id)

    async def run_status(self, run_id: str) -> WorkflowRun | None:
        self._refresh()
        return self.state.snapshot(run_id)

    async def run_history(self, run_id: str) -> StepList:
        self._refresh()
        run = self.state.lookup(run_id)
        return [step.snapshot() for step in run.steps.values()] if run is not None else []

    async def run_detail(self, run_id: str) -> RunDetail | None:
        self._refresh()
        return RunDetail.of(self.state.lookup(run_id))

    async def run_result(self, run_id: str) -> Any:
        delay = 0.005
        while True:
            self.log.refresh()
            snapshot = self.state.snapshot(run_id)
            if snapshot is None:
                raise UnknownRun(run_id)
            if snapshot.status.terminal:
                return _outcome(snapshot)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def run_cancel(self, run_id: str) -> bool:
        self._refresh()
        run = self.state.runs.get(run_id)
        if run is None or run.status.terminal:
            return False
        state = self.state
        now = self._clock.now_ms()

        def prepare() -> tuple[bytes, Callable[[], None]]:
            seq = state.last_seq + 1
            line = dumps(
                {"rec": "cancel", "seq": seq, "runId": run_id, "at": now}, "cancel request"
            )

            def applied() -> None:
                state.last_seq = max(state.last_seq, seq)

            return line, applied

        await self.log.submit(prepare)
        return True


def client_workflows(platform: Platform) -> WorkflowsService:
    """The client-side workflows service for a platform that runs no engine."""
    return ClientWorkflows(platform)
