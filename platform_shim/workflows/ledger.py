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
- ``attempting``  a run recovered after a crash starts a step body (step, n): how many times in
              a row the process died while that body ran (the poison-pill count)
- ``mark``    written by compaction: ``lastSeq``, the highest seq so far (its own ``seq`` is 0), so
              seqs keep rising when the records that held the highest ones moved to the archive

The fold is the same whoever wrote a record, so a client process and the worker agree on every
run. With a retiring ``archive`` (the worker), a run leaves the fold when its terminal status is
applied and is read from the archive afterwards (``archive.py``): the fold holds live runs only. ``seq`` orders signals against run creation (the no-race rule) and lets the worker relay
status changes to the event stream at least once; compaction keeps each record's ``seq`` (it
groups a run's records together, so file order and ``seq`` order may differ afterwards). The
objects it builds are in ``state.py``.

Size (over 400 lines, on purpose): the fold and the lines compaction writes back are one
contract (what is written is what is read back), so they stay side by side.
"""

from __future__ import annotations

import bisect
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import orjson

from platform_shim.errors import RunIdConflict
from platform_shim.jsonvalue import loads
from platform_shim.store.protocol import Record
from platform_shim.workflows.records import RunStatus, StepKind, StepStatus, WorkflowRun
from platform_shim.workflows.state import (
    RUN_STATUSES,
    RunState,
    Signal,
    StepState,
    matches,
    raw_json,
)

if TYPE_CHECKING:
    from platform_shim.workflows.archive import RunArchive

__all__ = ["LedgerState"]

# Held signals are pruned when their count doubles, and never below this many.
_PRUNE_MIN = 1024


def _seq(signal: Signal) -> int:
    return signal.seq


class LedgerState:
    """The fold of ``runs.jsonl``."""

    def __init__(self) -> None:
        self.runs: dict[str, RunState] = {}
        self.signals: dict[str, list[Signal]] = {}  # by type, oldest first
        self.ticks: dict[str, tuple[int, int]] = {}  # workflow id -> (tick time, seq)
        self.signal_ids: set[str] = set()
        self._signal_count = 0  # signals held, all types
        self._prune_at = _PRUNE_MIN  # prune signals once this many are held
        self.counts: dict[RunStatus, int] = dict.fromkeys(RunStatus, 0)  # runs by status
        self.workflow_counts: dict[str, dict[RunStatus, int]] = {}  # the same, per workflow
        # Cancels requested by other processes that no worker has carried out yet (run -> seq).
        self.cancels: dict[str, int] = {}
        self.last_seq = 0
        # Called for each record applied after loading (the worker reacts to other processes).
        self.on_record: Callable[[Record], None] | None = None
        # Called for each run or status record with its seq (the worker relays statuses).
        self.on_status: Callable[[RunState, int], None] | None = None
        self.loading = False
        # Where terminal runs go (and are read from) once they leave runs.jsonl.
        self.archive: RunArchive | None = None

    # ----------------------------------------------------------------- Consumer protocol

    def reset(self) -> None:
        self.runs.clear()
        self.signals.clear()
        self.signal_ids.clear()
        self._signal_count = 0
        self._prune_at = _PRUNE_MIN
        self.counts = dict.fromkeys(RunStatus, 0)
        self.workflow_counts.clear()
        self.cancels.clear()
        self.ticks.clear()
        self.last_seq = 0
        if self.archive is not None:
            self.archive.pending.clear()  # the replay hands them over again

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
                    sys.intern(record["workflowId"]),
                    raw_json(record.get("input")),
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
                    raw_json(record.get("payload")),
                    record["at"],
                    seq,
                )
            )
        elif kind == "tick":
            self.set_tick(record["workflowId"], record["at"], seq)
        elif kind == "attempting":
            run = self.runs.get(record["runId"])
            if run is not None:
                self.set_attempting(run, record["step"], record["n"], seq)
        elif kind == "cancel":
            self.set_cancel(record["runId"], seq)
        elif kind == "mark":
            last = record["lastSeq"]
            if type(last) is int and last > self.last_seq:
                self.last_seq = last
        if self.on_record is not None and not self.loading:
            self.on_record(record)

    # ------------------------------------------------------------------------ mutations

    def add_run(self, run: RunState, seq: int) -> None:
        if run.run_id in self.runs:
            return  # two processes raced to create it; the first record wins
        self.runs[run.run_id] = run
        self.counts[run.status] += 1
        self._by_workflow(run)[run.status] += 1
        if self.on_status is not None:
            self.on_status(run, seq)

    def set_status(self, run: RunState, record: Record, seq: int) -> None:
        status = RUN_STATUSES[record["status"]]
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
            run.output = raw_json(record["output"])
        run.error = record.get("error")
        run.failures = record.get("failures", run.failures)
        run.retry_at = record.get("retryAt")
        run.completed_at = record.get("completedAt")
        run.status_seq = seq
        if self.on_status is not None:
            self.on_status(run, seq)
        if status.terminal and self.archive is not None and self.archive.retiring:
            self.retire(run)

    def retire(self, run: RunState) -> None:
        """A run ended: it leaves memory for the archive (the worker's fold)."""
        assert self.archive is not None
        if self.runs.pop(run.run_id, None) is run:
            self._uncount(run)
            self.archive.retire(run)

    def put_step(self, run: RunState, step: StepState) -> None:
        run.steps[step.name] = step
        if step.seq > run.step_seq:
            run.step_seq = step.seq
        if step.kind is not StepKind.RUN:
            if step.status is StepStatus.PENDING:
                run.park(step)
            else:
                run.unpark(step.name)
        if step.signal_id is not None:
            run.claim(step.signal_id)
        # A parked run's status follows from its pending step: no status record is written for
        # parking or resuming, which keeps a parked run at three ledger lines.
        status = run.status
        if status.terminal or step.kind is StepKind.RUN or step.seq < run.status_seq:
            return
        pending = run.pending
        if pending is not None:
            # Parallel steps may park on several; waiting on anything but sleeps is "waiting".
            sleeping = pending.kind is StepKind.SLEEP and (
                run.more_pending is None
                or all(p.kind is StepKind.SLEEP for p in run.more_pending.values())
            )
            new = RunStatus.SLEEPING if sleeping else RunStatus.WAITING_EVENT
        elif status in (RunStatus.SLEEPING, RunStatus.WAITING_EVENT):
            new = RunStatus.RUNNING
        else:
            return
        if new is not status:
            self.change_status(run, new)
            run.updated_at = step.completed_at or step.started_at
            if self.on_status is not None:
                self.on_status(run, step.seq)

    def set_attempting(self, run: RunState, step: str, count: int, seq: int) -> None:
        """A recovered run started step ``step``'s body; ``count`` deaths in a row so far."""
        run.attempting = (step, count, seq)

    def claim_run_id(self, run_id: str, workflow_id: str, *, minted: bool = False) -> bool:
        """Whether a new run ``run_id`` of ``workflow_id`` may be created: False if that run
        exists already (an idempotent start), ``RunIdConflict`` if another workflow's does.
        Called inside the commit cycle, so two concurrent starts cannot both pass. A ``minted``
        id (made here, just now) cannot be archived already: only live runs need a look."""
        if minted:
            live = self.runs.get(run_id)
            existing = live.workflow_id if live is not None else None
        else:
            existing = self.workflow_of(run_id)
        if existing is None:
            return True
        if existing != workflow_id:
            raise RunIdConflict(run_id, existing, workflow_id)
        return False

    def change_status(self, run: RunState, status: RunStatus) -> None:
        """Set a run's status, keeping the counts by status exact."""
        if status is not run.status:
            self.counts[run.status] -= 1
            self.counts[status] += 1
            by_workflow = self._by_workflow(run)
            by_workflow[run.status] -= 1
            by_workflow[status] += 1
            run.status = status

    def _by_workflow(self, run: RunState) -> dict[RunStatus, int]:
        counts = self.workflow_counts.get(run.workflow_id)
        if counts is None:
            counts = self.workflow_counts[run.workflow_id] = dict.fromkeys(RunStatus, 0)
        return counts

    def forget(self, run_id: str) -> None:
        """Drop a run (retention pruned it)."""
        run = self.runs.pop(run_id, None)
        if run is not None:
            self._uncount(run)

    def _uncount(self, run: RunState) -> None:
        """``run`` left the fold: it no longer counts by status."""
        self.counts[run.status] -= 1
        self._by_workflow(run)[run.status] -= 1

    def page(
        self,
        workflow_id: str | None = None,
        status: str | None = None,
        limit: int = 100,
        before: str | None = None,
    ) -> list[WorkflowRun]:
        """Runs newest first (by creation), filtered; ``before`` (a run id) continues a
        previous page. Live runs come from memory, finished ones from the archive's index, so
        a page costs the same however many runs have finished."""
        archive = self.archive
        below: int | None = None
        if before is not None:
            cursor = self.runs.get(before)
            below = cursor.created_seq if cursor is not None else None
            if below is None and archive is not None:
                below = archive.order_of(before)
            if below is None:
                return []
        wanted = RUN_STATUSES.get(status) if status is not None else None
        found: list[tuple[int, WorkflowRun | RunState]] = []
        if wanted is None or self.counts[wanted] > 0:
            for run in reversed(self.runs.values()):
                if below is not None and run.created_seq >= below:
                    continue
                if workflow_id is not None and run.workflow_id != workflow_id:
                    continue
                if status is not None and run.status.value != status:
                    continue
                found.append((run.created_seq, run))  # snapshot only the page's own
                if len(found) >= limit:
                    break
        if archive is not None and (wanted is None or wanted.terminal):
            found += archive.page(workflow_id, status, below, limit, skip=self.runs.keys())
            found.sort(key=lambda item: item[0], reverse=True)
        return [run.snapshot() if isinstance(run, RunState) else run for _, run in found[:limit]]

    # ------------------------------------------------------- live and archived runs alike

    def lookup(self, run_id: str) -> RunState | None:
        """The run, live or archived (then read from disk, with its steps)."""
        run = self.runs.get(run_id)
        if run is None and self.archive is not None:
            run = self.archive.load(run_id)
        return run

    def snapshot(self, run_id: str) -> WorkflowRun | None:
        """The user's record of the run, live or archived (an archived one without its steps)."""
        run = self.runs.get(run_id)
        if run is not None:
            return run.snapshot()
        return self.archive.status(run_id) if self.archive is not None else None

    def known(self, run_id: str) -> bool:
        """Whether a run with this id exists (live or archived): idempotent starts ask this."""
        if run_id in self.runs:
            return True
        return self.archive is not None and self.archive.contains(run_id)

    def workflow_of(self, run_id: str) -> str | None:
        """The workflow of the run ``run_id``, live or archived; None if there is no such run."""
        run = self.runs.get(run_id)
        if run is not None:
            return run.workflow_id
        return self.archive.workflow_of(run_id) if self.archive is not None else None

    def status_counts(self, workflow_id: str | None = None) -> dict[str, int]:
        """How many runs there are in each status (of ``workflow_id``, or all), live and
        archived."""
        if workflow_id is None:
            live = self.counts
        else:
            live = self.workflow_counts.get(workflow_id) or dict.fromkeys(RunStatus, 0)
        counts = {status.value: n for status, n in live.items()}
        archive = self.archive
        if archive is None:
            return counts
        if not archive.retiring:
            # A client's fold still holds the finished runs of the ledger; some are archived too.
            ended = [
                run.run_id
                for run in self.runs.values()
                if run.status.terminal and (workflow_id is None or run.workflow_id == workflow_id)
            ]
            for run_id in archive.known(ended):
                counts[self.runs[run_id].status.value] -= 1
        for status in RunStatus:
            if status.terminal:
                counts[status.value] += archive.count(status, workflow_id)
        return counts

    def add_signal(self, signal: Signal) -> None:
        if signal.signal_id in self.signal_ids:
            return
        self.signal_ids.add(signal.signal_id)
        signals = self.signals.setdefault(signal.type, [])
        if signals and signals[-1].seq > signal.seq:
            bisect.insort(signals, signal, key=_seq)  # kept in seq order: lookups bisect on it
        else:
            signals.append(signal)
        self._signal_count += 1
        if self._signal_count >= self._prune_at and not self.loading:
            self.prune_signals()

    def prune_signals(self) -> int:
        """Drop the signals no run could still take: those recorded before every non-terminal
        run was created (the no-race rule lets a wait take only signals sent after its run was
        created). Returns how many were dropped.

        Without this, every signal ever sent would stay in memory until a compaction reloads
        the ledger. Amortized: it runs when the count of held signals has doubled since the last
        pass, so its O(runs + signals) cost is spread over as many ``add_signal`` calls."""
        oldest_live = min(
            (run.created_seq for run in self.runs.values() if not run.status.terminal),
            default=self.last_seq,
        )
        dropped = 0
        for event_type in list(self.signals):
            signals = self.signals[event_type]
            cut = bisect.bisect_right(signals, oldest_live, key=_seq)
            if not cut:
                continue
            for signal in signals[:cut]:
                self.signal_ids.discard(signal.signal_id)
            dropped += cut
            if cut == len(signals):
                del self.signals[event_type]
            else:
                del signals[:cut]
        self._signal_count -= dropped
        self._prune_at = max(_PRUNE_MIN, 2 * self._signal_count)
        return dropped

    def set_cancel(self, run_id: str, seq: int) -> None:
        """A cancel was asked for (by another process): the worker carries it out."""
        run = self.runs.get(run_id)
        if run is not None and not run.status.terminal:
            self.cancels[run_id] = seq

    def set_tick(self, workflow_id: str, at: int, seq: int) -> None:
        if at > self.ticks.get(workflow_id, (0, 0))[0]:
            self.ticks[workflow_id] = (at, seq)

    # ------------------------------------------------------------------------- queries

    def oldest_signal(
        self, run: RunState, event_type: str, match: dict[str, Any] | None
    ) -> Signal | None:
        """The oldest signal of ``event_type`` sent after ``run`` was created, not yet taken by
        it, whose payload matches (the no-race rule)."""
        signals = self.signals.get(event_type)
        if not signals:
            return None
        taken = run.taken or ()
        # Signals are held in seq order: skip those sent before the run was created at once.
        start = bisect.bisect_right(signals, run.created_seq, key=_seq)
        for index in range(start, len(signals)):
            signal = signals[index]
            if signal.signal_id in taken:
                continue
            if match is None or matches(match, loads(signal.payload)):
                return signal
        return None

    def live_line_count(self) -> int:
        """About how many lines ``live_records`` would write (signals and ticks included)."""
        count = 1 + len(self.ticks) + len(self.cancels)
        count += sum(len(s) for s in self.signals.values())
        for run in self._ledger_runs():
            count += 1 + len(run.steps) + (run.status_rec is not None)
        return count

    def _ledger_runs(self) -> Iterator[RunState]:
        """The runs compaction keeps in the ledger: live ones, and finished ones the archive
        does not hold durably yet."""
        yield from self.runs.values()
        if self.archive is not None and self.archive.retiring:
            yield from list(self.archive.pending.values())

    def live_records(self, keep: Callable[[RunState], bool]) -> Iterator[bytes]:
        """The ledger as compaction writes it: each kept run's creation, latest status and
        steps, the ticks, and the signals a live run could still take."""
        oldest_live = min(
            (run.created_seq for run in self.runs.values() if not run.status.terminal),
            default=None,
        )
        for run in self._ledger_runs():
            if not keep(run):
                continue
            yield run.run_record(run.created_seq)
            for step in run.steps.values():
                yield step.record(run.run_id)
            if run.status_rec is not None:
                yield run.status_record(run.status_seq, run.status_rec)
            if run.attempting is not None and not run.status.terminal:
                step_name, count, seq = run.attempting
                yield orjson.dumps(
                    {
                        "rec": "attempting",
                        "seq": seq,
                        "runId": run.run_id,
                        "step": step_name,
                        "n": count,
                    }
                )
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
        yield orjson.dumps({"rec": "mark", "seq": 0, "lastSeq": self.last_seq})
