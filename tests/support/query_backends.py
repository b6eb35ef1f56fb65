"""The document database's query path on each store, for the query property tests.

``backend`` (a fixture, parametrized ``memory`` / ``postgres``) is a ``QueryBackend``: a real
``Platform`` on that store, one per test module, on one event loop of its own. ``find`` inserts
the given documents into a fresh collection with ``insert_many`` (so on PostgreSQL they reach the
table through the events log and its trigger) and runs ``database.find`` there: the in-memory
evaluator answers on the memory store, PostgreSQL answers on the PostgreSQL store. Documents come
back without the ``_id``/``id`` the service added, in the order the service returned them.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson
import pytest

from platform_shim.platform import Platform
from platform_shim.store import open_store
from tests.support.postgres import PostgresServer

__all__ = ["QueryBackend", "backend", "stored"]


def stored(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` as the store keeps it (NaN and the infinities become null, as JSON has them)."""
    value: dict[str, Any] = orjson.loads(orjson.dumps(doc))
    return value


class QueryBackend:
    def __init__(self, name: str, platform: Platform) -> None:
        self.name = name
        self.platform = platform
        self.loop = asyncio.new_event_loop()
        self._names = (f"c{n}" for n in itertools.count())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def load(self, docs: Sequence[Mapping[str, Any]]) -> str:
        """A fresh collection holding ``docs`` (in this order); returns its name."""
        name = next(self._names)
        if docs:
            self.run(self.platform.database.insert_many(name, list(docs)))
        return name

    def query(self, name: str, filter: Mapping[str, Any] | None = None, **options: Any) -> Any:
        """``database.find`` on collection ``name``, without the ids the service added."""
        found = self.run(self.platform.database.find(name, filter, **options))
        return [_strip(doc) for doc in found]

    def find(
        self,
        docs: Sequence[Mapping[str, Any]],
        filter: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> list[dict[str, Any]]:
        """``find`` over a fresh collection holding ``docs``."""
        result: list[dict[str, Any]] = self.query(self.load(docs), filter, **options)
        return result

    def count(self, docs: Sequence[Mapping[str, Any]], filter: Mapping[str, Any]) -> int:
        counted: int = self.run(self.platform.database.count(self.load(docs), filter))
        return counted

    def close(self) -> None:
        # As asyncio.run ends a loop: its tasks are cancelled first (the PostgreSQL store's
        # writer connections close with them), then the store, then the loop.
        self.loop.run_until_complete(_cancel_tasks())
        self.platform.close()
        self.loop.close()


async def _cancel_tasks() -> None:
    me = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not me]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _strip(doc: dict[str, Any]) -> dict[str, Any]:
    doc.pop("_id", None)
    doc.pop("id", None)
    return doc


@pytest.fixture(scope="module", params=["memory", "postgres"])
def backend(request: pytest.FixtureRequest) -> Iterator[QueryBackend]:
    if request.param == "memory":
        opened = QueryBackend("memory", Platform(open_store("memory:")))
        try:
            yield opened
        finally:
            opened.close()
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    database = server.create_database()
    try:
        opened = QueryBackend("postgres", Platform(open_store(database.url)))
        try:
            yield opened
        finally:
            opened.close()
    finally:
        server.drop_database(database.name)
