"""What a run and its steps look like to users: frozen records, ``str`` enum statuses.

``to_dict`` gives the wire form of the HTTP API and the platform's JS client (camelCase, epoch
milliseconds); the engine keeps its own mutable state and hands these out as snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

__all__ = ["RunStatus", "StepKind", "StepRecord", "StepStatus", "WorkflowRun", "close_open_steps"]


class RunStatus(StrEnum):
    """Where a run is in its life; the last three are terminal."""

    QUEUED = "queued"
    RUNNING = "running"
    SLEEPING = "sleeping"
    WAITING_EVENT = "waiting_event"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


class StepKind(StrEnum):
    RUN = "run"
    SLEEP = "sleep"
    WAIT_EVENT = "wait_event"
    INVOKE = "invoke"


class StepStatus(StrEnum):
    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    ABANDONED = "abandoned"
    """Read side only, never recorded: the step was still pending when its run ended."""


@dataclass(frozen=True, slots=True)
class WorkflowRun:
    """A run as it stands; times are epoch milliseconds."""

    run_id: str
    workflow_id: str
    status: RunStatus
    input: Any
    output: Any
    error: dict[str, Any] | None
    attempt: int
    created_at: int
    updated_at: int
    completed_at: int | None
    parent_run_id: str | None

    def to_dict(self) -> dict[str, Any]:
        """The wire form (camelCase)."""
        return {
            "runId": self.run_id,
            "workflowId": self.workflow_id,
            "status": self.status.value,
            "input": self.input,
            "output": self.output,
            "error": self.error,
            "attempt": self.attempt,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "completedAt": self.completed_at,
            "parentRunId": self.parent_run_id,
        }


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One step of a run's history, in the order steps were first reached."""

    name: str
    kind: StepKind
    status: StepStatus
    output: Any
    error: dict[str, Any] | None
    started_at: int
    completed_at: int | None
    wake_at: int | None
    attempt: int = 1
    event_type: str | None = None
    match: dict[str, Any] | None = None
    timeout_at: int | None = None
    child_run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The wire form (camelCase); kind-specific fields only where they apply."""
        out: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind.value,
            "status": self.status.value,
            "output": self.output,
            "error": self.error,
            "startedAt": self.started_at,
            "completedAt": self.completed_at,
            "wakeAt": self.wake_at,
            "attempt": self.attempt,
        }
        if self.kind is StepKind.WAIT_EVENT:
            out["eventType"] = self.event_type
            out["match"] = self.match
            out["timeoutAt"] = self.timeout_at
        elif self.kind is StepKind.INVOKE:
            out["childRunId"] = self.child_run_id
            out["timeoutAt"] = self.timeout_at
        return out


def close_open_steps(steps: list[StepRecord], run_status: RunStatus) -> list[StepRecord]:
    """The steps as a reader should see them: a run that ended (cancelled, failed, timed out)
    leaves no step pending; one still open at the end is ``abandoned``."""
    if not run_status.terminal:
        return steps
    return [
        replace(step, status=StepStatus.ABANDONED) if step.status is StepStatus.PENDING else step
        for step in steps
    ]
