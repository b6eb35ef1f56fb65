"""``platform.workflows``: start runs, get handles, list, send events.

Two implementations behind one API. In the worker (a host or ``open_platform``) calls go to the
engine. Anywhere else a client records requests in the ledger (a ``run`` record to start, a
``signal`` for ``send_event``, a ``cancel``) and the worker, which tails the ledger, carries them
out; a client's ``result()`` follows the ledger until the run ends.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from platform_shim.errors import UnknownRun, UnknownWorkflow, WorkflowCancelled, WorkflowFailed
from platform_shim.ids import new_id
from platform_shim.jsonvalue import dumps
from platform_shim.workflows.archive import ARCHIVE_NAME, RunArchive
from platform_shim.workflows.engine import Engine
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
from platform_shim.workflows.state import Signal, steps_before
from platform_shim.workflows.waiting import takers
from platform_shim.workflows.writer import RunWriter, check_run_id

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

    async def ticks(self) -> dict[str, int]:
        """The last cron tick fired per scheduled workflow id (epoch ms)."""
        raise NotImplementedError

    async def request_compaction(self) -> None:
        """Ask the worker to compact soon, in the background (it logs how much it saved)."""
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

    async def ticks(self) -> dict[str, int]:
        return {workflow_id: at for workflow_id, (at, _) in self.engine.state.ticks.items()}

    async def request_compaction(self) -> None:
        if self.engine.on_compact_request is not None:
            self.engine.on_compact_request()

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
        self.writer = RunWriter(self.state, self.log, platform.clock)

    def _refresh(self) -> None:
        self.log.fresh()

    def _known_workflows(self) -> list[str] | None:
        """The workflow ids the folder's live worker advertises, if a worker is running."""
        advert = self._platform.store.read_advert()
        if advert is None:
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
        minted = run_id is None
        run_id = new_id(self._clock.now_ms()) if run_id is None else check_run_id(run_id)
        await self.writer.create_run(run_id, workflow_id, input_bytes, minted=minted)
        return WorkflowHandle(self, run_id)

    async def send_event(self, event_type: str, payload: Any = None) -> int:
        # The worker resumes the waits when it reads the signal; counted here from the same
        # ledger, by the same rule.
        return await self.writer.signal(event_type, payload, self._would_resume)

    async def rerun(self, run_id: str, from_step: str) -> WorkflowHandle:
        self._refresh()
        original = self.state.lookup(run_id)
        if original is None:
            raise UnknownRun(run_id)
        prefill = steps_before(original, from_step)
        rerun_id = new_id(self._clock.now_ms())
        await self.writer.create_run(
            rerun_id,
            original.workflow_id,
            original.input,
            prefill=prefill,
            rerun_of={"runId": run_id, "fromStep": from_step},
            minted=True,
        )
        return WorkflowHandle(self, rerun_id)

    def _would_resume(self, signal: Signal) -> int:
        waits = (
            (run, step)
            for run in self.state.runs.values()
            if not run.status.terminal
            for step in run.parked_steps()
            if step.kind is StepKind.WAIT_EVENT and step.event_type == signal.type
        )
        return sum(1 for _ in takers(waits, signal))

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

    async def ticks(self) -> dict[str, int]:
        self._refresh()
        return {workflow_id: at for workflow_id, (at, _) in self.state.ticks.items()}

    async def request_compaction(self) -> None:
        # A ``compact`` record: the worker tails the ledger and compacts when it applies one.
        state = self.state
        await self.log.submit(
            lambda: (dumps({"rec": "compact", "seq": state.last_seq + 1}, "compact request"), None)
        )

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
        await self.writer.cancel_request(run_id)
        return True


def client_workflows(platform: Platform) -> WorkflowsService:
    """The client-side workflows service for a platform that runs no engine."""
    return ClientWorkflows(platform)
