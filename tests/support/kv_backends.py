"""The KV tests on each store: a data folder (the fold) and PostgreSQL (the rows).

``kv_store`` (a fixture, parametrized ``folder`` / ``postgres``) names the store; ``open_kv``
opens a ``Platform`` on it (again and again for a reopen: the same folder or database), and
``EventLog`` reads back the events log's lines the way ``tests/support/eventlog.py`` reads a
folder's ``events.jsonl`` (on PostgreSQL: the lines of the log's current generation, from
``platform.log_lines``), so a test can assert on the events a KV call wrote on either store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from platform_shim.clock import Clock
from platform_shim.platform import Platform, open_client
from platform_shim.store import open_store
from tests.support import eventlog

__all__ = ["EventLog", "KvStore", "kv_store"]


class KvStore:
    """Where the test's KV lives: a folder, or a PostgreSQL database's URL."""

    def __init__(self, name: str, data_dir: Path, url: str | None) -> None:
        self.name = name
        self.data_dir = data_dir
        self.url = url

    def open(self, clock: Clock) -> Platform:
        if self.url is None:
            return open_client(self.data_dir, clock=clock)
        return Platform(open_store(self.url), clock)


class EventLog:
    """The events log's lines of one store, read back."""

    def __init__(self, store: KvStore, platform: Platform) -> None:
        self._store = store
        self._platform = platform

    def raw(self) -> bytes:
        if self._store.url is None:
            return eventlog.raw(self._store.data_dir)
        pg: Any = self._platform.store
        rows = pg.bridge.run(
            pg.fetch(
                "SELECT l.line FROM platform.log_lines l JOIN platform.logs g"
                " ON g.name = l.log AND g.generation = l.generation"
                " WHERE l.log = 'events' ORDER BY l.seq"
            )
        )
        return b"".join(bytes(row["line"]) + b"\n" for row in rows)

    def read(self) -> list[dict[str, Any]]:
        return [orjson.loads(line) for line in self.raw().splitlines()]

    def of_type(self, t: str) -> list[dict[str, Any]]:
        return [event for event in self.read() if event["t"] == t]


@pytest.fixture(params=["folder", "postgres"])
def kv_store(request: pytest.FixtureRequest, data_dir: Path) -> KvStore:
    if request.param == "folder":
        return KvStore("folder", data_dir, None)
    database = request.getfixturevalue("postgres_db")
    return KvStore("postgres", data_dir, database.url)
