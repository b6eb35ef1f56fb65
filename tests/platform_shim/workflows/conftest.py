"""Fixtures for engine tests: a worker on a fake clock, started and stopped per test."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from platform_shim.events import EventHandler
from platform_shim.platform import Platform
from platform_shim.runtime import open_platform
from platform_shim.testing import FakeClock
from platform_shim.workflows.definition import Workflow

Opener = Callable[..., AbstractAsyncContextManager[Platform]]


@pytest.fixture
def open_worker(data_dir: Path, clock: FakeClock) -> Opener:
    """``async with open_worker([wf, ...], handlers=[...]) as platform`` on the test's folder."""

    def opener(
        workflows: Iterable[Workflow] = (),
        handlers: Iterable[EventHandler] = (),
        **options: Any,
    ) -> AbstractAsyncContextManager[Platform]:
        options.setdefault("retry_backoff", lambda attempt: 0)
        options.setdefault("handler_backoff", lambda attempt: 0)
        options.setdefault("watch", False)
        return open_platform(
            data_dir, workflows=workflows, handlers=handlers, clock=clock, **options
        )

    return opener
