"""How runs end: a failed attempt (retried or final), the final status, a stop (cancel,
timeout), and the children that end with their parent.

Invariants:

- **One end per run.** ``terminate`` marks the run ``ending`` before it submits the final
  status; nothing schedules a run that is ending, and a second end is ignored.
- **The final status is written after the run's step records** (``after=run.write``): if an
  earlier record of the run failed to write, so does the end, and the run is retried in 1 s
  instead of ending on a history that is not on disk.
- **Whoever waits hears of the end only once it is durable**: waiters of ``result()`` and a
  parent's invoke are released in ``_after_terminal``.
- **Children end with their parent**: ending a run cancels the children its pending invokes
  wait for, unless they were invoked with ``on_parent_close="abandon"``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING, Any

from platform_shim.background import observe
from platform_shim.workflows.definition import Workflow
from platform_shim.workflows.records import RunStatus, StepKind, StepStatus
from platform_shim.workflows.state import RunState, StepState
from platform_shim.workflows.traces import describe_error, failure_entry

if TYPE_CHECKING:
    from platform_shim.workflows.engine import Engine

__all__ = ["attempt_failed", "cancel_child", "over", "stop_run", "terminate"]

log = logging.getLogger("platform_shim.workflows")


def over(run: RunState) -> bool:
    """Whether the run ended or is ending (read after an await: it may have changed)."""
    return run.ending or run.status.terminal


def attempt_failed(
    engine: Engine, run: RunState, workflow: Workflow, exc: Exception, step_name: str | None
) -> None:
    error = describe_error(exc, step_name)
    if run.ending:
        return
    failure = failure_entry(error, exc, run.attempt, engine.clock.now_ms())
    if run.attempt <= workflow.retries:
        delay = max(0, int(engine.retry_backoff(run.attempt)))
        retry_at = engine.clock.now_ms() + delay
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
            engine.writer.set_status(
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
        engine.waiting.arm(run, "wake", retry_at)
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
    terminate(engine, run, RunStatus.FAILED, error=error, failure=failure)


def terminate(
    engine: Engine,
    run: RunState,
    status: RunStatus,
    *,
    output: bytes | None = None,
    error: dict[str, Any] | None = None,
    failure: dict[str, Any] | None = None,
) -> asyncio.Future[None]:
    """Submit the run's final status; when it is durable, wake whoever waits on it."""
    run.ending = True
    engine.waiting.cancel_timer(run, "wake")
    engine.waiting.cancel_timer(run, "deadline")
    engine.waiting.unwait(run)
    engine.recovering.discard(run.run_id)
    # Children end with their parent, unless invoked with on_parent_close="abandon".
    for step in run.steps.values():
        if (
            step.kind is StepKind.INVOKE
            and step.status is StepStatus.PENDING
            and step.on_parent_close != "abandon"
        ):
            cancel_child(engine, run, step, f"its parent run {run.run_id} {status.value}")
    future = engine.writer.set_status(
        run, status, output=output, error=error, durable=True, after=run.write, failure=failure
    )
    future.add_done_callback(functools.partial(_after_terminal, engine, run))
    return future


def _after_terminal(engine: Engine, run: RunState, future: asyncio.Future[None]) -> None:
    if future.cancelled() or future.exception() is not None:
        # The final record did not make it to disk (disk full?): the run is not over.
        log.error(
            "run %s: recording its end failed (%s); retrying it in 1 s",
            run.run_id,
            future.exception(),
        )
        run.ending = False
        engine.waiting.arm(run, "wake", engine.clock.now_ms() + 1000)
        return
    waiters, run.waiters = run.waiters, None
    for waiter in waiters or ():
        if not waiter.done():
            waiter.set_result(None)
    if run.parent_run_id is not None and run.parent_step is not None:
        parent = engine.state.runs.get(run.parent_run_id)
        if parent is not None and not parent.ending and not parent.status.terminal:
            step = parent.steps.get(run.parent_step)
            if (
                step is not None
                and step.kind is StepKind.INVOKE
                and step.status is StepStatus.PENDING
                and step.child_run_id == run.run_id
            ):
                # Records the invoke's outcome and resumes the parent (or schedules it).
                engine.waiting.settle_invoke(parent, step)


def stop_run(
    engine: Engine, run: RunState, status: RunStatus, error: dict[str, Any]
) -> asyncio.Future[None]:
    future = terminate(engine, run, status, error=error)
    task = run.task
    if task is not None and not task.done() and task is not asyncio.current_task():
        task.cancel()
    return future


def cancel_child(engine: Engine, parent: RunState, step: StepState, why: str) -> None:
    """Cancel the child run of ``parent``'s invoke ``step``, if it still runs."""
    child = engine.state.runs.get(step.child_run_id or "")
    if child is not None and not over(child):
        log.info("run %s: cancelling child run %s (%s)", parent.run_id, child.run_id, why)
        stop_run(engine, child, RunStatus.CANCELLED, {"type": "WorkflowCancelled", "message": why})
