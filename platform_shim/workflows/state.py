"""What the ledger knows of a run, a step and a signal: mutable, compact, JSON kept as bytes.

These are the fold's objects (``LedgerState`` builds them from ``runs.jsonl``); users see
frozen snapshots (``WorkflowRun``, ``StepRecord``). Inputs, outputs and payloads stay JSON
bytes, sized to their content, and are parsed only when asked for: a parked run costs little
more than a kilobyte.

Size (over 400 lines, on purpose): the step, run and signal objects and their ledger lines; one
file keeps every record shape the ledger writes in one place.
"""

from __future__ import annotations

import sys
from typing import Any

import orjson

from platform_shim.jsonvalue import loads, tight
from platform_shim.store.protocol import Record
from platform_shim.workflows.records import RunStatus, StepKind, StepRecord, StepStatus, WorkflowRun

__all__ = [
    "RUN_STATUSES",
    "RunState",
    "Signal",
    "StepState",
    "json_equal",
    "matches",
    "raw_json",
    "steps_before",
]


def raw_json(value: Any) -> bytes:
    """A parsed JSON value back to (tight) bytes."""
    return tight(orjson.dumps(value))


# Enum(value) is a slow call; a hundred thousand runs load millions of these.
_KINDS = {kind.value: kind for kind in StepKind}
_STEP_STATUSES = {status.value: status for status in StepStatus}
RUN_STATUSES = {status.value: status for status in RunStatus}
_intern = sys.intern


class StepState:
    """A step as the ledger knows it."""

    __slots__ = (
        "attempt",
        "child_run_id",
        "completed_at",
        "done",
        "error",
        "event_type",
        "kind",
        "match",
        "name",
        "on_parent_close",
        "output",
        "resume",
        "seq",
        "signal_id",
        "started_at",
        "status",
        "timeout_at",
        "timer",
        "wake_at",
    )

    def __init__(
        self,
        name: str,
        kind: StepKind,
        status: StepStatus,
        attempt: int,
        started_at: int,
        *,
        completed_at: int | None = None,
        output: bytes | None = None,
        error: dict[str, Any] | None = None,
        wake_at: int | None = None,
        event_type: str | None = None,
        match: dict[str, Any] | None = None,
        timeout_at: int | None = None,
        child_run_id: str | None = None,
        signal_id: str | None = None,
        on_parent_close: str | None = None,
        seq: int = 0,
    ) -> None:
        self.seq = seq
        self.name = name
        self.kind = kind
        self.status = status
        self.attempt = attempt
        self.started_at = started_at
        self.completed_at = completed_at
        self.output = output
        self.error = error
        self.wake_at = wake_at
        self.event_type = event_type
        self.match = match
        self.timeout_at = timeout_at
        self.child_run_id = child_run_id
        self.signal_id = signal_id
        self.on_parent_close = on_parent_close  # "abandon" keeps an invoked child running
        # Worker-only, never persisted: the token of this pending step's timer (0: none), and
        # the future a suspended activation awaits until this step is finished.
        self.timer = 0
        self.resume: Any = None
        # The record that finished this pending step, from when it is submitted until it is
        # applied (None again if its write failed): a wake-up is never taken twice.
        self.done: StepState | None = None

    def record(self, run_id: str) -> bytes:
        """This step as a ledger line."""
        out: dict[str, Any] = {
            "rec": "step",
            "seq": self.seq,
            "runId": run_id,
            "name": self.name,
            "kind": self.kind.value,
            "status": self.status.value,
            "attempt": self.attempt,
            "startedAt": self.started_at,
        }
        if self.completed_at is not None:
            out["completedAt"] = self.completed_at
        if self.output is not None:
            out["output"] = orjson.Fragment(self.output)
        if self.error is not None:
            out["error"] = self.error
        if self.wake_at is not None:
            out["wakeAt"] = self.wake_at
        if self.event_type is not None:
            out["eventType"] = self.event_type
            out["match"] = self.match
        if self.timeout_at is not None:
            out["timeoutAt"] = self.timeout_at
        if self.child_run_id is not None:
            out["childRunId"] = self.child_run_id
        if self.signal_id is not None:
            out["signalId"] = self.signal_id
        if self.on_parent_close is not None:
            out["onParentClose"] = self.on_parent_close
        return orjson.dumps(out)

    @classmethod
    def from_record(cls, record: Record) -> StepState:
        # Filled slot by slot rather than through __init__'s keywords: this runs once per
        # step line at every start, and the keyword call was most of its cost.
        step = cls.__new__(cls)
        get = record.get
        step.name = _intern(record["name"])
        step.kind = _KINDS[record["kind"]]
        step.status = _STEP_STATUSES[record["status"]]
        step.attempt = get("attempt", 1)
        step.started_at = record["startedAt"]
        step.completed_at = get("completedAt")
        step.output = raw_json(record["output"]) if "output" in record else None
        step.error = get("error")
        step.wake_at = get("wakeAt")
        event_type = get("eventType")
        step.event_type = _intern(event_type) if event_type is not None else None
        step.match = get("match")
        step.timeout_at = get("timeoutAt")
        step.child_run_id = get("childRunId")
        step.signal_id = get("signalId")
        step.on_parent_close = get("onParentClose")
        step.seq = record["seq"]
        step.timer = 0
        step.resume = None
        step.done = None
        return step

    def snapshot(self) -> StepRecord:
        return StepRecord(
            name=self.name,
            kind=self.kind,
            status=self.status,
            output=loads(self.output) if self.output is not None else None,
            error=self.error,
            started_at=self.started_at,
            completed_at=self.completed_at,
            wake_at=self.wake_at,
            attempt=self.attempt,
            event_type=self.event_type,
            match=self.match,
            timeout_at=self.timeout_at,
            child_run_id=self.child_run_id,
        )


