"""Crash safety of appends: a real process killed with SIGKILL at random instants."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from platform_shim.store import FileStore
from tests.support.procs import spawn


class Collect:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def apply(self, record: dict[str, Any], line: bytes) -> None:
        self.records.append(record)

    def reset(self) -> None:
        self.records.clear()


def load(data_dir: Path) -> list[dict[str, Any]]:
    store = FileStore(data_dir)
    collect = Collect()
    store.open_log("crash", collect)
    store.close()
    return collect.records


@pytest.mark.chaos
@pytest.mark.slow
def test_every_acknowledged_append_survives_sigkill(data_dir: Path) -> None:
    rng = random.Random(1234)
    acknowledged: set[str] = set()
    for cycle in range(6):
        proc = spawn("appender", str(data_dir), f"c{cycle}")
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.5))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        lines = out.split("\n")
        # The last line may itself be torn by the kill; only whole lines were acknowledged.
        acknowledged.update(line for line in lines[:-1] if line)
        records = load(data_dir)
        keys = [record["key"] for record in records]
        assert len(keys) == len(set(keys)), "a record was written twice"
        missing = acknowledged - set(keys)
        assert not missing, f"cycle {cycle}: {len(missing)} acknowledged records lost"
    assert len(acknowledged) > 100
