"""The group-commit flusher: one thread per data folder that fsyncs logs off the event loop.

A log asks for an fsync after a commit cycle wrote lines that someone waits on. The thread
fsyncs each log that asked, then hands ``(offset, error)`` back to the loop, which releases every
waiter whose line ended before that offset. Whatever was written while an fsync ran is covered
by the next one, so every writer waiting at one moment shares one fsync per file.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from platform_shim.store.log import FileLog

__all__ = ["Flusher"]

log = logging.getLogger("platform_shim.store")


class Flusher:
    """Runs fsyncs for the logs of one store on a daemon thread."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._cond = threading.Condition()
        self._dirty: dict[FileLog, None] = {}
        self._thread: threading.Thread | None = None
        self._closing = False

    def request(self, target: FileLog) -> None:
        """Ask for an fsync of ``target`` (called on the loop)."""
        with self._cond:
            self._dirty[target] = None
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"fsync:{self._name}", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._dirty and not self._closing:
                    self._cond.wait()
                if not self._dirty:
                    return
                targets = list(self._dirty)
                self._dirty.clear()
            for target in targets:
                upto, generation, fd = target.written, target.generation, target.fd()
                error: OSError | None = None
                try:
                    os.fsync(fd)
                except OSError as exc:
                    error = exc
                loop = target.loop
                if loop is None:
                    continue
                try:
                    loop.call_soon_threadsafe(target.on_synced, upto, generation, error)
                except RuntimeError:  # the loop closed under us; close() syncs inline
                    log.debug("loop closed before an fsync of %s was reported", target.path)

    def close(self) -> None:
        """Finish pending fsyncs and stop the thread."""
        with self._cond:
            self._closing = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()
        with self._cond:
            self._thread = None
            self._closing = False
