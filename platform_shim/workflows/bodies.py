"""Running ``step.run`` bodies: a sync one in a worker thread, an async one on the loop.

Invariant: **blocking code never stalls the event loop.** A plain ``def`` body runs in a pool of
``step_threads`` threads (with the caller's context, so ``get_platform()`` works there) unless the
step asks for ``inline=True``; whatever awaitable a body returns is awaited on the loop. At
shutdown, bodies still running in threads finish on their own and nobody records them.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["StepBodies"]


class StepBodies:
    """The worker's thread pool for sync step bodies, created on first use."""

    def __init__(self, threads: int) -> None:
        self._threads = threads
        self._executor: ThreadPoolExecutor | None = None

    async def call(self, fn: Callable[[], Any], *, inline: bool) -> Any:
        """Call a ``step.run`` body and return its value (awaited if it returns an awaitable)."""
        if inline or inspect.iscoroutinefunction(fn):
            result = fn()
        else:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="step-body")
            context = contextvars.copy_context()  # get_platform() and friends in the thread
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self._executor, context.run, fn)
        if inspect.isawaitable(result):
            try:
                result = await result
            except asyncio.CancelledError:
                if inspect.iscoroutine(result):
                    result.close()
                raise
        return result

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
