"""The workflow ledger, ``runs.jsonl``: every run, step, signal and tick, as a fold.

Record kinds (``"rec"``), each with a ledger-wide ``seq`` that increases in file order:

- ``run``     a run was created (status ``queued``): id, workflow, input, parent, deadline
- ``status``  the run was queued for a retry (attempt, error, retryAt) or ended (output or
              error); parking and resuming need no record: a pending sleep/wait/invoke step
              means ``sleeping``/``waiting_event``, its completion means ``running`` again
- ``step``    a step was first reached (``pending``) or finished (``completed``/``failed``)
- ``signal``  ``send_event`` recorded an event for ``wait_for_event``
- ``cancel``  another process asked for a run to be cancelled (the worker carries it out)
- ``tick``    a cron tick fired for a workflow

The fold is the same whoever wrote a record, so a client process and the worker agree on every
run. ``seq`` orders signals against run creation (the no-race rule) and lets the worker relay
status changes to the event stream at least once; compaction keeps each record's ``seq`` (it
groups a run's records together, so file order and ``seq`` order may differ afterwards). Values (inputs, outputs, payloads) are kept
as JSON bytes and parsed only when asked for, which keeps a parked run small.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from platform_shim.jsonvalue import loads, tight
from platform_shim.store.protocol import Record
from platform_shim.workflows.records import RunStatus, StepKind, StepRecord, StepStatus, WorkflowRun

__all__ = ["LedgerState", "RunState", "Signal", "StepState"]


def _raw(value: Any) -> bytes:
    return tight(orjson.dumps(value))


# Enum(value) is a slow call; a hundred thousand runs load millions of these.
_KINDS = {kind.value: kind for kind in StepKind}
_STEP_STATUSES = {status.value: status for status in StepStatus}
_RUN_STATUSES = {status.value: status for status in RunStatus}
_intern = sys.intern


class StepState:
    """A step as the ledger knows it."""

    __slots__ = (
        "attempt",
        "child_run_id",
        "completed_at",
        "error",
        "event_type",
        "kind",
        "match",
        "name",
        "output",
        "seq",
        "signal_id",
        "started_at",
        "status",
        "timeout_at",
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
        step.output = _raw(record["output"]) if "output" in record else None
        step.error = get("error")
        step.wake_at = get("wakeAt")
        event_type = get("eventType")
        step.event_type = _intern(event_type) if event_type is not None else None
        step.match = get("match")
        step.timeout_at = get("timeoutAt")
        step.child_run_id = get("childRunId")
        step.signal_id = get("signalId")
        step.seq = record["seq"]
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
        "active",
        "attempt",
        "completed_at",
        "created_at",
        "created_seq",
        "deadline",
        "deadline_token",
        "ending",
        "error",
        "input",
        "output",
        "parent_run_id",
        "parent_step",
        "pending",
        "rerun_of",
        "retry_at",
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
        self.completed_at: int | None = None
        self.retry_at: int | None = None
        self.steps: dict[str, StepState] = {}
        self.pending: StepState | None = None  # the sleep, wait or invoke the run is parked on
        self.taken: set[str] | None = None  # ids of signals this run's waits consumed
        # Worker-only, never persisted:
        self.task: Any = None  # the asyncio task of the current activation
        self.active = False  # an activation is scheduled or running
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
        """The step the run is parked on (its pending sleep, wait or invoke), if any."""
        return self.pending

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


class LedgerState:
    """The fold of ``runs.jsonl``."""

    def __init__(self) -> None:
        self.runs: dict[str, RunState] = {}
        self.signals: dict[str, list[Signal]] = {}  # by type, oldest first
        self.ticks: dict[str, tuple[int, int]] = {}  # workflow id -> (tick time, seq)
        self.signal_ids: set[str] = set()
        self.counts: dict[RunStatus, int] = dict.fromkeys(RunStatus, 0)  # runs by status
        # Cancels requested by other processes that no worker has carried out yet (run -> seq).
        self.cancels: dict[str, int] = {}
        self.last_seq = 0
        # Called for each record applied after loading (the worker reacts to other processes).
        self.on_record: Callable[[Record], None] | None = None
        # Called for each run or status record with its seq (the worker relays statuses).
        self.on_status: Callable[[RunState, int], None] | None = None
        self.loading = False

    # ----------------------------------------------------------------- Consumer protocol

    def reset(self) -> None:
        self.runs.clear()
        self.signals.clear()
        self.signal_ids.clear()
        self.counts = dict.fromkeys(RunStatus, 0)
        self.cancels.clear()
        self.ticks.clear()
        self.last_seq = 0

    def apply(self, record: Record, line: bytes) -> None:
        seq = record["seq"]
        if type(seq) is not int:
            raise TypeError(f"ledger seq must be an integer, not {seq!r}")
        if seq > self.last_seq:
            self.last_seq = seq
        kind = record["rec"]
        # Most lines are steps: test for them first (a restart reads hundreds of thousands).
        if kind == "step":
            run = self.runs.get(record["runId"])
            if run is not None:
                self.put_step(run, StepState.from_record(record))
        elif kind == "run":
            self.add_run(
                RunState(
                    record["runId"],
                    _intern(record["workflowId"]),
                    _raw(record.get("input")),
                    record["createdAt"],
                    seq,
                    parent_run_id=record.get("parentRunId"),
                    parent_step=record.get("parentStep"),
                    deadline=record.get("deadline"),
                    rerun_of=record.get("rerunOf"),
                ),
                seq,
            )
        elif kind == "status":
            run = self.runs.get(record["runId"])
            if run is not None:
                self.set_status(run, record, seq)
        elif kind == "signal":
            self.add_signal(
                Signal(
                    record["signalId"],
                    record["type"],
                    _raw(record.get("payload")),
                    record["at"],
                    seq,
                )
            )
        elif kind == "tick":
            self.set_tick(record["workflowId"], record["at"], seq)
        elif kind == "cancel":
            run = self.runs.get(record["runId"])
            if run is not None and not run.status.terminal:
                self.cancels[run.run_id] = seq
        if self.on_record is not None and not self.loading:
            self.on_record(record)

    # ------------------------------------------------------------------------ mutations

    def add_run(self, run: RunState, seq: int) -> None:
        if run.run_id in self.runs:
            return  # two processes raced to create it; the first record wins
        self.runs[run.run_id] = run
        self.counts[run.status] += 1
        if self.on_status is not None:
            self.on_status(run, seq)

    def set_status(self, run: RunState, record: Record, seq: int) -> None:
        status = _RUN_STATUSES[record["status"]]
        run.status_rec = status
        # Records may come out of seq order after compaction; a queued-for-retry record older
        # than the run's latest step does not undo the parking that step means.
        if status.terminal or seq > run.step_seq or run.status.terminal:
            self.change_status(run, status)
        if status.terminal:
            self.cancels.pop(run.run_id, None)
        run.updated_at = record["at"]
        run.attempt = record.get("attempt", run.attempt)
        if "output" in record:
            run.output = _raw(record["output"])
        run.error = record.get("error")
        run.retry_at = record.get("retryAt")
        run.completed_at = record.get("completedAt")
        run.status_seq = seq
        if self.on_status is not None:
            self.on_status(run, seq)

    def put_step(self, run: RunState, step: StepState) -> None:
        run.steps[step.name] = step
        if step.seq > run.step_seq:
            run.step_seq = step.seq
        if step.kind is not StepKind.RUN:
            if step.status is StepStatus.PENDING:
                run.pending = step
            elif run.pending is not None and run.pending.name == step.name:
                run.pending = None
        if step.signal_id is not None:
            if run.taken is None:
                run.taken = set()
            run.taken.add(step.signal_id)
        # A parked run's status follows from its pending step: no status record is written for
        # parking or resuming, which keeps a parked run at three ledger lines.
        status = run.status
        if status.terminal or step.kind is StepKind.RUN or step.seq < run.status_seq:
            return
        if step.status is StepStatus.PENDING:
            new = RunStatus.SLEEPING if step.kind is StepKind.SLEEP else RunStatus.WAITING_EVENT
        elif status in (RunStatus.SLEEPING, RunStatus.WAITING_EVENT):
            new = RunStatus.RUNNING
        else:
            return
        if new is not status:
            self.change_status(run, new)
            run.updated_at = step.completed_at or step.started_at
            if self.on_status is not None:
                self.on_status(run, step.seq)

    def change_status(self, run: RunState, status: RunStatus) -> None:
        """Set a run's status, keeping the counts by status exact."""
        if status is not run.status:
            self.counts[run.status] -= 1
            self.counts[status] += 1
            run.status = status

    def forget(self, run_id: str) -> None:
        """Drop a run (retention pruned it)."""
        run = self.runs.pop(run_id, None)
        if run is not None:
            self.counts[run.status] -= 1

    def page(
        self,
        workflow_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[RunState]:
        """Runs newest first, filtered; ``before`` (a run id) continues a previous page."""
        runs = reversed(self.runs.values())
        if before is not None:
            for run in runs:
                if run.run_id == before:
                    break
        out: list[RunState] = []
        for run in runs:
            if workflow_id is not None and run.workflow_id != workflow_id:
                continue
            if status is not None and run.status.value != status:
                continue
            out.append(run)
            if len(out) >= limit:
                break
        return out

    def add_signal(self, signal: Signal) -> None:
        if signal.signal_id in self.signal_ids:
            return
        self.signal_ids.add(signal.signal_id)
        self.signals.setdefault(signal.type, []).append(signal)

    def set_tick(self, workflow_id: str, at: int, seq: int) -> None:
        if at > self.ticks.get(workflow_id, (0, 0))[0]:
            self.ticks[workflow_id] = (at, seq)

    # ------------------------------------------------------------------------- queries

    def oldest_signal(
        self, run: RunState, event_type: str, match: dict[str, Any] | None
    ) -> Signal | None:
        """The oldest signal of ``event_type`` sent after ``run`` was created, not yet taken by
        it, whose payload matches (the no-race rule)."""
        taken = run.taken or ()
        for signal in self.signals.get(event_type, ()):
            if signal.seq <= run.created_seq or signal.signal_id in taken:
                continue
            if match is None or matches(match, loads(signal.payload)):
                return signal
        return None

    def live_line_count(self) -> int:
        """About how many lines ``live_records`` would write (signals and ticks included)."""
        count = len(self.ticks) + len(self.cancels) + sum(len(s) for s in self.signals.values())
        for run in self.runs.values():
            count += 1 + len(run.steps) + (run.status_rec is not None)
        return count

    def live_records(self, keep: Callable[[RunState], bool]) -> Iterator[bytes]:
        """The ledger as compaction writes it: each kept run's creation, latest status and
        steps, the ticks, and the signals a live run could still take."""
        oldest_live = min(
            (run.created_seq for run in self.runs.values() if not run.status.terminal),
            default=None,
        )
        for run in self.runs.values():
            if not keep(run):
                continue
            yield run.run_record(run.created_seq)
            for step in run.steps.values():
                yield step.record(run.run_id)
            if run.status_rec is not None:
                yield run.status_record(run.status_seq, run.status_rec)
            if run.run_id in self.cancels:
                yield orjson.dumps(
                    {
                        "rec": "cancel",
                        "seq": self.cancels[run.run_id],
                        "runId": run.run_id,
                        "at": run.updated_at,
                    }
                )
        if oldest_live is not None:
            for signals in self.signals.values():
                for signal in signals:
                    if signal.seq > oldest_live:
                        yield signal.record()
        for workflow_id, (at, seq) in self.ticks.items():
            yield orjson.dumps({"rec": "tick", "seq": seq, "workflowId": workflow_id, "at": at})


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
        if key not in payload:
            return False
        actual = payload[key]
        if actual != expected or isinstance(actual, bool) != isinstance(expected, bool):
            return False
    return True
