"""The cross-process append lock of one log.

It is the lock-file protocol ``filelock`` uses (an exclusive ``flock`` on ``<name>.lock``, which
the kernel releases when the holder dies, so a killed writer never blocks the next one) with the
lock file kept open. ``filelock`` re-opens the file, resolves paths and tracks forks on every
acquire: 30-250 µs each here, against 1 µs for the bare ``flock``, and a log takes this lock on
every commit cycle. The two interoperate: either excludes the other on the same file.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

__all__ = ["AppendLock"]


class AppendLock:
    """An exclusive, non-reentrant lock on ``path`` shared by every process on the folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.held = False

    def try_acquire(self) -> bool:
        """Take the lock if it is free; never blocks."""
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        self.held = True
        return True

    async def acquire(self, timeout: float = 30.0) -> None:
        """Take the lock, waiting up to ``timeout`` seconds (for compaction, not the hot path).

        The wait yields to the event loop between tries: the holder is another process whose
        critical section is a few writes long, and the loop keeps serving meanwhile."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = 0.0005
        while not self.try_acquire():
            if loop.time() > deadline:
                raise TimeoutError(f"could not lock {self.path} within {timeout}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)

    def release(self) -> None:
        if self.held:
            self.held = False
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self.release()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
