"""The platform object user code gets from ``get_platform()``: the services of one data folder.

A ``Platform`` is either the worker's (inside a host or ``open_platform``: it also runs the
workflow engine, the event dispatcher and the scheduler) or a client's (any other process: it
reads and writes the same files, and the worker picks its writes up). Both expose the same API.
"""

from __future__ import annotations

import contextvars
import os
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from platform_shim.clock import Clock, FolderClock, SystemClock
from platform_shim.context import ServicesContext
from platform_shim.locations import STORE_VARIABLE, describe, given_location, resolve_location
from platform_shim.services.auth import AuthService
from platform_shim.services.database import DatabaseService, DbState
from platform_shim.services.events import EventsService
from platform_shim.services.kv import KvService, KvState
from platform_shim.services.queue import QueueService, QueueState
from platform_shim.services.realtime import RealtimeService
from platform_shim.services.signals import RelayingClientWorkflows
from platform_shim.services.storage import StorageService, StorageState
from platform_shim.services.stream import EventStream
from platform_shim.store import MEMORY_SCHEME, Location, open_store
from platform_shim.store.protocol import Durability, Store

if TYPE_CHECKING:
    from platform_shim.runtime import Worker
    from platform_shim.workflows.service import WorkflowsService

__all__ = ["Platform", "ServicesContext", "current_platform", "get_platform"]

current_platform: ContextVar[Platform | None] = ContextVar("current_platform", default=None)

# Client platforms by location (a folder's absolute path, a URL): a process opening the same
# store twice would load it twice and fold every write twice. This cache is the one
# module-level state we keep, on purpose.
_clients: dict[str | Path, Platform] = {}


class Platform:
    """KV, database, storage, queue, events, realtime, auth and workflows over one ``Store``."""

    def __init__(
        self,
        store: Store,
        clock: Clock | None = None,
        *,
        event_window: int = 1000,
        retain_from: int | None = None,
    ) -> None:
        self.store = store
        self.clock: Clock = clock or SystemClock()
        self.kv_state = KvState(store.kv_table())
        self.db_state = DbState(store.documents())
        self.storage_state = StorageState()
        self.queue_state = QueueState()
        self.stream = EventStream(
            store,
            self.clock,
            [self.kv_state, self.db_state, self.storage_state, self.queue_state],
            window=event_window,
            retain_from=retain_from,
        )
        self.kv = KvService(self.stream, self.kv_state, self.clock)
        self.database = DatabaseService(self.stream, self.db_state, store.documents())
        self.db = self.database
        self.storage = StorageService(self.stream, self.storage_state, store, self.clock)
        self.queue = QueueService(self.stream, self.queue_state, self.clock)
        self.events = EventsService(self.stream)
        self._workflows: WorkflowsService | None = None
        self.worker: Worker | None = None  # set when this platform is a worker's
        self.realtime = RealtimeService(store, self.clock, is_worker=self._is_worker)
        self.realtime.send_event = self._send_event
        self.auth = AuthService(store, self.clock, self.events, is_worker=self._is_worker)
        # The context the worker's tasks run in: get_platform() there returns this platform.
        self.context: contextvars.Context | None = None

    @property
    def workflows(self) -> WorkflowsService:
        """Start, inspect, signal and cancel workflow runs."""
        if self._workflows is None:
            self._workflows = RelayingClientWorkflows(self)
        return self._workflows

    @workflows.setter
    def workflows(self, service: WorkflowsService) -> None:
        self._workflows = service

    def _is_worker(self) -> bool:
        return self.worker is not None

    async def _send_event(self, event_type: str, payload: Any) -> int:
        return await self.workflows.send_event(event_type, payload)

    async def settle(self, timeout: float = 30.0) -> None:
        """Wait until the worker has nothing left to do but wait for time (tests use this
        with a ``FakeClock``: advance, settle, assert). In a client: wait for our writes."""
        if self.worker is not None:
            await self.worker.settle(timeout)
        else:
            await self.stream.log.barrier()

    def refresh(self) -> None:
        """Apply what other processes appended to the stream, realtime and auth logs: for a
        client that follows the store live (a standby host's SSE streams and WebSockets);
        reads fold the logs by themselves."""
        self.stream.log.refresh()
        self.realtime.log.refresh()
        self.auth.log.refresh()

    @property
    def data_dir(self) -> Path:
        return self.store.data_dir

    def close(self) -> None:
        """Fsync and close the data files."""
        self.store.close()

    def __repr__(self) -> str:
        return f"<Platform {describe(self.store.location)!r}>"  # a URL without its password


def open_client(
    data_dir: Location | None = None,
    *,
    store: Location | None = None,
    durability: Durability = "fsync",
    clock: Clock | None = None,
) -> Platform:
    """A client platform on a data folder (``data_dir``) or on any store (``store``: a URL such as
    ``postgresql://…``, or a folder): no engine; the store's worker runs what it records.

    Its clock is by default the folder's (``FolderClock``): the same as a ``dev`` host's that
    skipped ahead."""
    opened = open_store(given_location(data_dir, store, "open_client"), durability=durability)
    return Platform(opened, clock or FolderClock(opened.data_dir))


def get_platform() -> Platform:
    """The running platform (inside a host or ``open_platform``), else a client on
    ``$PLATFORM_STORE`` (a URL or a folder), else on ``$PLATFORM_DATA_DIR``, else on ``./data``,
    opened once per process and location."""
    running = current_platform.get()
    if running is not None:
        return running
    location = resolve_location(default=Path("data"))
    if isinstance(location, str) and location.startswith(MEMORY_SCHEME):
        raise ValueError(
            f"${STORE_VARIABLE}={location!r} is private to the process that opens it: a client"
            " here would see an empty store (open_platform('memory:') runs one in this process)"
        )
    client = _clients.get(location)
    if client is None:
        durability: Any = os.environ.get("PLATFORM_DURABILITY", "fsync")
        client = _clients[location] = open_client(store=location, durability=durability)
    return client
