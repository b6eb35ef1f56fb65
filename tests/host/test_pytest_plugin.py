"""The pytest plugin, as a user meets it: a project of their own with a test folder, run by a
real ``python -m pytest`` in a subprocess, with nothing but the installed package providing the
``clock`` and ``platform`` fixtures (the ``pytest11`` entry point)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.hostproc import host_env

FILES = {
    "pytest.ini": "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n",
    "workflows/slow.py": """
from platform_shim.workflows import define_workflow


@define_workflow({"id": "slow", "options": {"timeoutSecs": 30 * 86400}})
async def slow(input, step, ctx):
    await step.sleep("grace", "24h")
    reply = await step.wait_for_event("reply", type="reply", match={"user": input["user"]}, timeout="7d")
    return {"replied": reply is not None}
""",
    "events/users.py": """
from platform_shim.events import on_db_change


@on_db_change({"collection": "users", "op": "insert"})
async def start_slow(event, ctx):
    await ctx.workflows.start("slow", {"user": event["id"]}, run_id=f"slow-{event['eventId']}")
""",
    "helpers/other.py": """
from platform_shim.workflows import define_workflow


@define_workflow({"id": "other"})
async def other(input, step, ctx):
    return "other"
""",
    "tests/test_flows.py": """
import time

import pytest

from platform_shim.testing import FakeClock

DAY = 86_400_000


async def test_time_skips_by_itself(platform, clock):
    assert isinstance(clock, FakeClock)
    clock.auto_advance = True
    start = clock.now_ms()
    await platform.database.insert_one("users", {"_id": "u1"})
    await platform.settle()
    [run] = await platform.workflows.list(workflow_id="slow")
    began = time.perf_counter()
    assert await platform.workflows.handle(run.run_id).result() == {"replied": False}
    print(f"auto-advanced result in {time.perf_counter() - began:.3f} s of real time")
    assert clock.now_ms() - start >= 8 * DAY


async def test_time_skips_by_hand(platform, clock):
    handle = await platform.workflows.start("slow", {"user": "u2"})
    await platform.settle()
    clock.advance("24h")
    await platform.settle()
    assert (await handle.status()).status == "waiting_event"
    await platform.workflows.send_event("reply", {"user": "u2"})
    assert await handle.result() == {"replied": True}


@pytest.mark.platform("helpers/other.py")
async def test_a_test_names_what_to_load(platform):
    assert [w.id for w in platform.worker.registry] == ["other"]
    assert platform.worker.handlers == []
""",
    "tests/overridden/conftest.py": """
import pytest

from platform_shim.testing import FakeClock


@pytest.fixture
def clock():
    return FakeClock(1_800_000_000_000)
""",
    "tests/overridden/test_own_clock.py": """
async def test_a_conftest_clock_overrides_the_plugins(platform, clock):
    assert clock.now_ms() == 1_800_000_000_000
    handle = await platform.workflows.start("slow", {"user": "u3"})
    await platform.settle()
    assert (await handle.history())[0].wake_at == 1_800_000_000_000 + 86_400_000
""",
}


@pytest.mark.slow
def test_a_users_project_tests_its_workflows_with_the_plugin(tmp_path: Path) -> None:
    project = tmp_path / "myapp"
    for name, text in FILES.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.lstrip())
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "tests"],
        cwd=project,
        env=host_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout, result.stdout
    assert "auto-advanced result in " in result.stdout
    assert not (project / "data").exists()  # the fixture's folder is under tmp_path
