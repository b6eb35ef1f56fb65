"""Writes nobody awaits: a failure is logged, memory follows only what was written, and the
work is done again once the disk takes writes again (issue: "nothing in the background may die
or be dropped silently"). Faults are injected into ``os.write`` for one file of the folder."""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from platform_shim import open_platform
from platform_shim.events import on_queue
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow
from platform_shim.workflows.engine import Engine
from tests.chaos.test_storage_faults import WriteFault
from tests.support.eventlog import of_type
from tests.support.waiting import wait_until_async


@define_workflow({"id": "bw-one"})
async def bw_one(input: Any, step: Any, ctx: Any) -> Any:
    return await step.run("a", lambda: input)


async def test_a_status_event_that_failed_to_relay_is_relayed_again(
    data_dir: Path,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fault = WriteFault(data_dir, errno.ENOSPC, only="events.jsonl")
    monkeypatch.setattr(os, "write", fault)
    async with open_platform(data_dir, workflows=[bw_one], clock=clock, watch=False) as platform:
        engine = platform.worker.engine  # type: ignore[union-attr]
        fault.active = True
        with caplog.at_level(logging.ERROR):
            handle = await platform.workflows.start("bw-one", 7)
            assert await handle.result(timeout=5) == 7
            await wait_until_async(lambda: fault.failures >= 1)
            await wait_until_async(
                lambda: any("relaying" in r.getMessage() for r in caplog.records),
                what="the relay to log its failed write",
            )
        # The relayed position did not move past the change whose event was not written.
        assert engine.relay.cursor < status_seq_of(engine, handle.run_id)
        fault.active = False
        await wait_until_async(lambda: of_type(data_dir, "workflow.run.completed"))
        await wait_until_async(lambda: engine.relay.cursor >= status_seq_of(engine, handle.run_id))


async def test_a_queue_ack_that_failed_to_write_leaves_the_message_pending(
    data_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, int]] = []

    @on_queue("bw-mail", {"batch": 1, "maxAttempts": 5})
    async def consume(messages: Any, ctx: Any) -> None:
        seen.extend((m["payload"]["to"], m["attempt"]) for m in messages)

    fault = WriteFault(data_dir, errno.ENOSPC, partial=False, only="dispatch.jsonl")
    monkeypatch.setattr(os, "write", fault)
    async with open_platform(
        data_dir, handlers=[consume], clock=clock, watch=False, handler_backoff=lambda a: 0
    ) as platform:
        fault.active = True
        message_id = await platform.queue.send("bw-mail", {"to": "a@x"})
        await wait_until_async(lambda: seen)
        await wait_until_async(lambda: fault.failures >= 1)
        assert platform.worker is not None
        dispatcher = platform.worker.dispatcher
        await wait_until_async(
            lambda: dispatcher.bookkeeping()["retry_at"] >= 1,
            what="the consumer to give the message whose ack failed a retry time",
        )
        # Not acknowledged in memory: the ack was never written.
        assert message_id in platform.queue_state.queues.get("bw-mail", {})
        fault.active = False
        clock.advance("1s")  # the backoff of a failed ack
        await wait_until_async(
            lambda: message_id not in platform.queue_state.queues.get("bw-mail", {})
        )
        assert [to for to, _ in seen] == ["a@x", "a@x"]  # delivered again, at least once


@define_workflow({"id": "bw-parent"})
async def bw_parent(input: Any, step: Any, ctx: Any) -> Any:
    return await step.invoke("child", "bw-one", {"n": 1})


class ChildCreationFault:
    """``os.write`` failing once for the ledger line that creates a child run."""

    def __init__(self) -> None:
        self.failed = 0
        self._real = os.write

    def __call__(self, fd: int, data: Any) -> int:
        if not self.failed and b'"parentStep":"child"' in bytes(data):
            self.failed += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._real(fd, data)


async def test_a_child_whose_creation_failed_is_created_again(
    data_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    fault = ChildCreationFault()
    monkeypatch.setattr(os, "write", fault)
    async with open_platform(
        data_dir, workflows=[bw_parent, bw_one], clock=clock, watch=False
    ) as platform:
        handle = await platform.workflows.start("bw-parent")
        await platform.settle()
        assert fault.failed == 1
        clock.advance("1s")  # the parent is replayed and creates its child again
        assert await handle.result(timeout=5) == {"n": 1}


@define_workflow({"id": "bw-ticks"})
async def bw_ticks(input: Any, step: Any, ctx: Any) -> Any:
    for i in range(20):
        await step.wait_for_event(f"w{i}", type="bw.tick", match={"i": i})
    return 20


async def test_the_relay_position_is_written_before_the_files_close(
    data_dir: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    import orjson

    with caplog.at_level(logging.ERROR):
        async with open_platform(
            data_dir, workflows=[bw_ticks], clock=clock, watch=False, durability="flush"
        ) as p:
            handle = await p.workflows.start("bw-ticks")
            for i in range(20):
                resumed = 0
                while not resumed:  # until the run has reached wait i
                    resumed = await p.workflows.send_event("bw.tick", {"i": i})
            assert await handle.result(timeout=5) == 20
            assert p.worker is not None
            status_seq = status_seq_of(p.worker.engine, handle.run_id)
        # The relay moved its position as the worker stopped: written, not left to a closed file.
        assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text
    relays = [
        record["lastSeq"]
        for record in map(orjson.loads, (data_dir / "dispatch.jsonl").read_bytes().splitlines())
        if record.get("rec") == "relay"
    ]
    assert relays and relays[-1] >= status_seq


def status_seq_of(engine: Engine, run_id: str) -> int:
    """The seq of the run's latest status record (a finished run is read from the archive)."""
    run = engine.state.lookup(run_id)
    assert run is not None, run_id
    return run.status_seq
