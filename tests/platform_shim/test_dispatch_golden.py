"""Golden files for the on-disk keys of ``dispatch.jsonl`` and of the run archive's segments:
a folder written in the old one-letter keys still loads to the exact same state as the new
keys, compaction rewrites it in the new keys, and a worker picks such a folder up end to end.
The fixtures and how they were made: ``tests/fixtures/golden/README.md``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest

from platform_shim.dispatch_records import DeadRecord, DispatchState, compacted_lines, read_record
from platform_shim.events import define_event, on_queue
from platform_shim.runtime import open_platform
from platform_shim.store import FileStore
from platform_shim.store.archive import ArchiveEntry, FileArchive
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow
from platform_shim.workflows.archive import RunArchive
from platform_shim.workflows.records import RunStatus

GOLDEN = Path(__file__).parent.parent / "fixtures" / "golden"
T0 = 1767225600000
M1 = "01kdvdna0087tyn2j5scvkcxmy"  # acknowledged
M2 = "01kdvdnaz8ep1q5sq2cahqy1p6"  # failed twice, still pending
AUDIT = "test_dispatch_golden:audit"
FLAKY = "test_dispatch_golden:flaky"
TRIGGER = "trigger:on-order"

DISPATCH_KEYS = {
    "cursor": {"rec", "handler", "lastEvent"},
    "drop": {"rec", "handler"},
    "relay": {"rec", "lastSeq"},
    "ack": {"rec", "queue", "messageIds"},
    "attempt": {"rec", "queue", "messageId", "attempt"},
    "dead": {"rec", "handler", "eventId", "eventType", "error", "at"},
}


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def folded(data: Path) -> DispatchState:
    """``data``'s dispatch.jsonl as the worker loads it (through the file store)."""
    store = FileStore(data)
    try:
        state = DispatchState()
        store.open_log("dispatch", state)
        return state
    finally:
        store.close()


def folder_with(tmp_path: Path, *files: tuple[str, Path]) -> Path:
    data = tmp_path / "data"
    for name, source in files:
        (data / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, data / name)
    return data


@pytest.mark.parametrize("keys", ["old-keys", "new-keys"])
def test_old_and_new_key_files_fold_to_the_exact_same_state(tmp_path: Path, keys: str) -> None:
    data = folder_with(tmp_path, ("dispatch.jsonl", GOLDEN / keys / "dispatch.jsonl"))
    state = folded(data)
    # "gone" was dropped at the second start; every other consumer finished event 14.
    assert state.cursors == {AUDIT: 14, FLAKY: 14, TRIGGER: 14}
    assert state.relay == 9
    assert state.acked == {"mail": {M1}}
    assert state.attempts == {M2: 2}  # the ack of M1 forgot its attempt
    assert state.dead == [
        DeadRecord(
            rec="dead",
            handler=FLAKY,
            eventId=4,
            eventType="kv.put",
            error={"type": "RuntimeError", "message": "cannot handle bad"},
            at=T0,
        )
    ]


def test_each_old_line_reads_as_its_new_key_line() -> None:
    old = lines(GOLDEN / "old-keys" / "dispatch.jsonl")
    new = lines(GOLDEN / "new-keys" / "dispatch.jsonl")
    assert len(old) == len(new) == 65
    assert {orjson.loads(line)["rec"] for line in old} == set(DISPATCH_KEYS)  # every kind
    for old_line, new_line in zip(old, new, strict=True):
        record = orjson.loads(new_line)
        assert set(record) == DISPATCH_KEYS[record["rec"]], new_line
        assert read_record(orjson.loads(old_line)) == record, old_line
        assert read_record(record) == record


async def test_compacting_an_old_key_file_writes_exactly_the_new_key_golden(
    tmp_path: Path,
) -> None:
    data = folder_with(tmp_path, ("dispatch.jsonl", GOLDEN / "old-keys" / "dispatch.jsonl"))
    store = FileStore(data)
    try:
        state = DispatchState()
        log = store.open_log("dispatch", state)
        # Both messages' queue.sent events are still in the stream; M2 is pending.
        await log.rewrite(lambda: compacted_lines(state, {M2: "mail"}, {M1, M2}))
    finally:
        store.close()
    golden = GOLDEN / "new-keys" / "dispatch.compacted.jsonl"
    assert (data / "dispatch.jsonl").read_bytes() == golden.read_bytes()
    again = folded(data)
    assert (again.cursors, again.relay, again.acked, again.attempts, again.dead) == (
        state.cursors,
        state.relay,
        state.acked,
        state.attempts,
        state.dead,
    )


def old_segment_entries() -> list[ArchiveEntry]:
    """The entries of the old-key golden segment, read by hand in the old layout."""
    found = []
    segment = lines(GOLDEN / "old-keys" / "runs-archive" / "000001.jsonl")
    for head_line, body_line in zip(segment[::2], segment[1::2], strict=True):
        head, body = orjson.loads(head_line), orjson.loads(body_line)
        assert set(head) == {"k", "o", "a", "t", "h"} and set(body) == {"k", "b"}
        found.append(
            ArchiveEntry(
                head["k"],
                head["o"],
                head["a"],
                tuple(head["t"]),
                orjson.dumps(head["h"]),
                orjson.dumps(body["b"]),
            )
        )
    return found


