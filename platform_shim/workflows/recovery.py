"""Recovery: after a start, every run that had not ended goes on from its ledger records; and
records other processes append (new runs, signals, cancels) are acted on as they arrive.

Invariants:

- **Idempotent.** Recovering re-arms timers and re-registers waits from the ledger and
  schedules queued and running runs once; running it again schedules nothing twice.
- **Order at start**: cancels asked for while no worker ran are carried out first, then each
  run past its ``timeoutSecs`` ends before anything resumes, then the rest resume.
- **One bad run never stops the others**: a run that cannot be recovered is logged and failed
  (naming the error), and recovery goes on.
- **A parked step whose outcome is already known** (an event recorded meanwhile, a child that
  ended) is finished at recovery, which resumes its run; nothing waits for a wake-up that
  already happened.
- **Poison pills are counted**: a run that was queued or running when the worker started is
  marked ``recovering``; its first activation writes an ``attempting`` record before each step
  body (``mark_attempting``); past ``max_recoveries`` deaths in a row the run fails instead.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from platform_shim.errors import UnknownWorkflow
from platform_shim.store.protocol import Record
from platform_shim.workflows import ending
from platform_shim.workflows.records import RunStatus, StepKind
from platform_shim.workflows.state import RunState
from platform_shim.workflows.suspension import Stop
from platform_shim.workflows.traces import describe_error

if TYPE_CHECKING:
    from platform_shim.workflows.engine import Engine

__all__ = ["CANCELLED", "mark_attempting", "on_foreign_record", "recover", "registry_changed"]

log = logging.getLogger("platform_shim.workflows")

CANCELLED = {"type": "WorkflowCancelled", "message": "cancelled"}


def recover(engine: Engine) -> None:
    """Resume every non-terminal run from the ledger."""
    state = engine.state
    now = engine.clock.now_ms()
    for run_id in list(state.cancels):
        # Asked for while no worker ran: carry it out before anything resumes.
        run = state.runs.get(run_id)
        if run is not None and not run.ending and not run.status.terminal:
            ending.stop_run(engine, run, RunStatus.CANCELLED, dict(CANCELLED))
    for run in list(state.runs.values()):
        if run.status.terminal or run.ending:
            continue
        try:
            _recover_run(engine, run, now)
        except Exception as exc:
            # One run that cannot be recovered must not keep the others from resuming: it
            # is logged and ended failed, naming the error, so it shows instead of hanging.
            log.exception("run %s of %r could not be recovered", run.run_id, run.workflow_id)
            error = describe_error(exc)
            error["message"] = f"could not be recovered after a restart: {error['message']}"
            ending.terminate(engine, run, RunStatus.FAILED, error=error)


def _recover_run(engine: Engine, run: RunState, now: int) -> None:
    """Re-arm a non-terminal run's timers and waits, or schedule it (idempotent)."""
    waiting = engine.waiting
    waiting.arm_deadline(run)
    if waiting.overdue(run):
        # Past its timeoutSecs while no worker ran: it ends now, before anything resumes.
        waiting.deadline_passed(run)
        return
    if run.status in (RunStatus.QUEUED, RunStatus.RUNNING):
        engine.recovering.add(run.run_id)
        if run.retry_at is not None and run.retry_at > now:
            waiting.arm(run, "wake", run.retry_at)
        else:
            engine.schedule(run)
        return
    if run.pending is None:
        engine.schedule(run)
        return
    for step in run.parked_steps():
        # Each parked step's timer and index entry; one whose outcome is already known is
        # finished, which resumes it.
        if step.kind is StepKind.WAIT_EVENT:
            if waiting.take_waiting_signal(run, step) is None:
                waiting.park(run, step)
        elif step.kind is StepKind.INVOKE:
            if waiting.settle_invoke(run, step) is None:
                waiting.park(run, step)
        else:
            waiting.park(run, step)


def registry_changed(engine: Engine) -> None:
    """Workflows were (re)loaded: runs that waited for their code can go on."""
    for run in engine.state.runs.values():
        if (
            run.status in (RunStatus.QUEUED, RunStatus.RUNNING)
            and not run.active
            and run.retry_at is None
            and engine.registry.get(run.workflow_id) is not None
        ):
            engine.schedule(run)


def on_foreign_record(engine: Engine, record: Record) -> None:
    """Another process appended ``record`` to the ledger (already folded into the state)."""
    kind = record["rec"]
    state = engine.state
    if kind == "run":
        run = state.runs.get(record["runId"])
        if run is None or run.active or run.status is not RunStatus.QUEUED:
            return
        if engine.registry.get(run.workflow_id) is None:
            error = UnknownWorkflow(run.workflow_id, engine.registry.ids())
            ending.terminate(engine, run, RunStatus.FAILED, error=describe_error(error))
            return
        engine.waiting.arm_deadline(run)
        engine.schedule(run)
    elif kind == "signal":
        signals = state.signals.get(record["type"], [])
        for signal in reversed(signals):
            if signal.signal_id == record["signalId"]:
                engine.waiting.deliver(signal)
                break
    elif kind == "cancel":
        run = state.runs.get(record["runId"])
        if run is not None and not run.ending and not run.status.terminal:
            ending.stop_run(engine, run, RunStatus.CANCELLED, dict(CANCELLED))
    elif kind == "compact" and engine.on_compact_request is not None:
        engine.on_compact_request()


async def mark_attempting(engine: Engine, run: RunState, name: str) -> None:
    """Before a recovered run starts the body of step ``name``: count, durably, how many
    times the process died while that body ran; past the bound the run fails instead."""
    previous = run.attempting
    count = previous[1] + 1 if previous is not None and previous[0] == name else 1
    if count > engine.max_recoveries:
        error = {
            "type": "StepCrashedProcess",
            "message": (
                f"the process died while step {name!r} ran, {count - 1} times in a row; "
                "the run was failed instead of running it again"
            ),
            "step": name,
        }
        log.error("run %s of %r: %s", run.run_id, run.workflow_id, error["message"])
        ending.terminate(engine, run, RunStatus.FAILED, error=error)
        raise Stop
    await engine.writer.attempting(run, name, count)