class RunState:
    """A run as the ledger knows it, plus the worker's bookkeeping for it."""

    __slots__ = (
        "activation",
        "active",
        "attempt",
        "attempting",
        "completed_at",
        "created_at",
        "created_seq",
        "deadline",
        "deadline_token",
        "ending",
        "error",
        "failures",
        "input",
        "more_pending",
        "output",
        "parent_run_id",
        "parent_step",
        "pending",
        "rerun_of",
        "retry_at",
        "rewake",
        "run_id",
        "status",
        "status_rec",
        "status_seq",
        "step_seq",
        "steps",
        "taken",
        "task",
        "updated_at",
        "waiters",
        "wake_token",
        "workflow_id",
        "write",
        "write_error",
    )

    def __init__(
        self,
        run_id: str,
        workflow_id: str,
        input: bytes,
        created_at: int,
        created_seq: int,
        *,
        parent_run_id: str | None = None,
        parent_step: str | None = None,
        deadline: int | None = None,
        rerun_of: dict[str, str] | None = None,
    ) -> None:
        self.run_id = run_id
        self.rerun_of = rerun_of
        self.workflow_id = workflow_id
        self.input = input
        self.created_at = created_at
        self.updated_at = created_at
        self.created_seq = created_seq
        self.status_seq = 0  # seq of the last status record (0: none)
        self.status_rec: RunStatus | None = None  # the status that record set
        self.step_seq = 0  # highest seq of the run's step records
        self.parent_run_id = parent_run_id
        self.parent_step = parent_step
        self.deadline = deadline
        self.status = RunStatus.QUEUED
        self.attempt = 1
        self.output: bytes | None = None
        self.error: dict[str, Any] | None = None
        # Each failed attempt with its traceback (traces.py); never in the public error.
        self.failures: list[dict[str, Any]] | None = None
        self.completed_at: int | None = None
        self.retry_at: int | None = None
        self.steps: dict[str, StepState] = {}
        # The sleep, wait or invoke the run is parked on, and (parallel steps) any others.
        self.pending: StepState | None = None
        self.more_pending: dict[str, StepState] | None = None
        # The step body a recovered run last started, and how many times a process died while it
        # ran (the poison-pill count, from ``attempting`` records).
        self.attempting: tuple[str, int, int] | None = None  # (step, count, seq)
        self.taken: set[str] | None = None  # ids of signals this run's waits consumed
        # Worker-only, never persisted:
        self.task: Any = None  # the asyncio task of the current activation
        self.activation: Any = None  # the Step object of the current activation
        self.active = False  # an activation is scheduled or running
        self.rewake = False  # a wake-up came while active: look again when the activation ends
        self.ending = False  # a terminal status was submitted; nothing else may follow
        self.waiters: list[Any] | None = None  # futures of result() callers
        self.write: Any = None  # the future of this run's latest ledger write
        self.write_error: BaseException | None = None
        self.wake_token = 0  # the engine's live timers for this run (0: none)
        self.deadline_token = 0

    def snapshot(self) -> WorkflowRun:
        return WorkflowRun(
            run_id=self.run_id,
            workflow_id=self.workflow_id,
            status=self.status,
            input=loads(self.input),
            output=loads(self.output) if self.output is not None else None,
            error=self.error,
            attempt=self.attempt,
            created_at=self.created_at,
            updated_at=self.updated_at,
            completed_at=self.completed_at,
            parent_run_id=self.parent_run_id,
        )

    def pending_step(self) -> StepState | None:
        """A step the run is parked on (the first one reached), if any."""
        return self.pending

    def parked_steps(self) -> list[StepState]:
        """Every step the run is parked on, in the order they were reached."""
        if self.pending is None:
            return []
        if self.more_pending is None:
            return [self.pending]
        return [self.pending, *self.more_pending.values()]

    def park(self, step: StepState) -> None:
        # One parked step (the usual case) costs one reference; only parallel steps add a dict.
        pending = self.pending
        if pending is None or pending.name == step.name:
            self.pending = step
        else:
            if self.more_pending is None:
                self.more_pending = {}
            self.more_pending[step.name] = step

    def unpark(self, name: str) -> None:
        pending = self.pending
        more = self.more_pending
        if pending is not None and pending.name == name:
            if more:
                first = next(iter(more))
                self.pending = more.pop(first)
                if not more:
                    self.more_pending = None
            else:
                self.pending = None
        elif more is not None and more.pop(name, None) is not None and not more:
            self.more_pending = None

    def claim(self, signal_id: str) -> None:
        """Mark a signal as taken by one of this run's waits.

        Called when the wait's record is *submitted*, not when it is written: a second wait
        reached in the same activation must already see the signal as taken.
        """
        if self.taken is None:
            self.taken = set()
        self.taken.add(signal_id)

    def unclaim(self, signal_id: str) -> None:
        """Give a claimed signal back (the record that took it was never written)."""
        if self.taken is not None and not any(
            step.signal_id == signal_id for step in self.steps.values()
        ):
            self.taken.discard(signal_id)

    def run_record(self, seq: int) -> bytes:
        return orjson.dumps(
            {
                "rec": "run",
                "seq": seq,
                "runId": self.run_id,
                "workflowId": self.workflow_id,
                "input": orjson.Fragment(self.input),
                "createdAt": self.created_at,
                "parentRunId": self.parent_run_id,
                "parentStep": self.parent_step,
                "deadline": self.deadline,
                "rerunOf": self.rerun_of,
            }
        )

    def status_record(self, seq: int, status: RunStatus) -> bytes:
        out: dict[str, Any] = {
            "rec": "status",
            "seq": seq,
            "runId": self.run_id,
            "status": status.value,
            "at": self.updated_at,
            "attempt": self.attempt,
        }
        if self.output is not None:
            out["output"] = orjson.Fragment(self.output)
        if self.error is not None:
            out["error"] = self.error
        if self.retry_at is not None:
            out["retryAt"] = self.retry_at
        if self.completed_at is not None:
            out["completedAt"] = self.completed_at
        if self.failures:
            out["failures"] = self.failures
        return orjson.dumps(out)


