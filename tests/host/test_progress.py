"""``host.progress.Progress``: a bar on a terminal's stderr, nothing anywhere else."""

from __future__ import annotations

import io
import time

from host.progress import Progress
from tests.support.waiting import wait_until


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_nothing_is_drawn_when_the_stream_is_not_a_terminal() -> None:
    out = io.StringIO()
    with Progress("listing runs", 10, stream=out, delay=0, interval=0.001) as bar:
        bar.advance(5)
        time.sleep(0.05)
    assert out.getvalue() == ""
    assert bar.enabled is False


def test_a_terminal_gets_a_bar_that_fills_and_is_cleared_at_the_end() -> None:
    out = Terminal()
    with Progress("listing runs", 200, stream=out, delay=0, interval=0.001) as bar:
        bar.advance(100)
        wait_until(lambda: "50%" in out.getvalue())
    text = out.getvalue()
    assert "listing runs [" in text
    assert "100/200" in text
    assert text.endswith("\r\x1b[2K")  # the line is left clean for what follows


def test_work_quicker_than_the_delay_draws_nothing() -> None:
    out = Terminal()
    with Progress("compacting", stream=out, delay=10):
        pass
    assert out.getvalue() == ""


def test_without_a_total_the_block_sweeps_and_the_line_fits_the_terminal() -> None:
    now = [0.0]
    bar = Progress("compacting", stream=Terminal(), interval=0.1, clock=lambda: now[0])
    with bar:
        lines = []
        for tick in range(40):
            now[0] = tick * 0.1
            lines.append(bar.line(80))
    assert len({line.index("=") for line in lines}) > 10  # it moves
    assert all(line.startswith("compacting [") for line in lines)
    assert lines[10].endswith("] 1.0s")
    assert len(bar.line(20)) == 19
    full = Progress("x", 4, stream=Terminal(), clock=lambda: 0.0)
    full.advance(4)
    assert full.line(200) == "x [========================] 100%  4/4  0.0s"
