"""Our own changes, held back from listeners until their write is done.

A log applies a record before its write commits (the next record must see it), and a commit
can fail (on PostgreSQL: the database ended the session, or refused the line); the state is
then replayed without it. So what this process writes is not told to listeners at apply time:
it waits here, with the future of its write, and is heard once that write is done, in the
order it was applied, or dropped if the write failed. Used by the event stream and by
realtime; each decides, in ``announce``, what a replay must not repeat.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["HeldUntilWritten", "Write"]

T = TypeVar("T")
F = TypeVar("F", bound="asyncio.Future[Any]")

Write = list["asyncio.Future[Any]"]
"""The future of a change's write, once submitted (a list: the change is made in the commit
cycle's apply, before the caller has the future)."""


class HeldUntilWritten(Generic[T]):
    """Changes of ours (``hold``), heard through ``announce`` once their write is done."""

    __slots__ = ("_announce", "_held")

    def __init__(self, announce: Callable[[T], None]) -> None:
        self._announce = announce
        self._held: deque[tuple[T, Write]] = deque()

    def track(self, future: F, write: Write) -> F:
        """``future`` is the write of the changes ``write`` stands for: release them when it is
        done (before whoever awaits it resumes: this callback comes first)."""
        write.append(future)
        future.add_done_callback(self.release)
        return future

    def hold(self, item: T, write: Write) -> None:
        self._held.append((item, write))

    def release(self, _: object = None) -> None:
        """Announce the held changes whose write is done (drop those whose write failed), in
        order, up to the first still being written. Call it before announcing another
        process's change too: ours before it were committed before it could be written."""
        held = self._held
        while held:
            item, write = held[0]
            if not write or not write[0].done():
                return
            held.popleft()
            if not write[0].cancelled() and write[0].exception() is None:
                self._announce(item)

    def clear(self) -> None:
        """A replay: what waited was in a write that failed (or is read again)."""
        self._held.clear()
