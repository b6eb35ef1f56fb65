"""Who hears a realtime message or presence change, and when (the WebSocket hub listens).

Each change is heard once, in log order, and only once it is written: a replay of the log
(another process compacted it; on PostgreSQL, a commit failed and the state is read again)
announces nothing already heard, and a change whose write failed is never heard. Before this,
a standby host serving WebSockets sent every kept message and every member again to its
subscribers each time the worker compacted ``realtime.jsonl``, and on PostgreSQL one failed
commit sent the whole log again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path
from typing import Any

import pytest

from platform_shim.errors import StoreError
from platform_shim.platform import Platform, open_client
from platform_shim.runtime import open_platform
from platform_shim.services.realtime_state import HistoryConfig
from platform_shim.store import open_store
from platform_shim.testing import FakeClock
from tests.platform_shim.store.postgres.test_store import terminate_backends
from tests.support.postgres import PostgresDatabase

CHAT = HistoryConfig(("chat:*",), max_messages=5)


def heard(platform: Platform) -> list[tuple[str, str, Any]]:
    events: list[tuple[str, str, Any]] = []
    platform.realtime.subscribe(
        lambda e: events.append((e["event"], e["channel"], e.get("seq", e["from"])))
    )
    return events


async def test_a_standby_hears_each_change_once_across_the_workers_compaction(
    data_dir: Path, clock: FakeClock
) -> None:
    async with open_platform(data_dir, clock=clock, realtime_history=CHAT) as worker:
        standby = open_client(data_dir, clock=clock)
        try:
            events = heard(standby)
            await worker.realtime.publish("chat:a", "one")
            await worker.realtime.presence.join("room", "ann")
            await worker.realtime.publish("cursor", {"x": 1}, user_id="bob")
            await standby.realtime.history("chat:a")  # catches up
            before = [
                ("message", "chat:a", 1),
                ("presence:join", "room", "ann"),
                ("message", "cursor", "bob"),
            ]
            assert events == before
            await worker.realtime.compact()
            await worker.realtime.publish("chat:a", "two")
            assert [m["seq"] for m in await standby.realtime.history("chat:a")] == [1, 2]
            assert await standby.realtime.presence.members("room") != []
            assert events == [*before, ("message", "chat:a", 2)]
        finally:
            standby.close()


async def test_our_own_changes_are_heard_once_written_in_order(
    data_dir: Path, clock: FakeClock
) -> None:
    async with open_platform(data_dir, clock=clock, realtime_history=CHAT) as platform:
        events = heard(platform)
        await asyncio.gather(
            platform.realtime.publish("chat:a", 1),
            platform.realtime.publish("cursor", 2, user_id="bob"),
            platform.realtime.presence.join("room", "ann"),
            platform.realtime.publish("chat:a", 3),
        )
        assert events == [
            ("message", "chat:a", 1),
            ("message", "cursor", "bob"),
            ("presence:join", "room", "ann"),
            ("message", "chat:a", 2),
        ]


async def test_a_kept_message_whose_commit_failed_is_never_heard(
    postgres_db: PostgresDatabase,
) -> None:
    platform = Platform(open_store(postgres_db.url), FakeClock())
    try:
        await platform.realtime.configure(CHAT)
        events = heard(platform)
        await platform.realtime.publish("chat:a", "first")
        await platform.realtime.presence.join("room", "ann")
        state = platform.realtime.state
        next_seq = state.next_seq

        def end_the_writers_session(channel: str) -> int:
            # In the commit cycle, holding the log's lock: the database ends our session.
            state.next_seq = next_seq  # type: ignore[method-assign]
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                where = "pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory')"
                pool.submit(asyncio.run, terminate_backends(postgres_db.url, where)).result()
            return next_seq(channel)

        state.next_seq = end_the_writers_session  # type: ignore[method-assign]
        with pytest.raises(StoreError):
            await platform.realtime.publish("chat:a", "lost")
        await platform.realtime.publish("chat:a", "next")
        # The lost message was never heard, the one that took its seq was, and the replay
        # after the failed commit announced nothing again.
        assert events == [
            ("message", "chat:a", 1),
            ("presence:join", "room", "ann"),
            ("message", "chat:a", 2),
        ]
        assert [m["data"] for m in await platform.realtime.history("chat:a")] == ["first", "next"]
    finally:
        platform.close()
