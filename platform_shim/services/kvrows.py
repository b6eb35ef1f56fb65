"""KV writes that read the rows first, on a store that keeps the keys in rows
(``Store.kv_table()``): the expiry sweeper and a delete.

Invariant: one sweep at a time (two would announce the same keys): a sweep asked for while one
runs runs again after it. A sweep reads the keys expired at the service's clock's now, a batch
at a time, announces each with one ``kv.expired`` event, and waits for those commits (the
store's trigger removes each row in its event's commit) before reading the next expiration to
arm for (else it would be one of the keys just announced). The keys are read outside the commit
cycle, so a write to one of them may commit between that read and its announcement: an
announcement checks, in the commit cycle (caught up with every host's writes by then), the
stream's events since the read (``EventStream.written_since``), writing nothing for a key
written meanwhile (or when the events kept no longer reach back), which the next sweep judges
again. (The trigger also removes a row only while
it still has the announced expiration, as ``KvState.apply_event`` does.) One key's failure stops
no other key; a sweep that failed is tried again ``RETRY_MS`` later.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from platform_shim.clock import Clock
from platform_shim.store.protocol import KvTable

if TYPE_CHECKING:
    from platform_shim.services.stream import EventStream

__all__ = ["BATCH", "RETRY_MS", "RowSweeper", "delete_row"]

log = logging.getLogger("platform_shim.kv")

BATCH = 500
"""Expired keys read and announced per round trip."""
RETRY_MS = 1000
"""How long after a failed sweep the next one runs."""


async def delete_row(table: KvTable, stream: EventStream, ns: str, key: str) -> None:
    """Remove ``key``, announcing it with the value removed; nothing for a missing key.

    The value the event carries is read first: the rows are not ours to look at inside the
    commit cycle. The cycle then checks nobody wrote the key since that read (another host's
    delete or put, caught up with by then); if someone did, read again, so the event names the
    value it removes and a key two hosts delete is announced once."""
    while True:
        since = stream.last_id
        found = await table.get(ns, key)
        if found is None:
            return
        written = await stream.submit(
            "kv.delete",
            "kv",
            ns,
            key,
            b'{"value":' + found[0] + b"}",
            lambda eid, ts: True,
            validate=functools.partial(_untouched, stream, since, ns, key),
        )
        if written:
            return


def _untouched(stream: EventStream, since: int, ns: str, key: str) -> bool:
    """In the commit cycle: nobody wrote ``key`` since event ``since`` (as far as we can tell)."""
    return stream.written_since(since, "kv", ns, {key}) == {}


class RowSweeper:
    """Announces the expired rows of ``table``; ``arm(when)`` asks the service for a sweep then."""

    def __init__(
        self,
        table: KvTable,
        stream: EventStream,
        clock: Clock,
        arm: Callable[[int], None],
    ) -> None:
        self._table = table
        self._stream = stream
        self._clock = clock
        self._arm = arm
        self._active = False
        self._tasks: set[asyncio.Task[None]] = set()  # referenced, so they are not collected
        self._running = False
        self._again = False

    def start(self) -> None:
        """Arm for the earliest expiration the table holds (on the running loop)."""
        self._active = True
        self._spawn(self._arm_from_table())

    def stop(self) -> None:
        self._active = False
        for task in list(self._tasks):
            task.cancel()

    def sweep(self) -> None:
        """The armed time came: sweep (after the sweep in flight, if one is)."""
        if self._running:
            self._again = True
        elif self._active:
            self._running = True
            self._spawn(self._sweep())

    async def idle(self) -> None:
        """Wait until no sweep or table read is in flight."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _arm_from_table(self) -> None:
        try:
            earliest = await self._table.earliest()
        except Exception:
            log.exception("kv: reading the next expiration failed")
            self._arm(self._clock.now_ms() + RETRY_MS)
            return
        if earliest is not None and self._active:
            self._arm(earliest)

    async def _sweep(self) -> None:
        try:
            failed = await self._batches()
        finally:
            self._running = False
        if failed:  # not at once: the failed key is still the earliest
            self._arm(self._clock.now_ms() + RETRY_MS)
        else:
            await self._arm_from_table()

    async def _batches(self) -> bool:
        """Announce the due keys, a batch at a time; whether something failed."""
        self._again = True
        while self._active and self._again:
            self._again = False
            since = self._stream.last_id  # before the read: a write it misses comes after
            if not await self._batch(since):
                return True
        return False

    async def _batch(self, since: int) -> bool:
        """Announce one batch of due keys; whether all went well."""
        try:
            due = await self._table.due(self._clock.now_ms(), BATCH)
        except Exception:
            log.exception("kv: reading the expired keys failed")
            return False
        sent: list[tuple[str, str, asyncio.Future[None]]] = []
        ok = True
        for ns, key, value, expiration in due:
            try:
                sent.append((ns, key, self._announce(ns, key, value, expiration, since)))
            except Exception:
                ok = False
                log.exception("kv: expiring %r in namespace %r failed", key, ns)
        outcomes = await asyncio.gather(*(f for _, _, f in sent), return_exceptions=True)
        for (ns, key, _), outcome in zip(sent, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                ok = False
                log.error("kv: expiring %r in namespace %r failed: %r", key, ns, outcome)
        if ok and len(due) == BATCH:
            self._again = True
        return ok

    def _announce(
        self, ns: str, key: str, value: bytes, expiration: int, since: int
    ) -> asyncio.Future[None]:
        return self._stream.submit(
            "kv.expired",
            "kv",
            ns,
            key,
            b'{"value":' + value + b',"expiration":' + str(expiration).encode() + b"}",
            None,
            validate=functools.partial(_untouched, self._stream, since, ns, key),
            durable=False,
        )
