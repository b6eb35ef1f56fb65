"""A one-line progress bar for long CLI work, on stderr, and only when stderr is a terminal.

Piped or redirected output never sees it (scripts parse stdout and log stderr), and work that
ends within ``delay`` seconds never draws it, so quick commands do not flicker. A thread draws
it, so a blocking call (loading a large ledger, compacting) still shows that it is alive: with a
``total`` the bar fills as ``advance`` is called, without one it sweeps back and forth.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """``with Progress("compacting") as bar: ...`` (``bar.advance(n)`` when ``total`` is known)."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        *,
        stream: TextIO | None = None,
        delay: float = 0.3,
        interval: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.delay = delay
        self.interval = interval
        self.clock = clock
        self.enabled = _is_tty(self.stream)
        self.drawn = False
        self._started = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def advance(self, n: int = 1) -> None:
        """``n`` more units of ``total`` are done."""
        self.done += n

    def __enter__(self) -> Progress:
        self._started = self.clock()
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.drawn:
            # Leave the line clean for whatever is written next.
            self.stream.write("\r\x1b[2K")
            self.stream.flush()

    def _run(self) -> None:
        if self._stop.wait(self.delay):
            return
        while True:
            self.draw()
            if self._stop.wait(self.interval):
                return

    def draw(self) -> None:
        """Write the bar's current state over the line."""
        width = shutil.get_terminal_size((80, 24)).columns
        self.stream.write("\r\x1b[2K" + self.line(width))
        self.stream.flush()
        self.drawn = True

    def line(self, columns: int) -> str:
        """The bar as one line of at most ``columns - 1`` characters."""
        elapsed = self.clock() - self._started
        cells = 24
        if self.total:
            fraction = min(self.done / self.total, 1.0)
            filled = int(fraction * cells)
            bar = "=" * filled + (">" if filled < cells else "") + " " * max(cells - filled - 1, 0)
            tail = f"{fraction:4.0%}  {self.done:,}/{self.total:,}  {elapsed:.1f}s"
        else:
            # A 6-cell block sweeping back and forth, one cell per tick.
            span = cells - 6
            step = int(elapsed / self.interval) % (2 * span) if span else 0
            at = step if step <= span else 2 * span - step
            bar = " " * at + "=" * 6 + " " * (span - at)
            tail = f"{elapsed:.1f}s"
        text = f"{self.label} [{bar}] {tail}"
        return text[: max(columns - 1, 0)]


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or exotic stream
        return False
