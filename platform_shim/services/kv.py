"""Key-value store: namespaces of JSON values with optional expiry, as a fold of the stream.

A put is one ``kv.put`` event, a delete one ``kv.delete``; an expired key reads as missing at
once, and the worker's sweeper later appends one ``kv.expired`` event for it (only the worker
sweeps, so an expiry is announced once however many processes read the key). Values are kept
as their JSON bytes: a read parses a fresh copy, so a caller mutating what it got cannot touch
the store, and a million keys cost a million small ``bytes`` rather than object trees.

On a store that keeps the keys where they live (``Store.kv_table()``: the PostgreSQL store, whose
trigger applies each ``kv.*`` event to its rows in the event's own commit), the fold keeps no
key: reads, listings, sizes and the sweeper ask the table, judging expiry by this service's
clock; a put with an expiration still arms the sweeper as the fold sees it (ours or another
host's), and compaction's ``kv`` snapshot is empty (the rows are the truth).

Size (over 400 lines, on purpose): the fold, the service and the namespace handle share the
key checks and the expiry rules; apart they would each need the other's internals.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
from sortedcontainers import SortedList

from platform_shim.clock import Clock, TimerHandle
from platform_shim.durations import MAX_DURATION_MS
from platform_shim.jsonvalue import dumps, loads, tight
from platform_shim.services.kvrows import RowSweeper, delete_row
from platform_shim.services.kvsnapshot import chunked_snapshot
from platform_shim.services.stream import EventStream
from platform_shim.store.protocol import KvTable, Record

__all__ = ["MAX_TTL_S", "KvNamespace", "KvService", "KvState"]

log = logging.getLogger("platform_shim.kv")

_MAX_KEY = 1024
_HEAP_SLACK = (
    1024  # stale heap entries tolerated beyond the live ones (small folders never rebuild)
)

MAX_TTL_S = MAX_DURATION_MS // 1000
"""The longest ``ttl`` in seconds (about 3.2 million years, like every duration here): the
expiration, in epoch milliseconds, must fit the 64-bit integers that values are stored as."""

store_log = logging.getLogger("platform_shim.store")  # damaged data is the store's to report


class KvState:
    """Namespaces of ``key -> (value bytes, expiration ms or None)``."""

    snapshot_name = "kv"
    resource = "kv"

    def __init__(self, table: KvTable | None = None) -> None:
        self.table = table  # not None: the store keeps the keys, this fold keeps none
        self.checkpoint = 0
        self.spaces: dict[str, dict[str, tuple[bytes, int | None]]] = {}
        self._sorted: dict[str, Any] = {}  # ns -> SortedList of keys, built on first list()
        # A heap of (expiration, ns, key). An overwrite or a delete leaves the old entry behind
        # (the sweeper skips it); ``timed`` counts the live keys with an expiration, and once
        # stale entries outnumber them the heap is rebuilt from the live ones, so it never holds
        # more than about twice the keys that can still expire (amortized O(1) per put).
        self.expiring: list[tuple[int, str, str]] = []
        self.timed = 0
        # Keys added or removed, per namespace: a snapshot copied over several loop turns
        # restarts a namespace whose keys changed under it (kvsnapshot.py).
        self.shape: dict[str, int] = {}
        self.on_expiring: Callable[[int], None] | None = None

    def set(self, ns: str, key: str, value: bytes, expiration: int | None) -> None:
        if self.table is not None:
            if expiration is not None and self.on_expiring is not None:
                self.on_expiring(expiration)
            return
        space = self.spaces.get(ns)
        if space is None:
            space = self.spaces[ns] = {}
        old = space.get(key)
        if old is None:
            self.shape[ns] = self.shape.get(ns, 0) + 1
            keys = self._sorted.get(ns)
            if keys is not None:
                keys.add(key)
        elif old[1] is not None:
            self.timed -= 1
        space[key] = (value, expiration)
        if expiration is not None:
            self.timed += 1
            if old is not None and old[1] == expiration:
                return  # its heap entry is still there and still right (same instant)
            heapq.heappush(self.expiring, (expiration, ns, key))
            if self.on_expiring is not None:
                self.on_expiring(expiration)
        if len(self.expiring) > 2 * self.timed + _HEAP_SLACK:
            self._rebuild_heap()

    def remove(self, ns: str, key: str) -> None:
        if self.table is not None:
            return
        space = self.spaces.get(ns)
        old = space.pop(key, None) if space is not None else None
        if old is not None:
            self.shape[ns] = self.shape.get(ns, 0) + 1
            if old[1] is not None:
                self.timed -= 1
            keys = self._sorted.get(ns)
            if keys is not None:
                keys.remove(key)
        if len(self.expiring) > 2 * self.timed + _HEAP_SLACK:
            self._rebuild_heap()

    def _rebuild_heap(self) -> None:
        # One entry per key that can still expire, at its current expiration.
        spaces = self.spaces
        live: dict[tuple[str, str], tuple[int, str, str]] = {}
        for entry in self.expiring:
            current = spaces.get(entry[1], {}).get(entry[2])
            if current is not None and current[1] == entry[0]:
                live[entry[1], entry[2]] = entry
        heap = list(live.values())
        heapq.heapify(heap)
        self.expiring = heap

    def sorted_keys(self, ns: str) -> Any:
        keys = self._sorted.get(ns)
        if keys is None:
            keys = self._sorted[ns] = SortedList(self.spaces.get(ns, {}))
        return keys

    # ------------------------------------------------------------------------- DomainFold

    def load_snapshot(self, records: Iterable[Record]) -> None:
        self.spaces.clear()
        self.shape.clear()
        self._sorted.clear()
        self.expiring.clear()
        self.timed = 0
        if self.table is not None:
            return  # the store's rows hold the keys (and this store writes an empty snapshot)
        # set() inlined: a million keys load here at every start. The sorted listing is built on
        # first use and the expiry heap once at the end; values were checked when written.
        spaces = self.spaces
        expiring = self.expiring
        encode = orjson.dumps
        for record in records:
            try:
                ns, key, value = record["ns"], record["k"], tight(encode(record["v"]))
                expiration = record.get("exp")
                if not (type(ns) is str and type(key) is str) or not (
                    expiration is None or type(expiration) is int
                ):
                    raise TypeError("namespace, key or expiration of the wrong type")
            except (KeyError, TypeError) as exc:
                # A damaged line that parses: it costs itself, not the load.
                store_log.warning(
                    "kv.jsonl: skipped a snapshot record that is not a KV entry (%r)", exc
                )
                continue
            space = spaces.get(ns)
            if space is None:
                space = spaces[ns] = {}
            space[key] = (value, expiration)
            if expiration is not None:
                expiring.append((expiration, ns, key))
        heapq.heapify(expiring)
        self.timed = len(expiring)

    def apply_event(self, event: Record) -> None:
        t = event["t"]
        if self.table is not None:
            # The store's rows took the event already; only the sweeper wants to know.
            if t == "kv.put" and self.on_expiring is not None:
                expiration = event["data"].get("expiration")
                if type(expiration) is int:
                    self.on_expiring(expiration)
            return
        if t == "kv.put":
            data = event["data"]
            # Checked when written: no need for dumps()'s depth margin here.
            value = tight(orjson.dumps(data["value"]))
            self.set(event["ns"], event["k"], value, data.get("expiration"))
        elif t == "kv.delete":
            self.remove(event["ns"], event["k"])
        elif t == "kv.expired":
            entry = self.spaces.get(event["ns"], {}).get(event["k"])
            # Only the version that expired goes: a put after it stays.
            if entry is not None and entry[1] == event["data"].get("expiration"):
                self.remove(event["ns"], event["k"])

    def snapshot_records(self) -> Iterator[bytes]:
        if self.table is not None:
            return iter(())
        # Copied a chunk per loop turn from now on, serialized by the reader (kvsnapshot.py).
        return chunked_snapshot(self)


def _check_name(what: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, not {value!r}")
    if len(value.encode()) > _MAX_KEY:
        raise ValueError(f"{what} is longer than {_MAX_KEY} bytes: {value[:40]!r}...")
    return value


def _encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _decode_cursor(cursor: object) -> str:
    # Only what ``_encode_cursor`` makes: the lenient decoder would read junk as some key.
    if isinstance(cursor, str):
        try:
            key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            pass
        else:
            if key and _encode_cursor(key) == cursor:
                return key
    raise ValueError(f"invalid list cursor {cursor!r}")


class KvService:
    """``platform.kv``: ``get/put/delete/list`` by namespace, and ``namespace(ns)``."""

    def __init__(self, stream: EventStream, state: KvState, clock: Clock) -> None:
        self._stream = stream
        self._state = state
        self._clock = clock
        self._sweeper: TimerHandle | None = None
        self._sweep_at: int | None = None
        self._sweeping = False
        self._table = state.table
        self._rows = (
            None if self._table is None else RowSweeper(self._table, stream, clock, self._arm)
        )

    def _check_key(self, what: str, value: object) -> str:
        name = _check_name(what, value)
        if self._table is not None and "\x00" in name:
            raise ValueError(
                f"{what} {name!r} holds a NUL character, which the PostgreSQL store cannot keep"
            )
        return name

    def namespace(self, ns: str) -> KvNamespace:
        """The same API bound to one namespace."""
        return KvNamespace(self, _check_name("namespace", ns))

    async def get(self, ns: str, key: str) -> Any:
        """The value, or None when the key is missing or expired."""
        raw = await self._live(ns, key)
        return None if raw is None else loads(raw)

    async def get_raw(self, ns: str, key: str) -> bytes | None:
        """The value's JSON bytes, unparsed, or None when the key is missing or expired.

        Tells a stored JSON ``null`` (``b"null"``) from a missing key, and lets a caller bound
        a large value's size without building its object tree (the host's API and dashboard)."""
        return await self._live(ns, key)

    async def _live(self, ns: str, key: str) -> bytes | None:
        _check_name("namespace", ns)
        _check_name("key", key)
        if self._table is not None:
            entry = await self._table.get(ns, key)
        else:
            self._stream.fresh()
            entry = self._state.spaces.get(ns, {}).get(key)
        if entry is None:
            return None
        value, expiration = entry
        if expiration is not None and expiration <= self._clock.now_ms():
            if self._sweeping:
                self._arm(expiration)
            return None
        return value

    async def namespace_sizes(self) -> dict[str, int]:
        """``{namespace: number of keys}`` for every namespace that holds a key, by name.

        A key past its expiration counts until the worker's sweeper announces it (``list``
        already skips it): this is a size, not a listing."""
        if self._table is not None:
            return await self._table.sizes()
        self._stream.fresh()
        return {ns: len(space) for ns, space in sorted(self._state.spaces.items()) if space}

    async def put(self, ns: str, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` (JSON) under ``key``; ``ttl`` in seconds makes it expire."""
        self._check_key("namespace", ns)
        self._check_key("key", key)
        expiration: int | None = None
        if ttl is not None:
            if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
                raise ValueError(
                    f"ttl for key {key!r} must be a positive number of seconds, not {ttl!r}"
                )
            if not ttl <= MAX_TTL_S:  # also infinity; an expiration past it breaks 64 bits
                raise ValueError(
                    f"ttl for key {key!r} must be at most {MAX_TTL_S:.0e} seconds, not {ttl!r}"
                )
            expiration = self._clock.now_ms() + int(ttl * 1000)
        body = dumps(value, f"value for key {key!r}")
        data = (
            b'{"value":'
            + body
            + b',"expiration":'
            + (b"null" if expiration is None else str(expiration).encode())
            + b"}"
        )
        state = self._state
        await self._stream.submit(
            "kv.put", "kv", ns, key, data, lambda eid, ts: state.set(ns, key, body, expiration)
        )

    async def delete(self, ns: str, key: str) -> None:
        """Remove ``key``; deleting a missing key changes nothing and emits nothing."""
        _check_name("namespace", ns)
        _check_name("key", key)
        state = self._state
        if self._table is not None:
            await delete_row(self._table, self._stream, ns, key)
            return
        previous: list[bytes] = []

        def validate() -> bool:
            entry = state.spaces.get(ns, {}).get(key)
            if entry is None:
                return False
            previous.append(entry[0])
            return True

        await self._stream.submit(
            "kv.delete",
            "kv",
            ns,
            key,
            lambda: b'{"value":' + previous[0] + b"}",
            lambda eid, ts: state.remove(ns, key),
            validate=validate,
        )

    async def list(
        self, ns: str, prefix: str | None = None, limit: int = 1000, cursor: str | None = None
    ) -> dict[str, Any]:
        """Keys in lexicographic order: ``{"keys": [{"name", "expiration"}], "list_complete", "cursor"}``."""
        _check_name("namespace", ns)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"list limit must be a positive integer, not {limit!r}")
        if prefix is not None and not isinstance(prefix, str):
            raise ValueError(f"list prefix must be a string, not {prefix!r}")
        start = prefix or ""
        if self._table is not None:
            after = _decode_cursor(cursor) if cursor is not None and cursor != "" else None
            page = await self._table.page(ns, start, after, self._clock.now_ms(), limit)
            named = [{"name": k, "expiration": e} for k, e in page.keys]
            return {
                "keys": named,
                "list_complete": not page.more,
                "cursor": _encode_cursor(page.keys[-1][0]) if page.more and page.keys else None,
            }
        self._stream.fresh()
        space = self._state.spaces.get(ns, {})
        keys = self._state.sorted_keys(ns)
        if cursor is not None and cursor != "":
            after = _decode_cursor(cursor)
            position = keys.bisect_right(after)
            if after < start:
                position = keys.bisect_left(start)
        else:
            position = keys.bisect_left(start)
        now = self._clock.now_ms()
        result: list[dict[str, Any]] = []
        last: str | None = None
        more = False
        for key in keys.islice(position):
            if prefix and not key.startswith(prefix):
                break
            if len(result) == limit:
                more = True
                break
            expiration = space[key][1]
            if expiration is not None and expiration <= now:
                continue
            result.append({"name": key, "expiration": expiration})
            last = key
        return {
            "keys": result,
            "list_complete": not more,
            "cursor": _encode_cursor(last) if more and last is not None else None,
        }

    # ---------------------------------------------------------------------- expiry sweep

    def start_sweeper(self) -> None:
        """Announce expired keys with ``kv.expired`` events (the worker does this, once)."""
        self._sweeping = True
        self._state.on_expiring = self._arm
        if self._rows is not None:
            self._rows.start()
            return
        if self._state.expiring:
            self._arm(self._state.expiring[0][0])

    def stop_sweeper(self) -> None:
        self._sweeping = False
        self._state.on_expiring = None
        if self._rows is not None:
            self._rows.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None

    def _arm(self, when: int) -> None:
        if self._sweep_at is not None and self._sweep_at <= when:
            return
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._sweep_at = when
        self._sweeper = self._clock.call_at(when, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        self._sweep_at = None
        if self._rows is not None:
            self._rows.sweep()
            return
        now = self._clock.now_ms()
        heap = self._state.expiring
        while heap and heap[0][0] <= now:
            expiration, ns, key = heapq.heappop(heap)
            entry = self._state.spaces.get(ns, {}).get(key)
            if entry is None or entry[1] != expiration:
                continue  # deleted or overwritten since
            try:
                self._expire(ns, key, expiration)
            except Exception:  # one key's failure must not stop the sweeper for every key
                log.exception("kv: expiring %r in namespace %r failed", key, ns)
        if heap and self._sweeping:
            self._arm(heap[0][0])

    async def idle(self) -> None:
        """Wait until no sweep of a store's rows is in flight (for tests; a no-op on a folder)."""
        if self._rows is not None:
            await self._rows.idle()

    def _expire(self, ns: str, key: str, expiration: int) -> None:
        state = self._state
        previous: list[bytes] = []

        def validate() -> bool:
            entry = state.spaces.get(ns, {}).get(key)
            if entry is None or entry[1] != expiration:
                return False
            previous.append(entry[0])
            return True

        self._stream.submit(
            "kv.expired",
            "kv",
            ns,
            key,
            lambda: (
                b'{"value":' + previous[0] + b',"expiration":' + str(expiration).encode() + b"}"
            ),
            lambda eid, ts: state.remove(ns, key),
            validate=validate,
            durable=False,
        )


class KvNamespace:
    """``platform.kv.namespace(ns)``: the KV API bound to one namespace."""

    def __init__(self, service: KvService, ns: str) -> None:
        self._service = service
        self.name = ns

    async def get(self, key: str) -> Any:
        return await self._service.get(self.name, key)

    async def put(self, key: str, value: Any, ttl: float | None = None) -> None:
        await self._service.put(self.name, key, value, ttl)

    async def delete(self, key: str) -> None:
        await self._service.delete(self.name, key)

    async def list(
        self, prefix: str | None = None, limit: int = 1000, cursor: str | None = None
    ) -> dict[str, Any]:
        return await self._service.list(self.name, prefix, limit, cursor)
