"""Who hears an event, and when: a stream listener (SSE, the dispatcher, the dev server's log)
hears an event this process writes only once its write committed, and never one whose write
failed. The log applies a record before its commit (the next record must see it); on
PostgreSQL a commit can then fail (the database ended the session, or refused the line), the
state is replayed without it and its id goes to the next event. A listener told at apply time
saw an event that never happened, and an SSE client then skipped the real event that took
its id.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path

import pytest

from platform_shim.errors import StoreError
from platform_shim.platform import Platform, open_client
from platform_shim.services.stream import StreamEvent
from platform_shim.store import open_store
from platform_shim.testing import FakeClock
from tests.platform_shim.store.postgres.test_store import terminate_backends
from tests.support import eventlog
from tests.support.postgres import PostgresDatabase


async def test_a_listener_never_hears_an_event_whose_commit_failed(
    postgres_db: PostgresDatabase,
) -> None:
    platform = Platform(open_store(postgres_db.url), FakeClock())
    heard: list[tuple[int, str]] = []

    def listener(event: StreamEvent) -> None:
        heard.append((event.id, event.t))

    platform.stream.add_listener(listener)
    try:
        await platform.stream.submit("test.first", "test", None, None, b"{}")
        assert heard == [(1, "test.first")]

        def end_the_writers_session() -> bool:
            # In the commit cycle, holding the log's lock: the database ends our session.
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                where = "pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory')"
                pool.submit(asyncio.run, terminate_backends(postgres_db.url, where)).result()
            return True

        with pytest.raises(StoreError):
            await platform.stream.submit(
                "test.lost", "test", None, None, b"{}", validate=end_the_writers_session
            )
        await platform.stream.submit_batch(lambda: [("test.next", "test", None, None, b"{}")])
        # The lost event was never heard; the one that took its id was.
        assert heard == [(1, "test.first"), (2, "test.next")]
    finally:
        platform.close()


async def test_a_listener_hears_our_events_once_written_each_once_in_order(
    tmp_path: Path,
) -> None:
    platform = open_client(tmp_path / "data")
    heard: list[int] = []
    written_when_heard: list[bool] = []

    def listener(event: StreamEvent) -> None:
        heard.append(event.id)
        line = event.line + b"\n"
        written_when_heard.append(line in eventlog.raw(tmp_path / "data"))

    platform.stream.add_listener(listener)
    try:
        await asyncio.gather(
            *(platform.stream.submit("test.e", "test", None, None, b"{}") for _ in range(20))
        )
        await platform.stream.submit_batch(
            lambda: [("test.b", "test", None, None, b"{}"), ("test.b", "test", None, None, b"{}")]
        )
        await asyncio.sleep(0)
        assert heard == list(range(1, 23))
        assert all(written_when_heard)
    finally:
        platform.close()
