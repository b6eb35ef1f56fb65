"""``host.standby.Standby`` in one process, on real stores: what it does when the lock frees.

A ``Worker`` holds the folder's worker lock (``flock`` is per open file, so a second store in
the same process is kept out as another process would be); the standby's ``promote`` is a test
function. Checked: nothing is promoted while the worker lives; when it stops, ``promote`` gets
a store that holds the lock; a ``promote`` that fails leaves the standby polling (the lock let
go), and the next round promotes; after a promotion the client closes only once the requests
that began on it are done.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from host.standby import Standby
from platform_shim.platform import open_client
from platform_shim.runtime import Worker
from platform_shim.store.protocol import Store
from tests.support.waiting import wait_until_async


async def test_a_failed_takeover_keeps_polling_and_the_client_outlives_its_requests(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    worker = Worker(data)
    await worker.start()
    client = open_client(data)
    got: list[Store] = []

    async def promote(store: Store) -> bool:
        assert store.worker_pid() is not None  # it holds the lock
        got.append(store)
        if len(got) == 1:
            store.close()  # as a host whose engine did not start: the lock is let go
            raise RuntimeError("the engine did not start (by design, once)")
        return True

    standby = Standby(client, data, promote, interval=0.01)
    standby.start(worker.store.worker_pid() if worker.store else None)
    try:
        assert standby.worker_pid is not None
        with standby.serving():  # a request in flight on the client across the takeover
            await worker.stop()
            await wait_until_async(lambda: len(got) == 2, 15, "a second, successful promotion")
            # Promoted, but the request still holds the client: it stays open and answers.
            assert not standby.closed
            await asyncio.wait_for(client.kv.put("ns", "k", "written after the takeover"), 15)
            assert await client.kv.get("ns", "k") == "written after the takeover"
        await wait_until_async(lambda: standby.closed, 15, "the client to close")
        assert got[1].worker_pid() is not None
    finally:
        await standby.close()
        for store in got:
            store.close()
