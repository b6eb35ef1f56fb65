"""Noticing what other processes append to the data folder, within a second.

A process that is not the worker touches a file in ``data/.doorbell/`` after each append;
watchdog reports that on its own thread, whose callback only sets a flag and wakes the loop
(``call_soon_threadsafe``), which then catches the logs up. Watching the doorbell rather than
the logs keeps the worker's own appends (thousands a second) from waking it. Since watchdog can
miss events (some network file systems, a full inotify queue, a writer that does not ring), a
slow poll catches up anyway every ``poll_interval`` seconds; catching up a log that has not
grown costs one ``fstat``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from platform_shim.store.turns import Coalescer

__all__ = ["DataWatcher"]

log = logging.getLogger("platform_shim.watcher")


class _Handler(FileSystemEventHandler):
    def __init__(self, poke: Callable[[], None]) -> None:
        self._poke = poke

    def on_any_event(self, event: FileSystemEvent) -> None:
        self._poke()


class DataWatcher(Coalescer):
    """Calls ``refresh`` on the loop soon after another process writes to ``data_dir``."""

    def __init__(
        self, doorbell_dir: Path, refresh: Callable[[], None], *, poll_interval: float = 0.5
    ) -> None:
        self._data_dir = doorbell_dir
        self._refresh = refresh
        self._poll_interval = poll_interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._observer: Any = None
        self._poll_task: asyncio.Task[None] | None = None
        self._poked = False

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            observer = Observer()
            observer.schedule(_Handler(self.poke), str(self._data_dir), recursive=False)
            observer.daemon = True
            observer.start()
            self._observer = observer
        except OSError as exc:  # e.g. out of inotify watches: the poll still works
            log.warning(
                "cannot watch %s (%s); polling every %.1fs",
                self._data_dir,
                exc,
                self._poll_interval,
            )
        self._poll_task = self._loop.create_task(self._poll())

    async def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            await asyncio.to_thread(self._observer.join, 2.0)
            self._observer = None
        if self._poll_task is not None:
            self._poll_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poll_task
            self._poll_task = None

    def _run(self) -> None:
        self._poked = False
        try:
            self._refresh()
        except Exception:
            log.exception("catching up with other processes' writes failed")

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_interval)
            self._run()
