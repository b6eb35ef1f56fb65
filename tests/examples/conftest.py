"""The repository's example app, loaded exactly as the host loads it, on a fake clock.

``app`` wraps the test kit's own ``platform`` fixture (``host.pytest_plugin``, what a user's
project gets from installing the package): the rootdir's ``workflows/`` and ``events/`` on a temp
folder, on the ``clock`` below (a Monday, 09:00 UTC). It is imported here because
``tests/conftest.py`` has a client ``platform`` fixture for the other tests; the test module's
``pytestmark`` sets the worker options. Tests then skip days with ``clock.advance`` and
``await app.settle()`` instead of sleeping. ``start_example_app`` opens more (restarts, other
clocks) the way the host's lifespan does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from host.loader import Loader
from host.pytest_plugin import platform  # noqa: F401  (the kit's fixture, overriding tests/conftest.py's)
from platform_shim.platform import Platform, current_platform
from platform_shim.runtime import Worker, WorkerOptions
from platform_shim.testing import FakeClock
from platform_shim.workflows.records import WorkflowRun

REPO = Path(__file__).resolve().parents[2]


def at(*args: int) -> int:
    """Epoch ms of a UTC date and time."""
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


def fast_options() -> WorkerOptions:
    """No watcher thread, no backoff between retries: deterministic and quick."""
    return WorkerOptions(
        watch=False, retry_backoff=lambda attempt: 0, handler_backoff=lambda attempt: 0
    )


@dataclass
class ExampleApp:
    platform: Platform
    clock: FakeClock

    @property
    def worker(self) -> Worker:
        assert self.platform.worker is not None
        return self.platform.worker

    async def settle(self) -> None:
        await self.worker.settle(timeout=10)

    async def advance(self, duration: str) -> None:
        self.clock.advance(duration)
        await self.settle()

    async def run(self, run_id: str) -> WorkflowRun:
        run = await self.platform.workflows.handle(run_id).status()
        assert run is not None, f"no run {run_id!r}"
        return run

    async def runs(self, workflow_id: str) -> list[WorkflowRun]:
        return await self.platform.workflows.list(workflow_id=workflow_id)

    async def only_run(self, workflow_id: str) -> WorkflowRun:
        runs = await self.runs(workflow_id)
        assert len(runs) == 1, f"expected one {workflow_id!r} run, got {runs}"
        return runs[0]

    async def history(self, run_id: str) -> dict[str, dict[str, Any]]:
        """The run's steps by name, in wire form."""
        steps = await self.platform.workflows.handle(run_id).history()
        return {step.name: step.to_dict() for step in steps}

    async def outbox(self) -> list[dict[str, Any]]:
        """Mail the ``emails`` queue consumer (events/emails.py) delivered, oldest first."""
        listing = await self.platform.kv.list("outbox")
        return [await self.platform.kv.get("outbox", key["name"]) for key in listing["keys"]]


async def start_example_app(data_dir: Path, clock: FakeClock) -> ExampleApp:
    loader = Loader(REPO)
    worker = Worker(data_dir, registry=loader.registry, clock=clock, options=fast_options())
    worker.open()
    try:
        token = current_platform.set(worker.platform)
        try:
            loader.load_all(strict=True)
        finally:
            current_platform.reset(token)
        worker.handlers = loader.handlers()
        await worker.begin()
    except BaseException:
        await worker.stop()
        raise
    return ExampleApp(worker.platform, clock)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(at(2026, 1, 5, 9, 0, 0))


@pytest.fixture
def app(platform: Platform, clock: FakeClock) -> ExampleApp:  # noqa: F811
    return ExampleApp(platform, clock)
