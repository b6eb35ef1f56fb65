"""An ``Archive`` in PostgreSQL: ``platform.archive`` by key, ``platform.archive_tags`` by tag.

The same promises as the file archive (``store/archive.py``): the first copy of a key wins
(``ON CONFLICT DO NOTHING``), only a writable archive adds, readers see every entry added so
far (an add commits before it returns, so ``sync`` has nothing left to do), pages come highest
order first, and pruning by ``at`` removes an entry with its tags in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import orjson

from platform_shim.errors import StoreError
from platform_shim.store.segments import ArchiveEntry

if TYPE_CHECKING:
    import asyncpg

    from platform_shim.store.postgres.store import PostgresStore

__all__ = ["PostgresArchive"]

_ALL = 1 << 62

_ADD = """
WITH added AS (
    INSERT INTO platform.archive (archive, key, ord, at, head, body)
    SELECT $1, k, o, a, h, b FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bytea[],
        $6::bytea[]) AS t(k, o, a, h, b)
    ON CONFLICT (archive, key) DO NOTHING RETURNING key
), tagged AS (
    INSERT INTO platform.archive_tags (archive, tag, ord, key)
    SELECT $1, x.t, x.o, x.k FROM unnest($7::text[], $8::bigint[], $9::text[]) AS x(t, o, k)
    WHERE x.k IN (SELECT key FROM added)
    ON CONFLICT DO NOTHING
)
SELECT count(*) AS n FROM added
"""


def _storable(text: str) -> bool:
    """PostgreSQL's text holds no NUL: a key or tag with one (a run id from a URL, say) was
    never stored, so a lookup of it finds nothing rather than failing."""
    return "\x00" not in text


class PostgresArchive:
    """One named archive of a ``PostgresStore``."""

    def __init__(self, store: PostgresStore, name: str, *, writable: bool) -> None:
        self._store = store
        self.name = name
        self.writable = writable

    def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return self._store.bridge.run(self._store.fetch(sql, self.name, *args))

    def add(self, entries: list[ArchiveEntry]) -> int:
        if not self.writable:
            raise StoreError(None, f"archive {self.name!r} is open read-only")
        if not entries:
            return 0
        return self._store.bridge.run(self._add(entries))

    async def _add(self, entries: list[ArchiveEntry]) -> int:
        first: dict[str, ArchiveEntry] = {}
        for entry in entries:
            first.setdefault(entry.key, entry)
        chosen = list(first.values())
        tagged = [(tag, e.order, e.key) for e in chosen for tag in e.tags]
        # One statement, so one round trip and one transaction: the entries and the tags of
        # those that were new (the first copy of a key wins, and only it is tagged).
        added = await self._store.fetch(
            _ADD,
            self.name,
            [e.key for e in chosen],
            [e.order for e in chosen],
            [e.at for e in chosen],
            [e.head for e in chosen],
            [e.body for e in chosen],
            [t for t, _, _ in tagged],
            [o for _, o, _ in tagged],
            [k for _, _, k in tagged],
        )
        return int(added[0]["n"])

    def known(self, keys: Iterable[str]) -> set[str]:
        found = self._fetch(
            "SELECT key FROM platform.archive WHERE archive = $1 AND key = ANY($2::text[])",
            [key for key in keys if _storable(key)],
        )
        return {str(r["key"]) for r in found}

    def order_of(self, key: str) -> int | None:
        if not _storable(key):
            return None
        found = self._fetch("SELECT ord FROM platform.archive WHERE archive = $1 AND key = $2", key)
        return int(found[0]["ord"]) if found else None

    def head(self, key: str) -> Any:
        if not _storable(key):
            return None
        found = self._fetch(
            "SELECT head FROM platform.archive WHERE archive = $1 AND key = $2", key
        )
        return orjson.loads(bytes(found[0]["head"])) if found else None

    def entry(self, key: str) -> tuple[Any, Any] | None:
        if not _storable(key):
            return None
        found = self._fetch(
            "SELECT head, body FROM platform.archive WHERE archive = $1 AND key = $2", key
        )
        if not found:
            return None
        return orjson.loads(bytes(found[0]["head"])), orjson.loads(bytes(found[0]["body"]))

    def page(self, tag: str | None, before: int | None, limit: int) -> list[tuple[int, str, Any]]:
        below = before if before is not None else _ALL
        if tag is not None and not _storable(tag):
            return []
        if tag is None:
            found = self._fetch(
                "SELECT ord, key, head FROM platform.archive WHERE archive = $1 AND ord < $2"
                " ORDER BY ord DESC, key DESC LIMIT $3",
                below,
                limit,
            )
        else:
            found = self._fetch(
                "SELECT t.ord, t.key, a.head FROM platform.archive_tags t"
                " JOIN platform.archive a ON a.archive = t.archive AND a.key = t.key"
                " WHERE t.archive = $1 AND t.tag = $2 AND t.ord < $3"
                " ORDER BY t.ord DESC, t.key DESC LIMIT $4",
                tag,
                below,
                limit,
            )
        return [(int(r["ord"]), str(r["key"]), orjson.loads(bytes(r["head"]))) for r in found]

    def count(self, tag: str = "") -> int:
        if not _storable(tag):
            return 0
        if not tag:
            found = self._fetch("SELECT count(*) AS n FROM platform.archive WHERE archive = $1")
        else:
            found = self._fetch(
                "SELECT count(*) AS n FROM platform.archive_tags WHERE archive = $1 AND tag = $2",
                tag,
            )
        return int(found[0]["n"])

    def prune(self, cutoff: int) -> int:
        return self._store.bridge.run(self._prune(cutoff))

    async def _prune(self, cutoff: int) -> int:
        async with self._store.pool_connection() as conn, conn.transaction():
            doomed = await conn.fetch(
                "DELETE FROM platform.archive WHERE archive = $1 AND at < $2 RETURNING key",
                self.name,
                cutoff,
            )
            keys = [str(r["key"]) for r in doomed]
            if keys:
                await conn.execute(
                    "DELETE FROM platform.archive_tags WHERE archive = $1 AND key = ANY($2::text[])",
                    self.name,
                    keys,
                )
        return len(keys)

    def oldest(self) -> int | None:
        found = self._fetch("SELECT min(at) AS at FROM platform.archive WHERE archive = $1")
        return int(found[0]["at"]) if found and found[0]["at"] is not None else None

    def sync(self) -> None:
        """Every add committed before it returned."""

    def __iter__(self) -> Iterator[tuple[str, Any, Any]]:
        found = self._fetch("SELECT key, head, body FROM platform.archive WHERE archive = $1")
        for r in found:
            yield str(r["key"]), orjson.loads(bytes(r["head"])), orjson.loads(bytes(r["body"]))

    def close(self) -> None:
        """Nothing to close: the connections are the store's."""
