"""``python -m host runs ...``: listing a large ledger page by page, ``rerun``, and no progress
bar when stderr is not a terminal. Each command runs in a real subprocess, as a user runs it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from platform_shim import open_platform
from platform_shim.workflows import define_workflow
from tests.host.dashboard.support import REPO, write_ledger

EXECUTED: list[str] = []


def _step(name: str, value: object) -> object:
    EXECUTED.append(name)
    return value


@define_workflow({"id": "three-steps", "options": {"retries": 0}})
async def three_steps(input, step, ctx):  # type: ignore[no-untyped-def]
    a = await step.run("a", lambda: _step("a", 1))
    b = await step.run("b", lambda: _step("b", a + 1))
    return await step.run("c", lambda: _step("c", b * 10))


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "host", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_rerun_records_a_run_the_next_host_runs_without_the_earlier_steps(tmp_path: Path) -> None:
    data = tmp_path / "data"
    EXECUTED.clear()

    async def first() -> str:
        async with open_platform(data, workflows=[three_steps]) as platform:
            handle = await platform.workflows.start("three-steps")
            assert await handle.result(timeout=10) == 20
            return handle.run_id

    original = asyncio.run(first())
    assert EXECUTED == ["a", "b", "c"]

    done = cli("runs", "rerun", original, "--from", "b", "--data", str(data))
    assert done.returncode == 0, done.stderr
    rerun = done.stdout.strip()
    assert rerun != original

    async def second() -> None:
        async with open_platform(data, workflows=[three_steps]) as platform:
            assert await platform.workflows.handle(rerun).result(timeout=10) == 20
            history = await platform.workflows.handle(rerun).history()
            assert [s.name for s in history] == ["a", "b", "c"]

    asyncio.run(second())
    assert EXECUTED == ["a", "b", "c", "b", "c"]  # "a" replayed from its record

    shown = cli("runs", "show", rerun, "--json", "--data", str(data))
    assert json.loads(shown.stdout)["run"]["status"] == "completed"


def test_a_large_listing_pages_with_before_and_draws_no_bar_when_piped(tmp_path: Path) -> None:
    data = tmp_path / "data"
    runs = write_ledger(data, 2_500)
    ids = [r["runId"] for r in runs]

    first = cli("runs", "list", "--limit", "1000", "--data", str(data))
    assert first.returncode == 0, first.stderr
    rows = first.stdout.splitlines()
    assert rows[0].split()[:3] == ["RUN", "WORKFLOW", "STATUS"]
    assert [row.split()[0] for row in rows[1:]] == ids[:1000]
    # stderr is a pipe here: the hint for the next page, and no progress bar.
    assert first.stderr == f"more: --before {ids[999]}\n"

    rest = cli(
        "runs", "list", "--limit", "5000", "--before", ids[999], "--json", "--data", str(data)
    )
    assert rest.returncode == 0, rest.stderr
    assert [r["runId"] for r in json.loads(rest.stdout)] == ids[1000:]
    assert rest.stderr == ""

    failed = cli(
        "runs", "list", "--status", "failed", "--limit", "5000", "--json", "--data", str(data)
    )
    assert [r["runId"] for r in json.loads(failed.stdout)] == [
        r["runId"] for r in runs if r["status"] == "failed"
    ]

    missing = cli("runs", "list", "--before", "no-such-run", "--data", str(data))
    assert missing.returncode == 1  # not found
    assert missing.stderr == "error: --before names no run: 'no-such-run'\n"


def test_compact_draws_no_bar_when_piped(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_ledger(data, 1_000)
    done = cli("compact", "--json", "--data", str(data))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["runs"]["pruned"] == 0
    assert "\r" not in done.stderr
    assert "\x1b[" not in done.stderr
