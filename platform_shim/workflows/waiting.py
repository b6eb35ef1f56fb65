"""What parked runs wait for: the end of a sleep, an event, a child run, a deadline.

The engine hands a run over here when it parks (``park_*``) and gets it back through its
``schedule`` when what the run waits for happens: a timer comes due (one ``TimerWheel`` for all
of them), ``send_event`` delivers a matching signal, or a child ends. Whatever wakes a run first
records the pending step's outcome, so a run resumes exactly once per wait.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from platform_shim.errors import StepTimeout, WorkflowCancelled, WorkflowFailed
from platform_shim.jsonvalue import loads
from platform_shim.workflows.records import RunStatus, StepKind, StepStatus, WorkflowRun
from platform_shim.workflows.state import RunState, Signal, StepState, matches
from platform_shim.workflows.steps import Park
from platform_shim.workflows.timers import TimerWheel

if TYPE_CHECKING:
    from platform_shim.workflows.engine import Engine

__all__ = ["Waiting"]

log = logging.getLogger("platform_shim.workflows")


class Waiting:
    """Parked runs, by what they wait for, and the timers that end their waits."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.state = engine.state
        self.clock = engine.clock
        # event type -> run id -> (run, its pending wait step)
        self.index: dict[str, dict[str, tuple[RunState, StepState]]] = {}
        self.wheel = TimerWheel(engine.clock, self._on_timer)

    # --------------------------------------------------------------------------- parking

    def park_sleep(self, run: RunState, step: StepState) -> Park:
        assert step.wake_at is not None
        self.arm(run, "wake", step.wake_at)
        return Park()

    def _wake_sleep(self, run: RunState, name: str) -> None:
        step = run.steps.get(name)
        if (
            run.ending
            or run.status.terminal
            or step is None
            or step.status is not StepStatus.PENDING
        ):
            return
        self.engine.complete_step(run, step)
        self.engine.schedule(run)

    def park_wait(self, run: RunState, step: StepState) -> Park:
        assert step.event_type is not None
        self.index.setdefault(step.event_type, {})[run.run_id] = (run, step)
        if step.timeout_at is not None:
            self.arm(run, "wake", step.timeout_at)
        return Park()

    def unwait(self, run: RunState) -> None:
        for waiting in self.index.values():
            if waiting.pop(run.run_id, None) is not None:
                return

    def _wait_timed_out(self, run: RunState, step: StepState) -> None:
        # An event another process recorded before the timeout must win: read the ledger first.
        self.engine.log.refresh()
        if (
            run.ending
            or run.steps.get(step.name) is not step
            or run.run_id not in self.index.get(step.event_type or "", {})
        ):
            return
        self.unwait(run)
        self.engine.complete_step(run, step, output=b"null")
        self.engine.schedule(run)

    def take_waiting_signal(self, run: RunState, step: StepState) -> Any:
        """If a signal the pending wait ``step`` may take is recorded, take it (the payload)."""
        assert step.event_type is not None
        signal = self.state.oldest_signal(run, step.event_type, step.match)
        if signal is None:
            return None
        self._take(run, step, signal)
        return loads(signal.payload)

    def _take(self, run: RunState, step: StepState, signal: Signal) -> None:
        self.unwait(run)
        self.cancel_timer(run, "wake")
        self.engine.complete_step(run, step, output=signal.payload, signal_id=signal.signal_id)

    def deliver(self, signal: Signal) -> int:
        """Resume every parked wait this signal matches; returns how many."""
        waiting = self.index.get(signal.type)
        if not waiting:
            return 0
        payload: Any = None
        resumed = 0
        for run, step in list(waiting.values()):
            if signal.seq <= run.created_seq or (run.taken and signal.signal_id in run.taken):
                continue
            if step.match:
                if payload is None:
                    payload = loads(signal.payload)
                if not matches(step.match, payload):
                    continue
            self._take(run, step, signal)
            self.engine.schedule(run)
            resumed += 1
        return resumed

    def park_invoke(self, run: RunState, step: StepState) -> Park:
        if step.timeout_at is not None:
            self.arm(run, "wake", step.timeout_at)
        return Park()

    def _invoke_timed_out(self, run: RunState, step: StepState) -> None:
        if run.ending or run.steps.get(step.name) is not step:
            return
        self.engine.complete_step(
            run,
            step,
            status=StepStatus.FAILED,
            error={
                "type": "StepTimeout",
                "message": f"child run {step.child_run_id} of step {step.name!r} did not finish in time",
            },
        )
        self.engine.schedule(run)

    def settle_invoke(self, run: RunState, step: StepState) -> StepState | None:
        """If the child of a pending ``invoke`` has ended, record the step's outcome (returned)."""
        child = self.state.lookup(step.child_run_id or "")
        if child is None or not child.status.terminal:
            return None
        self.cancel_timer(run, "wake")
        if child.status is RunStatus.COMPLETED:
            return self.engine.complete_step(
                run, step, output=child.output if child.output is not None else b"null"
            )
        else:
            kind = "WorkflowFailed" if child.status is RunStatus.FAILED else "WorkflowCancelled"
            message = (child.error or {}).get("message", child.status.value)
            return self.engine.complete_step(
                run,
                step,
                status=StepStatus.FAILED,
                error={
                    "type": kind,
                    "message": f"child run {child.run_id} {child.status.value}: {message}",
                    "childRunId": child.run_id,
                },
            )

    def child_error(self, step: StepState) -> Exception:
        """The exception a failed ``invoke`` step raises in its parent."""
        error = step.error or {}
        message = str(error.get("message", "child run failed"))
        kind = error.get("type")
        if kind == "StepTimeout":
            return StepTimeout(message)
        child = self.state.lookup(step.child_run_id or "")
        snapshot = child.snapshot() if child is not None else _missing_run(step.child_run_id or "?")
        if kind == "WorkflowCancelled":
            return WorkflowCancelled(message, snapshot)
        return WorkflowFailed(message, snapshot)

    # ---------------------------------------------------------------------------- timers

    def arm(self, run: RunState, purpose: str, when: int) -> None:
        self.wheel.set(run, purpose, when)

    def cancel_timer(self, run: RunState, purpose: str) -> None:
        self.wheel.cancel(run, purpose)

    def _on_timer(self, run: RunState, purpose: str) -> None:
        """A run's timer came due: what it means follows from where the run stands."""
        if purpose == "deadline":
            self._deadline_passed(run)
            return
        if run.ending or run.status.terminal:
            return
        step = run.pending_step()
        if step is None or run.status is RunStatus.QUEUED:
            self.engine.schedule(
                run
            )  # a retry's backoff ended (or a failed final write is retried)
        elif step.kind is StepKind.SLEEP:
            self._wake_sleep(run, step.name)
        elif step.kind is StepKind.WAIT_EVENT:
            self._wait_timed_out(run, step)
        else:
            self._invoke_timed_out(run, step)

    def arm_deadline(self, run: RunState) -> None:
        workflow = self.engine.registry.get(run.workflow_id)
        if workflow is None or workflow.timeout_secs is None or run.status.terminal:
            return
        deadline = run.created_at + int(workflow.timeout_secs * 1000)
        self.arm(run, "deadline", deadline)

    def _deadline_passed(self, run: RunState) -> None:
        if run.ending or run.status.terminal:
            return
        workflow = self.engine.registry.get(run.workflow_id)
        timeout_secs = workflow.timeout_secs if workflow is not None else None
        log.warning(
            "run %s of %r timed out after timeoutSecs=%s", run.run_id, run.workflow_id, timeout_secs
        )
        self.engine.stop_run(
            run,
            RunStatus.FAILED,
            {"type": "WorkflowTimeout", "message": f"run exceeded timeoutSecs={timeout_secs}"},
        )


def _missing_run(run_id: str) -> WorkflowRun:
    return WorkflowRun(run_id, "?", RunStatus.FAILED, None, None, None, 1, 0, 0, None, None)
