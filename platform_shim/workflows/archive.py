"""Finished runs on disk: the ledger's terminal runs move to the store's archive.

Invariants:

- **The ledger first.** A run is handed to the archive when its terminal status record is
  applied, and written there only once that record is durable in ``runs.jsonl`` (the flush
  waits for the ledger's barrier). Until then it waits in ``pending`` (memory, bounded by how
  many runs end per flush). A flush starts ``linger`` after the run that asked for it ended
  (or after the last flush, for runs that ended while it was written), or once ``BATCH`` runs
  wait, so the runs ending meanwhile share its write (one per run cost a short run about as
  much as its own records); ``hurry`` starts it at once, and no flush lingers while ``idle``
  waits.
- **Rebuildable.** Compaction removes a run from ``runs.jsonl`` only after the archive holds it
  durably (``sync`` before the ledger's rewrite; pending runs are kept in the ledger). So after a
  SIGKILL at any instant each finished run is in the ledger, in the archive, or in both; loading
  the ledger hands the terminal runs it holds to the archive again, which skips those it has.
- **Memory holds only live runs.** In the worker (``retiring``) a terminal run leaves the
  ledger's fold; reads of it (status, history, lists, ``rerun``, a parent's ``invoke``) go to
  disk. A client process keeps the terminal runs still in the ledger in its fold (it never
  writes the archive) and reads the archived ones through the index, read-only.

An entry is a run: its key the run id, its head a ``RunHead`` (the run record), its body the
list of its step records as ``runs.jsonl`` holds them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Container
from typing import Any, NotRequired, TypedDict

import orjson

from platform_shim.jsonvalue import tight
from platform_shim.store.archive import ArchiveEntry
from platform_shim.store.protocol import Archive, Log, Record
from platform_shim.workflows.records import RunStatus, WorkflowRun
from platform_shim.workflows.state import RUN_STATUSES, RunState, StepState, raw_json

__all__ = ["ARCHIVE_NAME", "RunArchive", "RunHead"]

log = logging.getLogger("platform_shim.workflows")

ARCHIVE_NAME = "runs-archive"
LOAD_BATCH = 2000  # terminal runs read at load are archived this many at a time
RETRY_S = 1.0
LINGER_S = 0.02
"""Real seconds a finished run waits for others to share its write to the archive."""
BATCH = 32
"""Finished runs that start the flush without waiting for the rest of ``linger``."""


class RunHead(TypedDict):
    """An archived run's head: the run as its last status left it (times in epoch ms)."""

    runId: str
    workflowId: str
    status: str  # a terminal RunStatus value
    input: Any
    output: Any
    error: dict[str, Any] | None
    attempt: int
    createdAt: int
    updatedAt: int
    completedAt: int | None
    parentRunId: str | None
    parentStep: str | None
    rerunOf: dict[str, str] | None
    deadline: int | None
    createdSeq: int
    statusSeq: int
    # The failed attempts' errors with their tracebacks (the dashboard shows them); absent
    # from entries archived before it was kept.
    failures: NotRequired[list[dict[str, Any]] | None]


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _tags(workflow_id: str, status: str) -> tuple[str, ...]:
    # The status first in the combined tag: statuses have no ':', workflow ids may.
    return (f"w:{workflow_id}", f"s:{status}", f"ws:{status}:{workflow_id}")


def _tag(workflow_id: str | None, status: str | None) -> str | None:
    if workflow_id is not None and status is not None:
        return f"ws:{status}:{workflow_id}"
    if workflow_id is not None:
        return f"w:{workflow_id}"
    if status is not None:
        return f"s:{status}"
    return None


def entry_of(run: RunState) -> ArchiveEntry:
    """A terminal run as an archive entry: the run record as head, its steps as body."""
    head = RunHead(
        runId=run.run_id,
        workflowId=run.workflow_id,
        status=run.status.value,
        input=orjson.Fragment(run.input),  # the recorded bytes, not parsed and dumped again
        output=orjson.Fragment(run.output) if run.output is not None else None,
        error=run.error,
        attempt=run.attempt,
        createdAt=run.created_at,
        updatedAt=run.updated_at,
        completedAt=run.completed_at,
        parentRunId=run.parent_run_id,
        parentStep=run.parent_step,
        rerunOf=run.rerun_of,
        deadline=run.deadline,
        createdSeq=run.created_seq,
        statusSeq=run.status_seq,
        failures=run.failures,
    )
    body = b"[" + b",".join(step.record(run.run_id) for step in run.steps.values()) + b"]"
    return ArchiveEntry(
        run.run_id,
        run.created_seq,
        run.completed_at or run.updated_at,
        _tags(run.workflow_id, run.status.value),
        tight(orjson.dumps(head)),
        body,
    )


