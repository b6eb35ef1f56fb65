"""Work the worker does in the background, kept from failing silently.

Two rules, for every write and task nobody awaits:

- **A write's failure is observed.** A future that no caller awaits (a cursor, an ack, a relayed
  status) gets ``observe``: if its write fails, the failure is logged naming what was being
  written, instead of vanishing with the future.
- **A background loop that crashes is restarted.** ``supervise`` runs a loop (a handler's
  consumer, a queue consumer, maintenance) and, when it raises, logs the error and starts it
  again after a short pause that grows with repeated failures. Cancelling the supervisor stops
  it: that is how the worker shuts its loops down.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["observe", "supervise"]

# Pauses between restarts of a crashed loop: 0.1 s, doubling, at most 5 s. Real time, not the
# platform clock: a fake clock that never moves must not keep a crashed loop down forever.
_FIRST_PAUSE_S = 0.1
_MAX_PAUSE_S = 5.0


def observe(future: asyncio.Future[Any], what: str, logger: logging.Logger) -> None:
    """Log the failure of a write nobody awaits (``what`` names it in the log line)."""
    future.add_done_callback(functools.partial(_log_failure, what, logger))


def _log_failure(what: str, logger: logging.Logger, future: asyncio.Future[Any]) -> None:
    if future.cancelled():
        return
    error = future.exception()
    if error is not None:
        logger.error("%s failed: %s", what, error, exc_info=error)


async def supervise(
    name: str,
    loop_fn: Callable[[], Awaitable[None]],
    logger: logging.Logger,
    *,
    first_pause: float = _FIRST_PAUSE_S,
) -> None:
    """Run ``loop_fn`` until it returns; restart it (logged) whenever it raises."""
    pause = first_pause
    while True:
        try:
            await loop_fn()
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s crashed; restarting it in %.1f s", name, pause)
        await asyncio.sleep(pause)
        pause = min(pause * 2, _MAX_PAUSE_S)
