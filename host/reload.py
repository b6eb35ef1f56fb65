"""Hot reload for ``dev``: watchdog on the user's code, re-import what changed.

Anything the loader would load at start is loaded when it appears: the project folder is
watched (for ``workflows.py``-style files and for ``workflows/``, ``events/``, ``routes/``
folders created while ``dev`` runs, which are then watched too and their files loaded).

Changes are debounced (editors write a file in several steps), then each changed module is
imported afresh. A module that fails to import logs its error with file and line and the last
good version keeps serving. On success the registry, handlers, triggers and routes are swapped;
runs already in flight pick the new code up at their next resume (each activation looks its
workflow up again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from host.loader import KINDS, LoadError

if TYPE_CHECKING:
    from host.app import HostState

__all__ = ["Reloader"]

log = logging.getLogger("host.reload")

DEBOUNCE_S = 0.15
_WRITES = {"created", "modified", "moved", "deleted", "closed"}


class _Events(FileSystemEventHandler):
    def __init__(self, reloader: Reloader) -> None:
        self._reloader = reloader

    def on_any_event(self, event: FileSystemEvent) -> None:
        # Reads (opened, closed without writing) must not count: reloading reads the file.
        if event.event_type not in _WRITES:
            return
        if event.is_directory:
            if event.event_type in ("created", "moved"):
                raw = getattr(event, "dest_path", "") or event.src_path
                self._reloader.folder_appeared(Path(str(raw)))
            return
        for raw in (event.src_path, getattr(event, "dest_path", "")):
            path = str(raw)
            if path.endswith(".py"):
                self._reloader.changed(Path(path))


class Reloader:
    """Watches the project's code folders and reloads what changes."""

    def __init__(self, state: HostState) -> None:
        self._state = state
        self._loop: asyncio.AbstractEventLoop | None = None
        self._observer: Any = None
        self._pending: set[Path] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._watched: set[Path] = set()
        self.reloads = 0  # completed reload rounds, for tests and logs

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        project = self._state.config.project_dir
        observer = Observer()
        # The project folder itself, not recursively (its data/ folder changes all the time):
        # that sees workflows.py and the like, and code folders created while dev runs.
        observer.schedule(_Events(self), str(project), recursive=False)
        self._observer = observer
        for kind in KINDS:
            self._watch(project / kind)
        observer.daemon = True
        observer.start()
        log.info("watching %s for code changes", project)

    def _watch(self, folder: Path) -> bool:
        """Watch a code folder (recursively), once; False if it is not there."""
        if folder in self._watched or not folder.is_dir():
            return False
        self._observer.schedule(_Events(self), str(folder), recursive=True)
        self._watched.add(folder)
        return True

    def folder_appeared(self, path: Path) -> None:
        """Called on watchdog's thread for a folder created (or moved) in the project."""
        if self._loop is None:
            return
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._new_folder, path)

    def _new_folder(self, path: Path) -> None:
        project = self._state.config.project_dir
        if path.parent != project or path.name not in KINDS:
            return
        if self._watch(path):
            log.info("watching the new folder %s", path)
            # Files written before the watch began raised no event of their own: load them.
            for source in sorted(path.rglob("*.py")):
                self._note(source.resolve())

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._observer is not None:
            self._observer.stop()
            await asyncio.to_thread(self._observer.join, 2.0)
            self._observer = None

    def changed(self, path: Path) -> None:
        """Called on watchdog's thread."""
        if self._loop is None:
            return
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._note, path.resolve())

    def _note(self, path: Path) -> None:
        if self._state.loader.kind_of(path) is None:
            return
        self._pending.add(path)
        if self._timer is not None:
            self._timer.cancel()
        assert self._loop is not None
        self._timer = self._loop.call_later(DEBOUNCE_S, self._reload)

    def _reload(self) -> None:
        self._timer = None
        paths, self._pending = sorted(self._pending), set()
        state = self._state
        loader = state.loader
        if state.worker is None and state.standby is None:
            return  # stopped
        from platform_shim.platform import current_platform

        token = current_platform.set(state.platform)
        changed = False
        try:
            for path in paths:
                kind = loader.kind_of(path)
                if kind is None:
                    continue
                if not path.exists():
                    loader.unload(path)
                    log.info("unloaded %s", path)
                    changed = True
                    continue
                try:
                    defs = loader.load(kind, path)
                except LoadError as exc:
                    log.error("reload failed, keeping the last good version: %s", exc)
                    continue
                changed = True
                log.info(
                    "reloaded %s: %d workflow(s), %d handler(s), %d route(s)",
                    path.name,
                    len(defs.workflows),
                    len(defs.handlers),
                    len(defs.routes),
                )
        finally:
            current_platform.reset(token)
        worker = state.worker
        if changed:
            # A standby has no worker yet: it takes the loader's registry as it is at takeover.
            if worker is not None:
                try:
                    worker.reload(handlers=loader.handlers())
                except Exception:
                    log.exception("applying the reloaded code failed")
            state.install_routes()
        self.reloads += 1
