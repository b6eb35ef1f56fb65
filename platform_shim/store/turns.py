"""What the store implementations share: two ways to coalesce work into turns of the event loop,
a watch that calls back on the loop, and applying one record read from another writer.

- ``OncePerTurn.fresh``: catch up with other writers at most once per loop turn. Whatever
  another writer did before we could hear of it reaches us through I/O, which a later turn
  handles; so once per turn sees every write we can know about, and a tight loop of reads pays
  for one catch-up instead of one per read.
- ``Coalescer.poke``: from any thread, ask for one call of ``_run`` on the loop; pokes that come
  before it runs are folded into it. ``CallbackWatch`` is a watch built on it.
- ``apply_line``: parse one record and hand it to a consumer; a damaged one is skipped alone,
  with a warning naming where it is.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import orjson

from platform_shim.store.protocol import Consumer, OutOfOrder

__all__ = ["CallbackWatch", "Coalescer", "OncePerTurn", "apply_line"]

log = logging.getLogger("platform_shim.store")


def apply_line(consumer: Consumer, line: bytes, where: str) -> bool:
    """Apply one record another writer appended; False (with a warning naming ``where``) for a
    record that does not parse, is out of order, or that the consumer refuses."""
    try:
        record = orjson.loads(line)
        if not isinstance(record, dict):
            raise TypeError("not a JSON object")
        consumer.apply(record, line)
    except OutOfOrder as exc:
        log.warning("%s: skipped a record out of order (%s)", where, exc)
        return False
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        log.warning("%s: skipped an unreadable record (%r)", where, exc)
        return False
    return True


class OncePerTurn:
    """Mixed into a log: ``fresh()`` is ``refresh()`` at most once per turn of the loop."""

    _fresh = False

    def refresh(self) -> int:
        raise NotImplementedError

    def fresh(self) -> None:
        if self._fresh:
            return
        self.refresh()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._fresh = True
        loop.call_soon(self._stale)

    def _stale(self) -> None:
        self._fresh = False


class Coalescer:
    """Mixed into a watcher: ``poke()`` (thread-safe) schedules one ``_run`` on ``_loop``."""

    _loop: asyncio.AbstractEventLoop | None = None
    _poked = False

    def _run(self) -> None:
        raise NotImplementedError

    def poke(self) -> None:
        if self._poked or self._loop is None:
            return
        self._poked = True
        with contextlib.suppress(RuntimeError):  # loop closed during shutdown
            self._loop.call_soon_threadsafe(self._run)


class CallbackWatch(Coalescer):
    """A watch whose pokes (from any thread) call ``on_change`` on the loop, coalesced."""

    _on_change: Callable[[], None]

    def _run(self) -> None:
        self._poked = False
        if self._loop is None:
            return
        try:
            self._on_change()
        except Exception:
            log.exception("catching up with another writer's records failed")
