"""The timer wheel: every run's wake-up and deadline on one clock timer."""

from __future__ import annotations

import logging

import pytest

from platform_shim.testing import FakeClock
from platform_shim.workflows.state import RunState
from platform_shim.workflows.timers import TimerWheel


def _run(run_id: str) -> RunState:
    return RunState(run_id, "wf", b"null", 0, 1)


async def test_a_failing_timer_callback_stops_no_other_timer(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    fired: list[str] = []

    def fire(run: RunState, purpose: str) -> None:
        fired.append(run.run_id)
        if run.run_id == "bad":
            raise RuntimeError("a bug in one run's wake-up")

    wheel = TimerWheel(clock, fire)
    now = clock.now_ms()
    wheel.set(_run("bad"), "wake", now + 1000)
    wheel.set(_run("same-tick"), "wake", now + 1000)
    wheel.set(_run("later"), "wake", now + 5000)
    with caplog.at_level(logging.ERROR, logger="platform_shim.workflows"):
        clock.advance("1s")
    assert fired == ["bad", "same-tick"]
    assert any("run bad" in r.getMessage() and r.exc_info for r in caplog.records)
    # The wheel was re-armed: timers due later, and timers set afterwards, still fire.
    wheel.set(_run("new"), "wake", clock.now_ms() + 2000)
    clock.advance("2s")
    assert fired == ["bad", "same-tick", "new"]
    clock.advance("2s")
    assert fired == ["bad", "same-tick", "new", "later"]
