"""Reads of the KV rows (``kvschema.py``) for the KV service, run by PostgreSQL.

Invariant: every answer is the one ``KvService`` gives over its fold on a data folder, for
the same keys: keys in code-point order (``COLLATE "C"``), expiry judged against the ``now``
the caller passes (the service's injectable clock, never the database's), values as their JSON
text exactly as written. No key or namespace here holds a NUL (``text`` cannot; the service
refuses one on this store), so a NUL in what is asked for finds nothing, or bounds a range as
its part before the NUL does. Statements run on the store's pool, on its bridge thread; the
caller's loop awaits them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from platform_shim.store.protocol import KvPage

if TYPE_CHECKING:
    from platform_shim.store.postgres.store import PostgresStore

__all__ = ["PostgresKv", "prefix_end"]

_LAST = 0x10FFFF
_BIGINT = 2**63 - 1


def prefix_end(prefix: str) -> str | None:
    """The smallest string above every string starting with ``prefix`` (None: there is none)."""
    stripped = prefix.rstrip(chr(_LAST))
    if not stripped:
        return None
    bumped = ord(stripped[-1]) + 1
    if 0xD800 <= bumped <= 0xDFFF:  # no text holds a surrogate
        bumped = 0xE000
    return stripped[:-1] + chr(bumped)


class PostgresKv:
    """``Store.kv_table()`` of a ``PostgresStore``."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        return await self._store.bridge.call(self._store.fetch(sql, *args))

    async def get(self, ns: str, key: str) -> tuple[bytes, int | None] | None:
        """The key's value (JSON bytes) and expiration, expired or not; None when missing."""
        if "\x00" in ns or "\x00" in key:
            return None
        rows = await self._fetch(
            "SELECT value, expiration FROM platform.kv_entries WHERE ns = $1 AND key = $2",
            ns,
            key,
        )
        if not rows:
            return None
        return rows[0]["value"].encode(), rows[0]["expiration"]

    async def page(
        self, ns: str, prefix: str, after: str | None, now_ms: int, limit: int
    ) -> KvPage:
        """Up to ``limit`` unexpired keys of ``ns`` starting with ``prefix``, above ``after``,
        by key; ``more`` when the page is full and some key (expired or not) follows it."""
        if "\x00" in ns or "\x00" in prefix:
            return KvPage([], False)
        if after is not None and "\x00" in after:
            after = after[: after.index("\x00")]  # keys above it are the keys above this
        end = prefix_end(prefix) if prefix else None
        limit = min(limit, _BIGINT)  # no namespace holds more keys than a bigint counts
        rows = await self._fetch(
            """
            WITH page AS (
                SELECT e.key, e.expiration FROM platform.kv_entries e
                WHERE e.ns = $1 AND e.key >= $2 AND ($3::text IS NULL OR e.key > $3)
                  AND ($4::text IS NULL OR e.key < $4)
                  AND (e.expiration IS NULL OR e.expiration > $5)
                ORDER BY e.key LIMIT $6
            )
            SELECT p.key, p.expiration, NULL::boolean AS more FROM page p
            UNION ALL
            SELECT NULL, NULL, (SELECT count(*) FROM page) = $6 AND EXISTS (
                SELECT 1 FROM platform.kv_entries f
                WHERE f.ns = $1 AND f.key > (SELECT max(p.key) FROM page p)
                  AND ($4::text IS NULL OR f.key < $4))
            """,
            ns,
            prefix,
            after,
            end,
            now_ms,
            limit,
        )
        keys = [(row["key"], row["expiration"]) for row in rows if row["key"] is not None]
        keys.sort(key=lambda pair: pair[0])  # UNION ALL keeps no order: restore the key order
        more = any(row["more"] for row in rows if row["key"] is None)
        return KvPage(keys, more)

    async def sizes(self) -> dict[str, int]:
        """``{namespace: keys}`` for every namespace holding a key, expired or not."""
        rows = await self._fetch(
            'SELECT ns, count(*) AS n FROM platform.kv_entries GROUP BY ns ORDER BY ns COLLATE "C"'
        )
        return {row["ns"]: int(row["n"]) for row in rows}

    async def earliest(self) -> int | None:
        """The smallest expiration of any key (None when no key expires)."""
        rows = await self._fetch("SELECT min(expiration) AS m FROM platform.kv_entries")
        value = rows[0]["m"]
        return None if value is None else int(value)

    async def due(self, now_ms: int, limit: int) -> list[tuple[str, str, bytes, int]]:
        """Up to ``limit`` keys expired at ``now_ms``, earliest first: (ns, key, value, exp)."""
        rows = await self._fetch(
            "SELECT ns, key, value, expiration FROM platform.kv_entries"
            " WHERE expiration <= $1 ORDER BY expiration LIMIT $2",
            now_ms,
            limit,
        )
        return [(r["ns"], r["key"], r["value"].encode(), int(r["expiration"])) for r in rows]