def snapshot_of(head: RunHead) -> WorkflowRun:
    """The user's record of an archived run, straight from its head."""
    return WorkflowRun(
        run_id=head["runId"],
        workflow_id=head["workflowId"],
        status=RUN_STATUSES[head["status"]],
        input=head["input"],
        output=head["output"],
        error=head["error"],
        attempt=head["attempt"],
        created_at=head["createdAt"],
        updated_at=head["updatedAt"],
        completed_at=head["completedAt"],
        parent_run_id=head["parentRunId"],
    )


def state_of(head: RunHead, steps: list[Record]) -> RunState:
    """An archived run as the ledger's object (what ``rerun`` and ``invoke`` read)."""
    run = RunState(
        head["runId"],
        head["workflowId"],
        raw_json(head["input"]),
        head["createdAt"],
        head["createdSeq"],
        parent_run_id=head["parentRunId"],
        parent_step=head["parentStep"],
        deadline=head["deadline"],
        rerun_of=head["rerunOf"],
    )
    run.status = RUN_STATUSES[head["status"]]
    run.status_rec = run.status
    run.status_seq = head["statusSeq"]
    run.output = raw_json(head["output"]) if head["output"] is not None else None
    run.error = head["error"]
    run.attempt = head["attempt"]
    run.updated_at = head["updatedAt"]
    run.completed_at = head["completedAt"]
    run.failures = head.get("failures")  # absent from entries archived before it was kept
    for record in steps:
        step = StepState.from_record(record)
        run.steps[step.name] = step
    return run


