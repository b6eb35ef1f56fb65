"""What parked runs wait for: the end of a sleep, an event, a child run, a deadline.

A step that must wait (a sleep, a wait for an event, an invoke) is *parked* here (``park_*``):
its timer is armed and a wait is indexed by event type. Parallel steps may park several steps
of one run at once; each has its own timer and index entry. When what a step waits for happens
— its timer comes due, ``send_event`` delivers a matching signal, or its child ends — whatever
came first records the step's outcome and hands it to the engine (``Engine.resume``), which
continues the run's suspended activation or starts a new one. A step is finished exactly once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from platform_shim.errors import StepTimeout, WorkflowCancelled, WorkflowFailed
from platform_shim.jsonvalue import loads
from platform_shim.workflows import ending
from platform_shim.workflows.records import RunStatus, StepKind, StepStatus, WorkflowRun
from platform_shim.workflows.state import RunState, Signal, StepState, matches
from platform_shim.workflows.timers import Purpose, TimerWheel

if TYPE_CHECKING:
    from platform_shim.workflows.engine import Engine

__all__ = ["Waiting", "takers"]

log = logging.getLogger("platform_shim.workflows")


def takers(
    waits: Iterable[tuple[RunState, StepState]], signal: Signal
) -> Iterator[tuple[RunState, StepState]]:
    """The waits among ``waits`` (pending ``wait_for_event`` steps of ``signal``'s type, oldest
    first) that ``signal`` finishes: in each run created before it (the no-race rule) that has
    not taken it already, the first one whose ``match`` it satisfies. The worker delivers to
    these; a client process counts them (what ``send_event`` answers)."""
    payload: Any = None
    seen: set[str] = set()
    for run, step in waits:
        if run.run_id in seen or signal.seq <= run.created_seq:
            continue  # a wait of this run took it already, or it is too old for this run
        if run.taken and signal.signal_id in run.taken:
            continue
        if step.match:
            if payload is None:
                payload = loads(signal.payload)
            if not matches(step.match, payload):
                continue
        seen.add(run.run_id)
        yield run, step


class Waiting:
    """Parked steps, by what they wait for, and the timers that end their waits."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.state = engine.state
        self.clock = engine.clock
        # event type -> (run id, step name) -> (run, its pending wait step); oldest wait first
        self.index: dict[str, dict[tuple[str, str], tuple[RunState, StepState]]] = {}
        self.wheel = TimerWheel(engine.clock, self._on_timer)

    # --------------------------------------------------------------------------- parking

    def park(self, run: RunState, step: StepState) -> None:
        """Arm what ends ``step`` (a pending sleep, wait or invoke of ``run``)."""
        if step.kind is StepKind.SLEEP:
            assert step.wake_at is not None
            self.wheel.set(run, step, step.wake_at)
        elif step.kind is StepKind.WAIT_EVENT:
            assert step.event_type is not None
            self.index.setdefault(step.event_type, {})[(run.run_id, step.name)] = (run, step)
            if step.timeout_at is not None:
                self.wheel.set(run, step, step.timeout_at)
        elif step.timeout_at is not None:
            self.wheel.set(run, step, step.timeout_at)

    def unpark(self, run: RunState, step: StepState) -> None:
        """Disarm ``step``'s timer and index entry (it finished, or the run ends)."""
        self.wheel.cancel(run, step)
        if step.kind is StepKind.WAIT_EVENT and step.event_type is not None:
            waiting = self.index.get(step.event_type)
            if waiting is not None:
                waiting.pop((run.run_id, step.name), None)
                if not waiting:
                    del self.index[step.event_type]

    def unwait(self, run: RunState) -> None:
        """Disarm every parked step of ``run`` (it ends)."""
        for step in run.parked_steps():
            self.unpark(run, step)

    def _finish(
        self, run: RunState, pending: StepState, *, resume: bool = True, **fields: Any
    ) -> StepState:
        """Record ``pending`` as finished; with ``resume``, hand its outcome to the run (the
        activation that reached it inline takes the outcome itself)."""
        self.unpark(run, pending)
        done = self.engine.writer.complete_step(run, pending, **fields)
        if resume:
            self.engine.resume(run, pending, done)
        return done

    def _open(self, run: RunState, step: StepState) -> bool:
        """Whether ``step`` is still a parked step of a live run (nothing finished it yet)."""
        return (
            not run.ending
            and not run.status.terminal
            and step.done is None
            and run.steps.get(step.name) is step
            and step.status is StepStatus.PENDING
        )

    # ------------------------------------------------------------------------- sleeping

    def _wake_sleep(self, run: RunState, step: StepState) -> None:
        if self._open(run, step):
            self._finish(run, step)

    # ------------------------------------------------------------------------- events

    def _wait_timed_out(self, run: RunState, step: StepState) -> None:
        # An event another process recorded before the timeout must win: read the ledger first.
        self.engine.log.refresh()
        key = (run.run_id, step.name)
        if not self._open(run, step) or key not in self.index.get(step.event_type or "", {}):
            return
        self._finish(run, step, output=b"null")

    def take_waiting_signal(
        self, run: RunState, step: StepState, *, resume: bool = True
    ) -> Signal | None:
        """If a signal the pending wait ``step`` may take is recorded, take it (and return it:
        its payload may be ``null``, so the payload cannot say whether one was taken)."""
        assert step.event_type is not None
        signal = self.state.oldest_signal(run, step.event_type, step.match)
        if signal is not None:
            self._take(run, step, signal, resume=resume)
        return signal

    def _take(self, run: RunState, step: StepState, signal: Signal, *, resume: bool = True) -> None:
        self._finish(run, step, resume=resume, output=signal.payload, signal_id=signal.signal_id)

    def deliver(self, signal: Signal) -> int:
        """Finish every parked wait this signal matches, at most one per run (the oldest
        wait); returns how many."""
        waiting = self.index.get(signal.type)
        if not waiting:
            return 0
        resumed = 0
        for run, step in takers(list(waiting.values()), signal):
            self._take(run, step, signal)
            resumed += 1
        return resumed

    # ------------------------------------------------------------------------ children

    def _invoke_timed_out(self, run: RunState, step: StepState) -> None:
        if not self._open(run, step):
            return
        self._finish(
            run,
            step,
            status=StepStatus.FAILED,
            error={
                "type": "StepTimeout",
                "message": f"child run {step.child_run_id} of step {step.name!r} did not finish in time",
                "childRunId": step.child_run_id,
            },
        )
        if step.on_parent_close != "abandon":
            ending.cancel_child(self.engine, run, step, "its invoke timed out")

    def settle_invoke(
        self, run: RunState, step: StepState, *, resume: bool = True
    ) -> StepState | None:
        """If the child of a pending ``invoke`` has ended, record the step's outcome (returned)."""
        if step.done is not None:
            return step.done
        child = self.state.lookup(step.child_run_id or "")
        if child is None or not child.status.terminal:
            return None
        if child.status is RunStatus.COMPLETED:
            return self._finish(
                run,
                step,
                resume=resume,
                output=child.output if child.output is not None else b"null",
            )
        kind = "WorkflowFailed" if child.status is RunStatus.FAILED else "WorkflowCancelled"
        message = (child.error or {}).get("message", child.status.value)
        return self._finish(
            run,
            step,
            resume=resume,
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

    def _on_timer(self, run: RunState, purpose: Purpose) -> None:
        """A timer came due: what it means follows from whose it is."""
        if purpose == "deadline":
            self.deadline_passed(run)
        elif purpose == "wake":
            # A retry's backoff ended (or a failed final write is tried again).
            if not run.ending and not run.status.terminal:
                self.engine.schedule(run)
        else:
            assert isinstance(purpose, StepState)
            if purpose.kind is StepKind.SLEEP:
                self._wake_sleep(run, purpose)
            elif purpose.kind is StepKind.WAIT_EVENT:
                self._wait_timed_out(run, purpose)
            else:
                self._invoke_timed_out(run, purpose)

    def arm_deadline(self, run: RunState) -> None:
        workflow = self.engine.registry.get(run.workflow_id)
        if workflow is None or workflow.timeout_secs is None or run.status.terminal:
            return
        deadline = run.created_at + int(workflow.timeout_secs * 1000)
        self.arm(run, "deadline", deadline)

    def overdue(self, run: RunState) -> bool:
        """Whether the run's ``timeoutSecs`` deadline has passed (checked before it resumes)."""
        workflow = self.engine.registry.get(run.workflow_id)
        if workflow is None or workflow.timeout_secs is None:
            return False
        return self.clock.now_ms() >= run.created_at + int(workflow.timeout_secs * 1000)

    def deadline_passed(self, run: RunState) -> None:
        if run.ending or run.status.terminal:
            return
        workflow = self.engine.registry.get(run.workflow_id)
        timeout_secs = workflow.timeout_secs if workflow is not None else None
        log.warning(
            "run %s of %r timed out after timeoutSecs=%s", run.run_id, run.workflow_id, timeout_secs
        )
        ending.stop_run(
            self.engine,
            run,
            RunStatus.FAILED,
            {"type": "WorkflowTimeout", "message": f"run exceeded timeoutSecs={timeout_secs}"},
        )


def _missing_run(run_id: str) -> WorkflowRun:
    return WorkflowRun(run_id, "?", RunStatus.FAILED, None, None, None, 1, 0, 0, None, None)
