"""Queries on the document rows (``docschema.py``), run by PostgreSQL, for the database service.

Invariant: what ``select`` and ``count`` answer is what the in-memory evaluator answers over
the same documents, or they say they could not (``exact`` false, ``count`` None) and hand back
every document of the collection (in insertion order) for the caller to evaluate in Python.
That happens only when the filter or sort holds something SQL cannot say exactly
(``docfilter.NotCompilable``) or the collection holds a document ``jsonb`` cannot (``doc`` is
NULL): one statement checks the latter beside the query (a marker row), so the common case is
one round trip. Statements run on the store's pool, on its bridge thread; the caller's loop
awaits them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from platform_shim.store.postgres.docfilter import (
    InlineParams,
    NotCompilable,
    Params,
    compile_order,
    compile_where,
    literal,
)
from platform_shim.store.protocol import Selection

if TYPE_CHECKING:
    from platform_shim.store.postgres.store import PostgresStore

__all__ = ["PostgresDocuments"]

_ODD = "EXISTS (SELECT 1 FROM platform.documents u WHERE u.coll = $1 AND u.doc IS NULL)"
"""The collection holds a document queries cannot read (a ``\\u0000`` in it)."""


_BIGINT = 2**63 - 1

# The first key any of the documents $3 (JSON texts; ids $2) would take from a document outside
# them: their _id (when $4) or a unique index's key (docrules.py computes the keys).
_CLASH = """
(SELECT '_id_' AS name, to_jsonb(d.id) AS value FROM platform.documents d
 WHERE $4 AND d.coll = $1 AND d.id = ANY($2::text[]) LIMIT 1)
UNION ALL
(SELECT i.name, k.value
 FROM platform.document_indexes i, unnest($3::text[]) AS x(t),
      platform.document_keys_of(x.t::jsonb, x.t::jsonb ->> '_id', i.descriptor, i.where_sql) k
 WHERE i.coll = $1 AND i.is_unique AND EXISTS (
     SELECT 1 FROM platform.document_keys dk
     WHERE dk.coll = $1 AND dk.name = i.name AND dk.key = k.key AND NOT dk.id = ANY($2::text[]))
 LIMIT 1)
LIMIT 1
"""


class PostgresDocuments:
    """``Store.documents()`` of a ``PostgresStore``."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store

    async def _fetch(self, sql: str, args: list[Any]) -> list[Any]:
        return await self._store.bridge.call(self._store.fetch(sql, *args))

    async def _everything(self, collection: str) -> Selection:
        rows = await self._fetch(
            "SELECT d.body FROM platform.documents d WHERE d.coll = $1 ORDER BY d.rank",
            [collection],
        )
        return Selection([row["body"] for row in rows], exact=False)

    def _select_sql(
        self,
        collection: str,
        filter: Mapping[str, Any],
        sort: Sequence[tuple[str, int]],
        skip: int,
        limit: int,
    ) -> tuple[str, list[Any]]:
        """The statement answering ``select`` (``NotCompilable`` if there is none). The
        collection is a literal too, so a collection's partial indexes apply to the plan."""
        params = Params(collection)
        where = compile_where(filter, params)
        order = compile_order(sort, params)
        page = ""
        # A bigint holds any count of rows; a larger skip or limit means the same as its cap.
        if skip:
            page += f" OFFSET {params.add(min(skip, _BIGINT))}"
        if limit:
            page += f" LIMIT {params.add(min(limit, _BIGINT))}"
        sql = (
            f"(SELECT d.body, false AS odd FROM platform.documents d"
            f" WHERE d.coll = {literal(collection)} AND NOT {_ODD} AND {where}"
            f" ORDER BY {order}{page}) UNION ALL (SELECT NULL, true WHERE {_ODD})"
        )
        return sql, params.values

    async def select(
        self,
        collection: str,
        filter: Mapping[str, Any],
        sort: Sequence[tuple[str, int]],
        skip: int,
        limit: int,
    ) -> Selection:
        """Matching documents, sorted, skipped and limited (0: none) as ``find`` does."""
        try:
            sql, args = self._select_sql(collection, filter, sort, skip, limit)
        except NotCompilable:
            return await self._everything(collection)
        rows = await self._fetch(sql, args)
        if any(row["odd"] for row in rows):
            return await self._everything(collection)
        return Selection([row["body"] for row in rows], exact=True)

    async def explain(
        self,
        collection: str,
        filter: Mapping[str, Any],
        sort: Sequence[tuple[str, int]] = (),
        limit: int = 0,
    ) -> str:
        """PostgreSQL's plan for ``select`` (for tests and operators)."""
        sql, args = self._select_sql(collection, filter, sort, 0, limit)
        rows = await self._fetch("EXPLAIN " + sql, args)
        return "\n".join(str(row[0]) for row in rows)

    async def count(self, collection: str, filter: Mapping[str, Any]) -> int | None:
        """How many documents match; None when only Python can tell (see the docstring)."""
        params = Params(collection)
        try:
            where = compile_where(filter, params)
        except NotCompilable:
            return None
        rows = await self._fetch(
            f"SELECT count(*) AS n, {_ODD} AS odd FROM platform.documents d"
            f" WHERE d.coll = {literal(collection)} AND {where}",
            params.values,
        )
        return None if rows[0]["odd"] else int(rows[0]["n"])

    # ------------------------------------------------------------- what writes read first

    async def indexes(self, collection: str) -> list[str]:
        rows = await self._fetch(
            "SELECT i.descriptor FROM platform.document_indexes i WHERE i.coll = $1"
            ' ORDER BY i.created NULLS FIRST, i.name COLLATE "C"',
            [collection],
        )
        return [row["descriptor"] for row in rows]

    async def stats(self) -> list[tuple[str, int, int]]:
        rows = await self._fetch(
            "SELECT c.coll,"
            " (SELECT count(*) FROM platform.documents d WHERE d.coll = c.coll) AS docs,"
            " (SELECT count(*) FROM platform.document_indexes i WHERE i.coll = c.coll) AS idx"
            ' FROM platform.collections c ORDER BY c.coll COLLATE "C"',
            [],
        )
        return [(row["coll"], int(row["docs"]), int(row["idx"])) for row in rows]

    async def clash(
        self, collection: str, docs: Sequence[dict[str, Any]], *, new: bool
    ) -> tuple[str, Any] | None:
        """See ``DocumentTable.clash``. A document ``jsonb`` cannot hold files no keys
        (``docrules.py``), so it is left out of the key check."""
        ids = [str(doc["_id"]) for doc in docs]
        texts = [orjson.dumps(doc).decode() for doc in docs]
        rows = await self._fetch(
            _CLASH, [collection, ids, [t for t in texts if "\\u0000" not in t], new]
        )
        if not rows:
            return None
        value = rows[0]["value"]
        return str(rows[0]["name"]), orjson.loads(value) if value is not None else None

    def where_sql(self, partial: Mapping[str, Any]) -> str:
        try:
            return compile_where(partial, InlineParams())
        except NotCompilable as exc:
            raise ValueError(
                f"a unique partial index's filter must be one PostgreSQL can evaluate ({exc})"
            ) from None
