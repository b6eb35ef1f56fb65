"""A store listens for other stores' commits only while another store is there.

PostgreSQL hands each notification to every listening session, the sender's own included: a
host alone on its database was woken for each of its own commits to drop the notification
(its listener's backend, then its bridge thread), most of what a 1-step run cost besides its
own two commits. These pin that a lone store listens on nothing but the hello channel, that a
newcomer is heard at once (its hello), and that the listening stops once nobody is left.
"""

from __future__ import annotations

import asyncio
import functools

import pytest

from platform_shim.store import open_store
from platform_shim.store.postgres import listening
from platform_shim.store.postgres.store import PostgresStore
from tests.support.consumers import Recorder
from tests.support.postgres import PostgresDatabase


def pg_store(url: str) -> PostgresStore:
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    return store


def channels(store: PostgresStore) -> list[str]:
    """What the store's listening session listens on, as the server says."""
    listener = store.listener
    assert listener is not None
    found = store.bridge.run(listener.conn.fetch("SELECT c FROM pg_listening_channels() c"))
    return sorted(str(r["c"]) for r in found)


def _line(n: int) -> tuple[bytes, None]:
    return b'{"n":%d}' % n, None


async def until(condition: object, what: str) -> None:
    """Wait (bounded) for ``condition()``: the bridge acts on its own thread."""
    for _ in range(3000):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_a_store_alone_listens_only_for_hellos(postgres_db: PostgresDatabase) -> None:
    store = pg_store(postgres_db.url)
    try:
        log = store.open_log("t", Recorder())
        for n in range(3):
            await log.submit(functools.partial(_line, n))
        # Was ["platform_store"]: each of its own commits woke it.
        assert channels(store) == [listening.HELLO]
    finally:
        store.close()


async def test_a_newcomer_is_heard_at_once_and_its_commits_wake_the_first(
    postgres_db: PostgresDatabase,
) -> None:
    first = pg_store(postgres_db.url)
    second: PostgresStore | None = None
    try:
        state = Recorder()
        log = first.open_log("t", state)
        woke = asyncio.Event()

        def on_change() -> None:
            log.refresh()
            if state.records:
                woke.set()

        watch = first.watch(on_change, poll_interval=3600)  # polling cannot be what wakes it
        watch.start()
        try:
            assert channels(first) == [listening.HELLO]
            second = pg_store(postgres_db.url)
            # The newcomer saw the first one when it opened; the first heard its hello.
            assert channels(second) == sorted([listening.HELLO, "platform_store"])
            await until(lambda: first.listener is not None and first.listener.listening, "join")
            assert channels(first) == sorted([listening.HELLO, "platform_store"])
            await second.open_log("t", Recorder()).submit(functools.partial(_line, 1))
            await asyncio.wait_for(woke.wait(), timeout=30)
        finally:
            await watch.stop()
        assert [r["n"] for r in state.records] == [1]
    finally:
        first.close()
        if second is not None:
            second.close()


async def test_listening_stops_once_the_other_store_is_gone(
    postgres_db: PostgresDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listening, "TEND_S", 0.05)
    first, second = pg_store(postgres_db.url), pg_store(postgres_db.url)
    try:
        await until(lambda: first.listener is not None and first.listener.listening, "join")
        second.close()
        await until(lambda: first.listener is not None and not first.listener.listening, "leave")
        assert channels(first) == [listening.HELLO]
    finally:
        first.close()
        second.close()