class Signal:
    """An event recorded by ``send_event``."""

    __slots__ = ("at", "payload", "seq", "signal_id", "type")

    def __init__(self, signal_id: str, type: str, payload: bytes, at: int, seq: int) -> None:
        self.signal_id = signal_id
        self.type = type
        self.payload = payload
        self.at = at
        self.seq = seq

    def record(self) -> bytes:
        return orjson.dumps(
            {
                "rec": "signal",
                "seq": self.seq,
                "signalId": self.signal_id,
                "type": self.type,
                "payload": orjson.Fragment(self.payload),
                "at": self.at,
            }
        )


def steps_before(run: RunState, step_name: str) -> list[StepState]:
    """Copies of the steps ``run`` completed before it first reached ``step_name``: what a rerun
    from that step starts with, so they replay instead of running again."""
    names = list(run.steps)
    if step_name not in run.steps:
        known = ", ".join(repr(n) for n in names) or "none"
        raise ValueError(f"run {run.run_id!r} has no step {step_name!r}; its steps: {known}")
    copies = []
    for name in names[: names.index(step_name)]:
        step = run.steps[name]
        if step.status is not StepStatus.COMPLETED:
            continue
        copies.append(
            StepState(
                step.name,
                step.kind,
                step.status,
                1,
                step.started_at,
                completed_at=step.completed_at,
                output=step.output,
                wake_at=step.wake_at,
                event_type=step.event_type,
                match=step.match,
                timeout_at=step.timeout_at,
                child_run_id=step.child_run_id,
            )
        )
    return copies


def matches(match: dict[str, Any], payload: Any) -> bool:
    """``wait_for_event`` matching: every key of ``match`` is in the payload with an equal value
    (``true`` never equals ``1``)."""
    if not isinstance(payload, dict):
        return not match
    for key, expected in match.items():
        if key not in payload or not json_equal(payload[key], expected):
            return False
    return True


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality at every depth: ``true`` never equals ``1``, nor ``{"ok": true}``
    ``{"ok": 1}`` (Python's ``==`` says both do)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(json_equal(value, b[key]) for key, value in a.items())
        )
    if isinstance(a, list):
        return (
            isinstance(b, list)
            and len(a) == len(b)
            and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(b, dict | list):
        return False
    return bool(a == b)
