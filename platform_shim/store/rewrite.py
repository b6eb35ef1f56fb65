"""The file work of a log rewrite (compaction), done on a worker thread, off the event loop.

A rewrite replaces a log with its live records in two phases, so that the loop never waits on
serializing or fsyncing a big state:

1. ``NewFile.fill`` writes the live records, as they were at offset ``start`` of the old file,
   to a temp file beside it and fsyncs it. Meanwhile the old file keeps taking appends, from
   this process and others.
2. ``NewFile.finish`` runs under the append lock, once the log has caught up to ``end``: it
   copies the old file's bytes from ``start`` to ``end`` (every record appended during phase 1)
   to the temp file, fsyncs it, renames it over the old file and fsyncs the folder.

So the new file holds the live state as of ``start`` followed by every record appended since,
which folds to the same state as the old file; and until the rename the old file is untouched,
so a crash at any instant leaves either file whole (a temp file left behind is removed at the
next worker start).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from platform_shim.store.jsonl import fsync_dir, write_all, write_lines

__all__ = ["NewFile", "in_thread"]

T = TypeVar("T")

_COPY_CHUNK = 1 << 20


class NewFile:
    """The temp file that becomes the log once ``finish`` renames it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        self._fd = -1
        self.size = 0
        self.lines = 0
        self.dir_error: OSError | None = None  # the rename happened; its durability is unsure

    def fill(self, lines: Iterable[bytes]) -> None:
        """Phase 1 (thread): write ``lines`` to the temp file and make them durable."""
        self._fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        self.size, self.lines = write_lines(self._fd, lines)
        os.fsync(self._fd)

    def finish(
        self, source_fd: int, start: int, end: int, before_rename: Callable[[], None] | None
    ) -> None:
        """Phase 2 (thread, append lock held): append ``source_fd``'s bytes ``start..end``,
        fsync, rename over the log, fsync the folder."""
        offset = start
        while offset < end:
            chunk = os.pread(source_fd, min(_COPY_CHUNK, end - offset), offset)
            if not chunk:
                raise OSError(f"{self.path} ended at {offset}, before {end}")
            self.size += write_all(self._fd, chunk)
            self.lines += chunk.count(b"\n")
            offset += len(chunk)
        if end > start:
            os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        if before_rename is not None:
            before_rename()
        os.replace(self.tmp, self.path)
        try:
            fsync_dir(self.path.parent)
        except OSError as exc:  # the file is replaced all the same: the log must switch to it
            self.dir_error = exc

    def discard(self) -> None:
        """Give up: close and remove the temp file (the log was never touched)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.tmp.unlink(missing_ok=True)


async def in_thread(fn: Callable[[], T]) -> tuple[T, bool]:
    """Run ``fn`` on the loop's default executor; its result, and whether the awaiting task was
    cancelled meanwhile. The wait outlasts a cancellation: file work cannot be called back
    halfway, and the caller must learn how it ended (a rename that happened after it stopped
    waiting would swap the file under a log still appending to the old one)."""
    future = asyncio.get_running_loop().run_in_executor(None, fn)
    cancelled = False
    while not future.done():
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            if future.cancelled():  # the executor shut down under us
                raise
            cancelled = True
    return future.result(), cancelled
