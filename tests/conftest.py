"""Fixtures shared by every test: a data folder, a fake clock, a client platform."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

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
