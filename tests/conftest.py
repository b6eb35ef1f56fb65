"""Fixtures shared by every test (a data folder, a fake clock, a client platform), and the
markers that follow from where a test lives or what it needs.

The markers are registered in ``pyproject.toml`` (``--strict-markers``). ``chaos``, ``browser``
and ``node`` are given here, so a new test gets them without anyone remembering to: everything
under ``tests/chaos`` is ``chaos`` (SIGKILL tests elsewhere carry the mark themselves), a test
that needs Chromium (the ``chromium`` or ``browser`` fixture) is ``browser``, one that needs
``node`` is ``node``. ``slow`` (over ~3 s, measured with ``--durations``) is written on the test
or module, as is any mark a test needs for another reason.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

TESTS = Path(__file__).resolve().parent
CHAOS = TESTS / "chaos"

if TYPE_CHECKING:
    from platform_shim.platform import Platform
    from platform_shim.testing import FakeClock

# postgres_server (one throwaway cluster per session) and postgres_db (a fresh database per
# test), registered once here so every folder shares the one server.
pytest_plugins = ("tests.support.postgres",)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def clock() -> FakeClock:
    from platform_shim.testing import FakeClock

    return FakeClock()


@pytest.fixture
async def platform(data_dir: Path, clock: FakeClock) -> AsyncIterator[Platform]:
    from platform_shim.platform import open_client

    client = open_client(data_dir, clock=clock)
    yield client
    client.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        needs = set(getattr(item, "fixturenames", ()))
        if CHAOS in item.path.parents:
            item.add_marker(pytest.mark.chaos)
        if needs & {"chromium", "browser"}:
            item.add_marker(pytest.mark.browser)
        if "node" in needs:
            item.add_marker(pytest.mark.node)
