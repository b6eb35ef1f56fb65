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

from platform_shim.store.postgres.docfilter import (
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
