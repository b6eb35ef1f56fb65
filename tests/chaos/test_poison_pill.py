"""A step body that kills the process is not run forever: after a bounded number of
recoveries (WorkerOptions.max_recoveries, default 5) its run is failed, naming the step, and
the host goes on serving."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from platform_shim.platform import open_client
from platform_shim.workflows.records import RunStatus
from tests.support.procs import env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_body_that_kills_the_process_fails_its_run_after_five_recoveries(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    outcomes: list[int] = []
    for _ in range(10):
        proc = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "support" / "poison_worker.py"), str(data)],
            cwd=ROOT,
            env=env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        outcomes.append(proc.returncode)
        if proc.returncode == 0:
            assert "served failed" in proc.stdout, proc.stdout + proc.stderr
            break
    # The first start ran the body; then five recoveries did; the sixth failed the run.
    assert outcomes == [17] * 6 + [0], outcomes
    assert len((tmp_path / "bodies.log").read_text().split()) == 6
    asyncio.run(check_failed(data))


async def check_failed(data: Path) -> None:
    client = open_client(data)
    try:
        run = await client.workflows.handle("pill").status()
        assert run is not None and run.status is RunStatus.FAILED
        assert run.error is not None
        assert run.error["type"] == "StepCrashedProcess" and run.error["step"] == "swallow"
        assert "the process died" in run.error["message"]
        # The step before it completed once and never ran again.
        history = await client.workflows.handle("pill").history()
        assert [s.name for s in history] == ["before"]
    finally:
        client.close()