def test_archive_entries_are_written_in_the_new_keys(tmp_path: Path) -> None:
    archive = FileArchive(tmp_path / "arch", writable=True)
    assert archive.add(old_segment_entries()) == 3
    archive.close()
    golden = GOLDEN / "new-keys" / "runs-archive" / "000001.jsonl"
    assert (tmp_path / "arch" / "000001.jsonl").read_bytes() == golden.read_bytes()
    assert {frozenset(orjson.loads(line)) for line in lines(golden)} == {
        frozenset({"key", "order", "at", "tags", "head"}),
        frozenset({"key", "body"}),
    }


@pytest.mark.parametrize("keys", ["old-keys", "new-keys"])
def test_old_and_new_key_segments_read_the_same_runs(tmp_path: Path, keys: str) -> None:
    segment = GOLDEN / keys / "runs-archive" / "000001.jsonl"
    data = folder_with(tmp_path, ("runs-archive/000001.jsonl", segment))
    # No index: opening the writer rebuilds it from the segment alone.
    archive = FileArchive(data / "runs-archive", writable=True)
    try:
        assert archive.count() == 3
        assert (archive.count("s:completed"), archive.count("s:failed")) == (2, 1)
        page = archive.page("w:on-order", None, 10)
        assert [(order, key) for order, key, _ in page] == [
            (4, "on-order.evt8"),
            (1, "on-order.evt1"),
        ]
        assert [key for _, key, _ in archive.page(None, 4, 10)] == ["on-order.evt1"]
        assert [key for _, key, _ in archive.page("ws:failed:refund", None, 10)] == ["refund-2"]
        runs = RunArchive(archive, retiring=True)
        first = runs.status("on-order.evt1")
        assert first is not None
        assert (first.status, first.output, first.input["data"]) == (
            RunStatus.COMPLETED,
            {"order": 1},
            {"orderId": 1},
        )
        refund = runs.load("refund-2")
        assert refund is not None and refund.status is RunStatus.FAILED
        assert refund.error is not None and refund.error["type"] == "ZeroDivisionError"
        assert [(s.name, s.status.value) for s in refund.steps.values()] == [("pay", "failed")]
        assert [run.run_id for _, run in runs.page("refund", "failed", None, 10)] == ["refund-2"]
        assert runs.workflow_of("on-order.evt8") == "on-order"
    finally:
        archive.close()


# The project the old-key folder was written with (handler ids come from this file's name).
audited: list[Any] = []
mailed: list[tuple[str, int]] = []


@define_event({"t": "order.placed"})
async def audit(event: Any, ctx: Any) -> None:
    audited.append(event["data"]["orderId"])


@on_queue("mail")
async def mailer(messages: Any, ctx: Any) -> None:
    mailed.extend((m["id"], m["attempt"]) for m in messages)


@define_workflow({"id": "on-order", "trigger": {"kind": "event", "t": "order.placed"}})
async def on_order(input: Any, step: Any, ctx: Any) -> Any:
    return await step.run("note", lambda: {"order": input["data"]["orderId"]})


@define_workflow({"id": "refund", "options": {"retries": 0}})
async def refund(input: Any, step: Any, ctx: Any) -> Any:
    await step.run("pay", lambda: 1 / 0)


async def test_a_worker_picks_up_an_old_key_folder_where_it_left_off(tmp_path: Path) -> None:
    old = GOLDEN / "old-keys"
    data = tmp_path / "data"
    shutil.copytree(old, data)
    audited.clear()
    mailed.clear()
    clock = FakeClock(T0 + 60_000)
    async with open_platform(
        data,
        workflows=[on_order, refund],
        handlers=[audit, mailer],  # "flaky" is gone: its cursor is dropped
        clock=clock,
        watch=False,
        handler_backoff=lambda attempt: 0,
    ) as platform:
        await platform.settle()
        # From their old cursors (event 14): only the two orders placed while no worker ran.
        assert audited == [3, 4]
        for run_id, order in [("on-order.evt15", 3), ("on-order.evt16", 4)]:
            assert await platform.workflows.handle(run_id).result(timeout=5) == {"order": order}
        # The acknowledged message is not delivered again; the pending one is, as attempt 3.
        assert mailed == [(M2, 3)]
        # Runs archived in the old keys read as before.
        assert await platform.workflows.handle("on-order.evt1").result(timeout=5) == {"order": 1}
        status = await platform.workflows.handle("refund-2").status()
        assert status is not None and status.status is RunStatus.FAILED
        assert platform.worker is not None
        dispatcher = platform.worker.dispatcher
        last = platform.stream.last_id  # the new runs' status events came after 16
        assert last > 16 and dispatcher.consumers() == {AUDIT: last, TRIGGER: last}
        appended = lines(data / "dispatch.jsonl")[65:]
        assert orjson.loads(appended[0]) == {"rec": "drop", "handler": FLAKY}
        await platform.worker.compact()
    # Read once the worker stopped: the status relay writes its position at most every 50 ms
    # and when it stops, so the position may move (and be written) after the compaction.
    state = dispatcher.state
    live = (state.cursors, state.relay, state.acked, state.attempts, state.dead)
    compacted = [orjson.loads(line) for line in lines(data / "dispatch.jsonl")]
    assert all(set(record) == DISPATCH_KEYS[record["rec"]] for record in compacted), compacted
    again = folded(data)
    assert (again.cursors, again.relay, again.acked, again.attempts, again.dead) == live
    assert again.cursors == {AUDIT: last, TRIGGER: last} and again.attempts == {}
