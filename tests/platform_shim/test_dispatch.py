"""Event handlers: filters, event shapes, retries then dead, isolation, queues."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from platform_shim.errors import DefinitionError
from platform_shim.events import (
    define_event,
    on_db_change,
    on_kv_change,
    on_queue,
    on_storage_change,
)
from platform_shim.runtime import open_platform
from platform_shim.testing import FakeClock


def opener(data_dir: Path, clock: FakeClock, handlers: list[Any], **options: Any) -> Any:
    options.setdefault("handler_backoff", lambda attempt: 0)
    options.setdefault("watch", False)
    return open_platform(data_dir, handlers=handlers, clock=clock, **options)


async def test_kv_db_storage_and_raw_handlers_get_their_events(
    data_dir: Path, clock: FakeClock
) -> None:
    seen: dict[str, list[Any]] = {"kv": [], "db": [], "storage": [], "raw": []}

    @on_kv_change({"namespace": "invites", "keyPattern": "inv:*", "op": "put"})
    async def invites(event: Any, ctx: Any) -> None:
        seen["kv"].append(event)

    @on_db_change({"collection": "users", "op": "insert"})
    async def users(event: Any, ctx: Any) -> None:
        seen["db"].append(event)

    @on_storage_change({"keyPattern": "uploads/*"})
    async def uploads(event: Any, ctx: Any) -> None:
        seen["storage"].append(event)

    @define_event({"t": "order.placed"})
    async def orders(event: Any, ctx: Any) -> None:
        seen["raw"].append((event, ctx.handler_id))

    async with opener(data_dir, clock, [invites, users, uploads, orders]) as platform:
        await platform.kv.put("invites", "inv:1", {"to": "a@b.c"})
        await platform.kv.put("invites", "other:1", 1)
        await platform.kv.put("elsewhere", "inv:2", 1)
        await platform.kv.delete("invites", "inv:1")
        await platform.database.insert_one("users", {"_id": "u1", "email": "a@b.c"})
        await platform.database.update_one("users", {"_id": "u1"}, {"$set": {"n": 1}})
        await platform.storage.put("uploads/a/b.png", b"png", {"contentType": "image/png"})
        await platform.storage.put("private/x", b"no")
        await platform.events.publish("order.placed", {"orderId": 1})
        await platform.settle()
        stream_ids = {(e.t, e.k): e.id for e in platform.stream.since(0)}
    # Every kind carries the stream event's id under one name, eventId (SPEC 6.6).
    assert seen["kv"][0]["eventId"] == stream_ids["kv.put", "inv:1"]
    assert seen["db"][0]["eventId"] == stream_ids["db.document.created", "u1"]
    assert seen["storage"][0]["eventId"] == stream_ids["storage.put", "uploads/a/b.png"]
    assert seen["raw"][0][0]["eventId"] == seen["raw"][0][0]["id"]
    assert seen["raw"][0][0]["eventId"] == stream_ids["order.placed", None]
    # KV and storage events also keep the old name for it.
    assert seen["kv"][0]["id"] == seen["kv"][0]["eventId"]
    assert seen["storage"][0]["id"] == seen["storage"][0]["eventId"]
    assert [(e["op"], e["namespace"], e["key"], e["value"]) for e in seen["kv"]] == [
        ("put", "invites", "inv:1", {"to": "a@b.c"})
    ]
    assert [
        (e["op"], e["collection"], e["id"], e["doc"]["email"], e["before"]) for e in seen["db"]
    ] == [("insert", "users", "u1", "a@b.c", None)]
    assert seen["db"][0]["doc"]["id"] == "u1"
    assert [(e["op"], e["key"], e["contentType"]) for e in seen["storage"]] == [
        ("put", "uploads/a/b.png", "image/png")
    ]
    assert len(seen["raw"]) == 1
    event, handler_id = seen["raw"][0]
    assert (
        event["t"] == "order.placed"
        and event["data"] == {"orderId": 1}
        and set(event) == {"id", "eventId", "t", "r", "ns", "k", "data", "ts"}
    )
    assert handler_id == "test_dispatch:orders"


async def test_a_failing_handler_is_retried_then_dead_without_blocking_others(
    data_dir: Path, clock: FakeClock
) -> None:
    attempts: list[int] = []
    healthy: list[str] = []

    @on_kv_change({"namespace": "n"})
    async def flaky(event: Any, ctx: Any) -> None:
        attempts.append(event["id"])
        if event["key"] == "bad":
            raise RuntimeError("cannot handle bad")

    @on_kv_change({"namespace": "n"})
    async def steady(event: Any, ctx: Any) -> None:
        healthy.append(event["key"])

    async with opener(data_dir, clock, [flaky, steady], handler_attempts=3) as platform:
        await platform.kv.put("n", "bad", 1)
        await platform.kv.put("n", "good", 2)
        await platform.settle()
    bad_id = attempts[0]
    assert attempts.count(bad_id) == 3
    assert len(attempts) == 4  # three tries of "bad", then "good" once
    assert healthy == ["bad", "good"]
    dead = [orjson.loads(line) for line in (data_dir / "dispatch.jsonl").read_bytes().splitlines()]
    dead = [d for d in dead if d["rec"] == "dead"]
    assert len(dead) == 1 and dead[0]["handler"] == "test_dispatch:flaky"
    assert dead[0]["eventId"] == bad_id and dead[0]["eventType"] == "kv.put"
    assert dead[0]["error"] == {"type": "RuntimeError", "message": "cannot handle bad"}


async def test_delivery_is_in_order_and_resumes_after_a_restart(
    data_dir: Path, clock: FakeClock
) -> None:
    got: list[str] = []

    @on_kv_change({"namespace": "seq"})
    async def ordered(event: Any, ctx: Any) -> None:
        got.append(event["key"])

    async with opener(data_dir, clock, [ordered]) as platform:
        for i in range(20):
            await platform.kv.put("seq", f"k{i:02}", i)
        await platform.settle()
    # Writes made while no worker runs are delivered when one starts.
    from platform_shim.platform import open_client

    client = open_client(data_dir, clock=clock)
    await client.kv.put("seq", "k20", 20)
    client.close()
    async with opener(data_dir, clock, [ordered]) as platform:
        await platform.settle()
    assert got == [f"k{i:02}" for i in range(21)]


async def test_queue_consumer_batches_acks_and_dead_letters(
    data_dir: Path, clock: FakeClock
) -> None:
    batches: list[list[Any]] = []

    @on_queue("emails", {"batch": 2, "maxAttempts": 2})
    async def send_emails(messages: Any, ctx: Any) -> None:
        batches.append([(m["payload"]["to"], m["attempt"]) for m in messages])
        if any(m["payload"]["to"] == "bounce@x" for m in messages):
            raise RuntimeError("smtp said no")

    async with opener(data_dir, clock, [send_emails]) as platform:
        # Sent in one go: both are pending when the consumer wakes, so they come as one batch.
        await asyncio.gather(
            platform.queue.send("emails", {"to": "a@x"}),
            platform.queue.send("emails", {"to": "b@x"}),
        )
        await platform.settle()
        await platform.queue.send("emails", {"to": "bounce@x"})
        await platform.queue.send("emails", {"to": "later@x"}, delay="1m")
        await platform.settle()
        assert batches[0] == [("a@x", 1), ("b@x", 1)]
        assert ("bounce@x", 2) in batches[-1]
        assert platform.queue_state.queues["emails"] and all(
            m["payload"]["to"] == "later@x" for m in platform.queue_state.queues["emails"].values()
        )
        clock.advance("1m")
        await platform.settle()
        assert batches[-1] == [("later@x", 1)]
        assert not platform.queue_state.queues["emails"]
    dead = [
        orjson.loads(line) for line in (data_dir / "deadletter.jsonl").read_bytes().splitlines()
    ]
    assert [(d["q"], d["msg"]["payload"]["to"], d["error"]["message"]) for d in dead] == [
        ("emails", "bounce@x", "smtp said no")
    ]


async def test_dead_lettered_messages_leave_no_retry_bookkeeping(
    data_dir: Path, clock: FakeClock
) -> None:
    @on_queue("poison", {"batch": 5, "maxAttempts": 3})
    async def always_fails(messages: Any, ctx: Any) -> None:
        raise RuntimeError("poison")

    async with opener(data_dir, clock, [always_fails], handler_backoff=lambda a: 1000) as p:
        await asyncio.gather(*(p.queue.send("poison", {"n": i}) for i in range(20)))
        await p.settle()
        for _ in range(3):  # the retries come due
            clock.advance("2s")
            await p.settle()
        assert not p.queue_state.queues["poison"]
        assert p.worker is not None
        held = p.worker.dispatcher.bookkeeping()
        assert held["retry_at"] == 0 and held["attempts"] == 0, held
    dead = (data_dir / "deadletter.jsonl").read_bytes().splitlines()
    assert len(dead) == 20


async def test_a_removed_handlers_cursor_is_dropped_at_the_next_start(
    data_dir: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    kept: list[str] = []
    removed: list[str] = []

    @on_kv_change({"namespace": "n"})
    async def stays(event: Any, ctx: Any) -> None:
        kept.append(event["key"])

    @on_kv_change({"namespace": "n"})
    async def goes(event: Any, ctx: Any) -> None:
        removed.append(event["key"])

    async with opener(data_dir, clock, [stays, goes]) as platform:
        await platform.kv.put("n", "a", 1)
        await platform.settle()
    async with opener(data_dir, clock, [stays]) as platform:
        assert platform.worker is not None
        assert set(platform.worker.dispatcher.state.cursors) == {"test_dispatch:stays"}
        await platform.kv.put("n", "b", 2)
        await platform.settle()
    assert "dropping the cursor of test_dispatch:goes" in caplog.text
    # Gone for good: back again, it starts at the end of the stream and does not replay "b".
    async with opener(data_dir, clock, [stays, goes]) as platform:
        await platform.kv.put("n", "c", 3)
        await platform.settle()
    assert kept == ["a", "b", "c"]
    assert removed == ["a", "c"]


async def test_unacknowledged_messages_survive_a_restart(data_dir: Path, clock: FakeClock) -> None:
    got: list[str] = []

    @on_queue("jobs")
    async def jobs(messages: Any, ctx: Any) -> None:
        got.extend(m["payload"] for m in messages)

    from platform_shim.platform import open_client

    client = open_client(data_dir, clock=clock)
    await client.queue.send("jobs", "one")
    await client.queue.send("jobs", "two")
    client.close()
    async with opener(data_dir, clock, [jobs]) as platform:
        await platform.settle()
    async with opener(data_dir, clock, [jobs]) as platform:
        await platform.settle()
    assert got == ["one", "two"]


def test_filters_are_checked_at_load() -> None:
    async def fn(event: Any, ctx: Any) -> None:
        return None

    with pytest.raises(DefinitionError, match="unknown kv handler filter"):
        on_kv_change({"namespace": "a", "pattern": "x"})(fn)
    with pytest.raises(DefinitionError, match="'op' must be one of"):
        on_db_change({"op": "upsert"})
    with pytest.raises(DefinitionError, match="maxAttempts"):
        on_queue("q", {"maxAttempts": 0})
    with pytest.raises(DefinitionError, match="async def"):
        on_kv_change({})(lambda e, c: None)  # type: ignore[arg-type, return-value]


async def test_writes_from_another_process_reach_handlers_within_a_second(data_dir: Path) -> None:
    seen = asyncio.Event()
    events: list[Any] = []

    @on_kv_change({"namespace": "x"})
    async def watcher(event: Any, ctx: Any) -> None:
        events.append(event)
        seen.set()

    async with open_platform(data_dir, handlers=[watcher]):
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import asyncio; from platform_shim.platform import open_client\n"
            f"p = open_client({str(data_dir)!r})\nasyncio.run(p.kv.put('x', 'k', 1))",
            env={**__import__("tests.support.procs", fromlist=["env"]).env()},
        )
        assert await proc.wait() == 0
        await asyncio.wait_for(seen.wait(), timeout=1.0)  # SPEC 2.6: within one second
    # The handler saw the other process's write itself, once.
    assert [(e["op"], e["namespace"], e["key"], e["value"]) for e in events] == [
        ("put", "x", "k", 1)
    ]
