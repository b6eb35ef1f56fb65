"""Crash safety of appends: real processes killed with SIGKILL at random instants.

Two appenders write to one log at once, on every store implementation that outlives a process
(a folder; a PostgreSQL database). Each cycle kills one at a random instant, checks that the
survivor still gets its turn (a killed writer's lock dies with it), then kills the survivor.
Every acknowledged record must be there, once.
"""

from __future__ import annotations

import queue
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from platform_shim.store import open_store
from tests.support.consumers import Recorder
from tests.support.procs import spawn


def load(location: str) -> list[dict[str, Any]]:
    store = open_store(location)
    collect = Recorder()
    store.open_log("crash", collect)
    store.close()
    return collect.records


@pytest.fixture(params=["file", "postgres"])
def location(request: pytest.FixtureRequest, data_dir: Path) -> str:
    if request.param == "postgres":
        url: str = request.getfixturevalue("postgres_db").url
        return url
    return str(data_dir)


class Appender:
    """An appender process whose printed lines (acknowledged keys) a thread collects."""

    def __init__(self, location: str, tag: str) -> None:
        self.proc = spawn("appender", location, tag)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.endswith("\n"):  # a line cut by the kill was never acknowledged
                self.lines.put(line.strip())
        self.lines.put(None)

    def take(self, want: int, timeout: float) -> list[str]:
        """Up to ``want`` more lines within ``timeout`` s (a guard against a stall)."""
        out: list[str] = []
        deadline = time.monotonic() + timeout
        while len(out) < want:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            out.append(line)
        return out

    def kill(self) -> list[str]:
        """SIGKILL it; every line it printed that was not taken yet."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._reader.join(timeout=30)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        rest: list[str] = []
        while (line := self.lines.get()) is not None:
            rest.append(line)
        return rest


@pytest.mark.chaos
@pytest.mark.slow
def test_every_acknowledged_append_survives_sigkill(location: str) -> None:
    rng = random.Random(1234)
    acknowledged: set[str] = set()
    for cycle in range(5):
        procs = [Appender(location, f"c{cycle}{side}") for side in "ab"]
        for proc in procs:
            assert proc.take(1, timeout=60) == ["ready"]
        time.sleep(rng.uniform(0.05, 0.5))
        first, second = rng.sample(procs, 2)
        acknowledged.update(first.kill())
        # The survivor goes on: whatever lock the killed one held went with it.
        after = second.take(20, timeout=60)
        assert len(after) == 20, f"cycle {cycle}: the survivor stalled after the other's kill"
        acknowledged.update(after)
        acknowledged.update(second.kill())
        keys = [record["key"] for record in load(location)]
        assert len(keys) == len(set(keys)), "a record was written twice"
        missing = acknowledged - set(keys)
        assert not missing, f"cycle {cycle}: {len(missing)} acknowledged records lost"
    assert len(acknowledged) > 100