class RunArchive:
    """Terminal runs on disk, plus the few that wait for their ledger record to be durable."""

    def __init__(self, archive: Archive, *, retiring: bool) -> None:
        self.archive = archive
        self.retiring = retiring
        self.pending: dict[str, RunState] = {}
        self.loading = False
        self.log: Log | None = None
        self._task: asyncio.Task[None] | None = None
        self.linger = LINGER_S
        self._lingering: asyncio.Future[None] | None = None  # resolved when the flush starts
        self._urgent = 0  # callers of ``idle`` waiting: flushes do not linger
        # While compaction rewrites the ledger (``hold``), runs archived meanwhile stay in
        # ``pending`` (the rewrite keeps them in the ledger) and are listed here.
        self._holding = False
        self._archived_held: set[str] = set()

    # --------------------------------------------------------------------------- writing

    def retire(self, run: RunState) -> None:
        """``run`` just became terminal in the ledger's fold: archive it once that is durable."""
        self.pending[run.run_id] = run
        if self.loading:
            if len(self.pending) >= LOAD_BATCH:
                self.flush_now()  # read from the file: on disk already
            return
        if self._task is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return  # flushed by the next flush_now (close, compaction)
            self._task = loop.create_task(self._flush())
        elif len(self.pending) >= BATCH:
            self.hurry()

    async def _flush(self) -> None:
        try:
            while any(key not in self._archived_held for key in self.pending):
                if self.linger > 0 and len(self.pending) < BATCH and not self._urgent:
                    # Before each write, not only the first: runs ending while one is written
                    # would otherwise each start the next at once (a commit every other run).
                    await self._linger()
                held = self._archived_held
                keys = [key for key in self.pending if key not in held]
                if not keys:
                    break
                if self.log is not None:
                    await self.log.barrier()  # their terminal records are durable now
                runs = [self.pending[key] for key in keys if key in self.pending]
                try:
                    entries = [entry_of(run) for run in runs]
                    # SQLite and the append run in a thread: tens of microseconds a run that
                    # the loop spends on steps instead. Readers meanwhile find them in pending.
                    await asyncio.to_thread(self.archive.add, entries)
                except Exception:
                    log.exception("archiving %d finished run(s) failed; retrying", len(keys))
                    await asyncio.sleep(RETRY_S)
                    continue
                if self._holding:
                    self._archived_held.update(run.run_id for run in runs)
                else:
                    self._forget(runs)
        finally:
            self._task = None

    async def _linger(self) -> None:
        loop = asyncio.get_running_loop()
        self._lingering = lingering = loop.create_future()
        timer = loop.call_later(self.linger, _resolve, lingering)
        try:
            await lingering
        finally:
            timer.cancel()
            self._lingering = None

    def hurry(self) -> None:
        """Start the flush that waits for more runs now."""
        if self._lingering is not None:
            _resolve(self._lingering)

    def flush_now(self) -> None:
        """Archive every pending run now (their records are known to be on disk)."""
        runs = list(self.pending.values())
        if not runs:
            return
        # At load most are archived already (the ledger is compacted only now and then):
        # building their entries again would cost more than asking.
        have = self.archive.known([run.run_id for run in runs])
        todo = [run for run in runs if run.run_id not in have]
        if todo:
            self.archive.add([entry_of(run) for run in todo])
        self._forget(runs)

    def _forget(self, runs: list[RunState]) -> None:
        for run in runs:
            if self.pending.get(run.run_id) is run:
                del self.pending[run.run_id]

    async def close(self) -> None:
        """Finish the flush in progress and archive what is left (the ledger is durable)."""
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.flush_now()

    async def idle(self) -> None:
        """Wait until no flush is under way (the runs retired so far are archived)."""
        self._urgent += 1  # no lingering meanwhile
        try:
            self.hurry()
            while self._task is not None:
                await asyncio.wait([self._task])
        finally:
            self._urgent -= 1

    def hold(self) -> None:
        """Compaction starts: runs archived from now on keep their place in ``pending`` (so
        the ledger's rewrite keeps them) until ``release``; ``sync`` covers those before."""
        self._holding = True

    def release(self) -> None:
        """The rewrite is done: the runs archived while it ran leave memory."""
        self._holding = False
        held, self._archived_held = self._archived_held, set()
        self._forget([self.pending[key] for key in held if key in self.pending])

    async def sync(self) -> None:
        """Make every archived run durable (before compaction drops them from the ledger)."""
        await asyncio.to_thread(self.archive.sync)

    async def prune(self, cutoff: int) -> int:
        """Forget the archived runs that ended before ``cutoff`` (retention)."""
        return await asyncio.to_thread(self.archive.prune, cutoff)

    def oldest(self) -> int | None:
        """When the oldest archived run ended (None: the archive is empty)."""
        return self.archive.oldest()

    # --------------------------------------------------------------------------- reading

    def contains(self, run_id: str) -> bool:
        return run_id in self.pending or bool(self.archive.known((run_id,)))

    def known(self, run_ids: list[str]) -> set[str]:
        """Which of ``run_ids`` are archived (pending ones not included)."""
        return self.archive.known(run_ids)

    def load(self, run_id: str) -> RunState | None:
        """The archived run with its steps, or None."""
        run = self.pending.get(run_id)
        if run is not None:
            return run
        found: tuple[RunHead, list[Record]] | None = self.archive.entry(run_id)
        return state_of(*found) if found is not None else None

    def status(self, run_id: str) -> WorkflowRun | None:
        run = self.pending.get(run_id)
        if run is not None:
            return run.snapshot()
        head: RunHead | None = self.archive.head(run_id)
        return snapshot_of(head) if head is not None else None

    def workflow_of(self, run_id: str) -> str | None:
        run = self.pending.get(run_id)
        if run is not None:
            return run.workflow_id
        head: RunHead | None = self.archive.head(run_id)
        return head["workflowId"] if head is not None else None

    def order_of(self, run_id: str) -> int | None:
        run = self.pending.get(run_id)
        return run.created_seq if run is not None else self.archive.order_of(run_id)

    def count(self, status: RunStatus, workflow_id: str | None = None) -> int:
        pending = sum(
            1
            for run in self.pending.values()
            if run.status is status and (workflow_id is None or run.workflow_id == workflow_id)
        )
        return self.archive.count(_tag(workflow_id, status.value) or "") + pending

    def page(
        self,
        workflow_id: str | None,
        status: str | None,
        before: int | None,
        limit: int,
        skip: Container[str] = frozenset(),
    ) -> list[tuple[int, WorkflowRun]]:
        """Up to ``limit`` archived runs (pending ones included), newest first, created before
        the order ``before``; runs named in ``skip`` (the caller has them) are left out."""
        out: list[tuple[int, WorkflowRun]] = []
        for run in self.pending.values():
            if (
                (before is None or run.created_seq < before)
                and (workflow_id is None or run.workflow_id == workflow_id)
                and (status is None or run.status.value == status)
            ):
                out.append((run.created_seq, run.snapshot()))
        tag = _tag(workflow_id, status)
        cursor = before
        got = 0
        while True:
            rows = self.archive.page(tag, cursor, limit)
            for order, key, head in rows:
                if key not in skip and key not in self.pending:
                    out.append((order, snapshot_of(head)))
                    got += 1
            if len(rows) < limit or got >= limit:
                break
            cursor = rows[-1][0]
        out.sort(key=lambda item: item[0], reverse=True)
        return out[:limit]
