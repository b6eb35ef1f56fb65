"""Finished runs leave the worker's memory for the archive and stay readable everywhere:
status, history, result, lists and counts, idempotent starts, reruns, invokes, clients,
restarts, compaction and retention."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from platform_shim.errors import WorkflowFailed
from platform_shim.platform import Platform, open_client
from platform_shim.store import FileStore
from platform_shim.testing import FakeClock
from platform_shim.workflows import archive as archive_module
from platform_shim.workflows import define_workflow
from platform_shim.workflows.archive import ARCHIVE_NAME, RunArchive
from platform_shim.workflows.engine import Engine
from platform_shim.workflows.ledger import LedgerState
from platform_shim.workflows.records import RunStatus
from tests.support.waiting import wait_until_async

from .conftest import Opener

bodies: list[str] = []


@define_workflow({"id": "short"})
async def short(input: Any, step: Any, ctx: Any) -> Any:
    a = await step.run("one", lambda: bodies.append("one") or input)
    b = await step.run("two", lambda: bodies.append("two") or [a, a])
    return {"got": b}


@define_workflow({"id": "bad", "options": {"retries": 0}})
async def bad(input: Any, step: Any, ctx: Any) -> Any:
    await step.run("boom", lambda: 1 / 0)


@define_workflow({"id": "napper"})
async def napper(input: Any, step: Any, ctx: Any) -> Any:
    await step.sleep("nap", "1h")
    return "rested"


@define_workflow({"id": "boss"})
async def boss(input: Any, step: Any, ctx: Any) -> Any:
    return await step.invoke("delegate", "napper", None, timeout="3h")


WORKFLOWS = [short, bad, napper, boss]


def engine_of(platform: Platform) -> Engine:
    assert platform.worker is not None
    return platform.worker.engine


async def test_the_run_map_stays_bounded_while_runs_finish(open_worker: Opener) -> None:
    async with open_worker(WORKFLOWS) as platform:
        engine = engine_of(platform)
        for wave in range(5):
            handles = [await platform.workflows.start("short", wave * 100 + i) for i in range(40)]
            for handle in handles:
                await handle.result(timeout=10)
            # Every run of the wave ended: none is left in the ledger's fold; only the
            # wave's own may still wait for the archive (their records' fsync).
            assert len(engine.state.runs) == 0
            assert len(engine.archive.pending) <= 40
        await platform.settle()
        assert not engine.archive.pending
        assert engine.archive.archive.count() == 200
        counts = await platform.workflows.counts()
        assert counts["completed"] == 200 and sum(counts.values()) == 200


async def test_finished_runs_read_back_from_disk_before_and_after_a_restart(
    open_worker: Opener,
) -> None:
    async with open_worker(WORKFLOWS) as platform:
        ok = [await platform.workflows.start("short", i) for i in range(5)]
        failed = await platform.workflows.start("bad")
        for handle in ok:
            await handle.result(timeout=10)
        with pytest.raises(WorkflowFailed):
            await failed.result(timeout=10)
        await platform.settle()
        assert engine_of(platform).state.runs == {}
        first = await check_readable(platform, [h.run_id for h in ok], failed.run_id)
    async with open_worker(WORKFLOWS) as platform:
        # The ledger still holds them: loading hands them to the archive, which has them.
        assert engine_of(platform).state.runs == {}
        assert engine_of(platform).archive.pending == {}
        again = await check_readable(platform, [h.run_id for h in ok], failed.run_id)
        assert again == first
        await platform.worker.compact()  # type: ignore[union-attr]
        assert await check_readable(platform, [h.run_id for h in ok], failed.run_id) == first


async def check_readable(platform: Platform, ok: list[str], failed: str) -> list[Any]:
    workflows = platform.workflows
    seen = []
    for i, run_id in enumerate(ok):
        handle = workflows.handle(run_id)
        run = await handle.status()
        assert run is not None and run.status is RunStatus.COMPLETED
        assert (run.input, run.output) == (i, {"got": [i, i]})
        assert [(s.name, s.output) for s in await handle.history()] == [
            ("one", i),
            ("two", [i, i]),
        ]
        assert await handle.result(timeout=5) == {"got": [i, i]}
        seen.append(run.to_dict())
    with pytest.raises(WorkflowFailed, match="division by zero"):
        await workflows.handle(failed).result(timeout=5)
    listed = await workflows.list(workflow_id="short")
    assert [run.run_id for run in listed] == ok[::-1]
    page = await workflows.list(workflow_id="short", limit=2, before=ok[3])
    assert [run.run_id for run in page] == [ok[2], ok[1]]
    assert [run.run_id for run in await workflows.list(status="failed")] == [failed]
    assert await workflows.list(status="cancelled") == []
    assert await workflows.list(workflow_id="nope") == []
    counts = await workflows.counts()
    assert (counts["completed"], counts["failed"], sum(counts.values())) == (5, 1, 6)
    return seen


async def test_idempotent_start_rerun_and_workflow_of_see_archived_runs(
    open_worker: Opener,
) -> None:
    bodies.clear()
    async with open_worker(WORKFLOWS) as platform:
        handle = await platform.workflows.start("short", "x", run_id="order-1")
        await handle.result(timeout=5)
        await platform.settle()
    async with open_worker(WORKFLOWS) as platform:
        await platform.worker.compact()  # type: ignore[union-attr]
        state = engine_of(platform).state
        assert "order-1" not in state.runs
        assert state.workflow_of("order-1") == "short"
        assert state.workflow_of("order-2") is None
        again = await platform.workflows.start("short", "other input", run_id="order-1")
        assert again.run_id == "order-1"
        await platform.settle()
        assert bodies == ["one", "two"]  # nothing ran again
        assert (await platform.workflows.counts())["completed"] == 1
        rerun = await platform.workflows.rerun("order-1", "two")
        assert await rerun.result(timeout=5) == {"got": ["x", "x"]}
        assert bodies == ["one", "two", "two"]


async def test_a_parent_reads_its_finished_child_from_the_archive(
    open_worker: Opener, clock: FakeClock
) -> None:
    async with open_worker(WORKFLOWS) as platform:
        parent = await platform.workflows.start("boss")
        await platform.settle()  # the parent waits on the child, which sleeps
    clock.advance(2 * 3600 * 1000)
    async with open_worker(WORKFLOWS) as platform:
        assert await platform.workflows.handle(parent.run_id).result(timeout=10) == "rested"
        await platform.settle()
        history = await platform.workflows.handle(parent.run_id).history()
        child = history[0].child_run_id
        assert child is not None and engine_of(platform).state.runs == {}
        run = await platform.workflows.handle(child).status()
        assert run is not None and run.parent_run_id == parent.run_id


async def test_a_client_reads_archived_runs_and_starts_none_twice(
    open_worker: Opener, data_dir: Path, clock: FakeClock
) -> None:
    async with open_worker(WORKFLOWS) as platform:
        ids = [
            (await platform.workflows.start("short", i, run_id=f"r{i}")).run_id for i in range(3)
        ]
        for run_id in ids:
            await platform.workflows.handle(run_id).result(timeout=5)
        await platform.settle()
        await platform.worker.compact()  # type: ignore[union-attr]
    ledger = (data_dir / "runs.jsonl").read_bytes()
    assert b"r1" not in ledger  # compaction moved the finished runs out
    client = open_client(data_dir, clock=clock)
    try:
        workflows = client.workflows
        assert [run.run_id for run in await workflows.list()] == ["r2", "r1", "r0"]
        assert [s.name for s in await workflows.handle("r1").history()] == ["one", "two"]
        assert await workflows.handle("r0").result(timeout=5) == {"got": [0, 0]}
        assert (await workflows.counts())["completed"] == 3
        await workflows.start("short", 9, run_id="r1")
        assert (data_dir / "runs.jsonl").read_bytes() == ledger  # idempotent: nothing written
    finally:
        client.close()


async def test_retention_prunes_archived_runs(open_worker: Opener, clock: FakeClock) -> None:
    day = 24 * 3600 * 1000
    async with open_worker(WORKFLOWS) as platform:
        old = await platform.workflows.start("short", "old")
        await old.result(timeout=5)
        clock.advance(3 * day)
        new = await platform.workflows.start("short", "new")
        await new.result(timeout=5)
        await platform.settle()
        await platform.worker.compact()  # type: ignore[union-attr]
        assert await platform.workflows.handle(old.run_id).status() is not None
        clock.advance(5 * day)  # old is 8 days old, new 5
        report = await platform.worker.compact()  # type: ignore[union-attr]
        assert report["runs"]["pruned"] == 1
        assert await platform.workflows.handle(old.run_id).status() is None
        assert [run.run_id for run in await platform.workflows.list()] == [new.run_id]
        assert (await platform.workflows.counts())["completed"] == 1


def test_compaction_keeps_a_finished_run_in_the_ledger_until_it_is_archived(
    tmp_path: Path,
) -> None:
    """The crash-safety order: a run leaves ``runs.jsonl`` only once the archive holds it."""
    store = FileStore(tmp_path)
    state = LedgerState()
    archive = RunArchive(store.open_archive(ARCHIVE_NAME, writable=True), retiring=True)
    state.archive = archive
    try:
        records = [
            {"rec": "run", "seq": 1, "runId": "r1", "workflowId": "w", "input": 1, "createdAt": 5},
            {"rec": "run", "seq": 2, "runId": "r2", "workflowId": "w", "input": 2, "createdAt": 6},
            {"rec": "step", "seq": 3, "runId": "r1", "name": "s", "kind": "run",
             "status": "completed", "attempt": 1, "startedAt": 7, "completedAt": 8, "output": 3},
            {"rec": "status", "seq": 4, "runId": "r1", "status": "completed", "at": 9,
             "attempt": 1, "output": 3, "completedAt": 9},
        ]  # fmt: skip
        for record in records:
            state.apply(record, orjson.dumps(record))
        assert list(state.runs) == ["r2"] and list(archive.pending) == ["r1"]
        kept = [orjson.loads(line) for line in state.live_records(lambda run: True)]
        assert [(r["rec"], r.get("runId")) for r in kept] == [
            ("run", "r2"),
            ("run", "r1"),
            ("step", "r1"),
            ("status", "r1"),
            ("mark", None),
        ]
        assert state.page() and [run.run_id for run in state.page()] == ["r2", "r1"]
        archive.flush_now()
        kept = [orjson.loads(line) for line in state.live_records(lambda run: True)]
        assert [(r["rec"], r.get("runId")) for r in kept] == [("run", "r2"), ("mark", None)]
        assert kept[-1]["lastSeq"] == 4
        assert [run.run_id for run in state.page()] == ["r2", "r1"]
        assert [s.output for s in state.lookup("r1").steps.values()] == [b"3"]  # type: ignore[union-attr]
        assert state.status_counts()["completed"] == 1 and state.status_counts()["queued"] == 1
    finally:
        store.close()


async def test_ledger_seqs_keep_rising_when_compaction_empties_the_ledger(
    open_worker: Opener, data_dir: Path
) -> None:
    """Every finished run moved out leaves an empty ledger: its next record must still get a
    higher seq (newest-first order and the status relay's cursor depend on it)."""
    async with open_worker(WORKFLOWS) as platform:
        first = await platform.workflows.start("short", 1)
        await first.result(timeout=5)
        await platform.settle()
        seq = engine_of(platform).state.last_seq
        await platform.worker.compact()  # type: ignore[union-attr]
    async with open_worker(WORKFLOWS) as platform:
        assert engine_of(platform).state.last_seq == seq
        second = await platform.workflows.start("short", 2)
        await second.result(timeout=5)
        listed = [run.run_id for run in await platform.workflows.list()]
        assert listed == [second.run_id, first.run_id]
        assert engine_of(platform).state.runs == {}


async def test_a_run_archived_while_compaction_runs_stays_in_the_ledger(
    open_worker: Opener,
) -> None:
    """Compaction syncs the archive, then rewrites the ledger without the archived runs. A run
    archived between the two is not durable in the archive yet: the rewrite must keep it."""
    async with open_worker(WORKFLOWS) as platform:
        engine = engine_of(platform)
        engine.archive.hold()  # what compaction does before it syncs
        handle = await platform.workflows.start("short", 7)
        await handle.result(timeout=10)
        await engine.archive.idle()
        assert engine.archive.archive.known([handle.run_id]) == {handle.run_id}
        assert handle.run_id in engine.archive.pending
        ledger = b"\n".join(engine.state.live_records(lambda run: True))
        assert handle.run_id.encode() in ledger
        engine.archive.release()
        assert engine.archive.pending == {}
        ledger = b"\n".join(engine.state.live_records(lambda run: True))
        assert handle.run_id.encode() not in ledger


async def test_runs_ending_within_the_linger_share_one_archive_write(open_worker: Opener) -> None:
    """A flush waits ``linger`` for more finished runs (one write per run cost a short run as
    much as its own records); meanwhile they are read from memory; ``settle`` hurries it."""
    async with open_worker(WORKFLOWS) as platform:
        engine = engine_of(platform)
        engine.archive.linger = 3600.0
        handles = [await platform.workflows.start("short", i) for i in range(5)]
        for handle in handles:
            await handle.result(timeout=10)
        # Was: each archived by a flush of its own as soon as its end was durable.
        assert sorted(engine.archive.pending) == sorted(h.run_id for h in handles)
        assert engine.archive.archive.count() == 0
        run = await handles[0].status()
        assert run is not None and run.status is RunStatus.COMPLETED
        await platform.settle()
        assert engine.archive.pending == {}
        assert engine.archive.archive.count() == 5


async def test_a_full_batch_of_finished_runs_does_not_wait_for_the_linger(
    open_worker: Opener,
) -> None:
    """Memory stays bounded while runs end faster than the linger: ``BATCH`` waiting runs
    start the flush at once."""
    async with open_worker(WORKFLOWS) as platform:
        engine = engine_of(platform)
        engine.archive.linger = 3600.0
        for i in range(archive_module.BATCH):
            await (await platform.workflows.start("short", i)).result(timeout=10)
        archived = await wait_until_async(
            lambda: engine.archive.archive.count() >= archive_module.BATCH,
            what="the full batch archived without settle",
        )
        assert archived
        assert engine.archive.pending == {}


async def test_runs_ending_while_an_archive_write_runs_wait_for_the_next_linger(
    open_worker: Opener,
) -> None:
    """Runs that end while a flush is writing share the next write, after a linger of its own
    (the flush used to write them at once: one archive commit every other run under a steady
    stream of short runs); ``settle`` still hurries it."""
    async with open_worker(WORKFLOWS) as platform:
        engine = engine_of(platform)
        engine.archive.linger = 3600.0
        store_archive = engine.archive.archive
        writes: list[int] = []
        writing, go_on = threading.Event(), threading.Event()
        add = store_archive.add

        def held_add(entries: list[Any]) -> int:
            writes.append(len(entries))
            writing.set()
            go_on.wait(10)
            return add(entries)

        store_archive.add = held_add  # type: ignore[method-assign]
        first = await platform.workflows.start("short", 0)
        await first.result(timeout=10)
        engine.archive.hurry()
        assert await asyncio.to_thread(writing.wait, 10)
        later = [await platform.workflows.start("short", i) for i in range(1, 5)]
        for handle in later:
            await handle.result(timeout=10)
        go_on.set()
        await wait_until_async(
            lambda: first.run_id not in engine.archive.pending, what="the first write done"
        )
        for _ in range(50):
            await asyncio.sleep(0.005)
        assert writes == [1]  # was [1, 4] by now: written without waiting
        assert sorted(engine.archive.pending) == sorted(h.run_id for h in later)
        await platform.settle()
        assert writes == [1, 4]
        assert engine.archive.pending == {}
