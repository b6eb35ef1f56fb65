"""SIGKILL a worker while runs finish and move to the archive: every run whose end was
acknowledged stays readable, with its history, after each restart."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from pathlib import Path

import pytest

from platform_shim import open_platform
from platform_shim.platform import Platform, open_client
from platform_shim.workflows.records import RunStatus
from tests.support import finisher

from .test_crash import Proc

pytestmark = [pytest.mark.chaos, pytest.mark.slow]  # SIGKILLs a worker process, many times

CYCLES = 5


async def check_finished(platform: Platform, done: dict[str, int]) -> None:
    workflows = platform.workflows
    for run_id, n in done.items():
        handle = workflows.handle(run_id)
        run = await handle.status()
        assert run is not None, f"finished run {run_id} is gone"
        assert run.status is RunStatus.COMPLETED and run.output == {"n": n, "c": (n + 1) * 2}
        history = [(step.name, step.output) for step in await handle.history()]
        assert history == [("a", n), ("b", n + 1), ("c", (n + 1) * 2)], run_id
    listed = [run.run_id for run in await workflows.list(limit=1_000_000)]
    assert len(listed) == len(set(listed)), "a run is listed twice"
    assert set(done) <= set(listed)
    counts = await workflows.counts()
    assert sum(counts.values()) == len(listed), (counts, len(listed))


def test_finished_runs_survive_sigkill_while_they_are_archived(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    rng = random.Random()
    seed = str(rng.randrange(1 << 30))
    done: dict[str, int] = {}
    for cycle in range(CYCLES):
        worker = Proc("finisher", str(data_dir), f"{seed}/{cycle}", stderr=tmp_path / "err")
        try:
            assert worker.read_until(b"ready", 60), (tmp_path / "err").read_text()
            time.sleep(rng.uniform(0.2, 1.0))
            worker.kill()
            out = worker.finish()
        finally:
            worker.reap()
        assert worker.popen.returncode == -signal.SIGKILL, (tmp_path / "err").read_text()
        for line in out.splitlines():
            if line.startswith("done "):
                _, run_id, n = line.split()
                done[run_id] = int(n)
        client = open_client(data_dir)  # reads what the dead worker left, as the CLI does
        try:
            asyncio.run(check_finished(client, done))
        finally:
            client.close()
    assert len(done) > 20, f"too few runs finished to test anything ({len(done)}, seed {seed})"

    async def restart() -> None:
        async with open_platform(data_dir, workflows=[finisher.relay], watch=False) as platform:
            await platform.settle()
            await check_finished(platform, done)
            assert platform.worker is not None
            assert all(
                not run.status.terminal for run in platform.worker.engine.state.runs.values()
            )
            await platform.worker.compact()
            await check_finished(platform, done)

    asyncio.run(restart())
