"""The pytest plugin users write their own tests with (entry point ``pytest11``: installing the
project is enough). Fixtures:

- ``clock``: a ``FakeClock``. ``clock.advance("24h")`` skips time by hand; with
  ``clock.auto_advance = True`` it skips by itself whenever every run is parked and the worker
  is idle, so ``await handle.result()`` on a run that sleeps for days returns at once.
- ``platform``: ``open_platform`` on a fresh folder under ``tmp_path``, on that clock, with the
  project's own ``workflows/`` and ``events/`` (and ``workflows.py`` / ``events.py``) loaded the
  way the host loads them. The project is the pytest rootdir, or the ``platform_project`` ini
  setting. A test (or module, via ``pytestmark``) can name what to load instead, and set worker
  options: ``@pytest.mark.platform("workflows/onboarding.py", events_module, retry_backoff=...)``
  takes files or folders (relative to the project), imported modules, workflows and handlers.

It lives in ``host`` because loading a project is the host's job (``host.loader``). A
``conftest.py`` fixture of the same name overrides these, as pytest always does. Async fixtures
and tests run under pytest-asyncio (in auto mode, or strict with ``@pytest.mark.asyncio``).
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from host.loader import Loader
from platform_shim.events import EventHandler
from platform_shim.platform import Platform, current_platform
from platform_shim.runtime import Worker, WorkerOptions
from platform_shim.testing import FakeClock
from platform_shim.workflows.definition import Workflow

try:  # pytest-asyncio's own decorator works in its strict mode as well as in auto mode
    from pytest_asyncio import fixture as _async_fixture
except ImportError:  # pragma: no cover - without pytest-asyncio an async fixture cannot run
    _async_fixture = pytest.fixture  # type: ignore[assignment]

__all__ = ["clock", "open_project", "platform"]

_LOADED_KINDS = ("workflows", "events")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "platform_project",
        "the project folder whose workflows/ and events/ the 'platform' fixture loads"
        " (default: the rootdir)",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "platform(*sources, **worker_options): what the 'platform' fixture loads (files or"
        " folders of the project, modules, workflows, handlers) and its WorkerOptions",
    )


def _load(loader: Loader, project: Path, source: Any) -> list[EventHandler]:
    """Load one named source into ``loader``; returns handlers it held that the loader does
    not track (those of an imported module or given directly)."""
    if isinstance(source, Workflow):
        loader.registry.add(source)
        return []
    if isinstance(source, EventHandler):
        return [source]
    if isinstance(source, types.ModuleType):
        handlers = []
        for value in vars(source).values():
            if isinstance(value, Workflow) and value.id not in loader.registry:
                loader.registry.add(value)
            elif isinstance(value, EventHandler):
                handlers.append(value)
        return handlers
    path = (project / source).resolve()
    if not path.exists():
        raise FileNotFoundError(f"@pytest.mark.platform: {path} does not exist")
    for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
        loader.load(loader.kind_of(file) or "workflows", file.resolve())
    return []


@asynccontextmanager
async def open_project(
    project: str | Path,
    data_dir: str | Path,
    *,
    clock: Any = None,
    sources: Iterable[Any] = (),
    **options: Any,
) -> AsyncIterator[Platform]:
    """A worker on ``data_dir`` running ``project``'s workflows and handlers (or ``sources``),
    loaded as the host loads them; ``options`` are ``WorkerOptions`` (the watcher is off:
    nothing else writes to a test's folder)."""
    loader = Loader(Path(project))  # resolves the path itself
    root = loader.project_dir
    options.setdefault("watch", False)
    worker = Worker(
        data_dir, registry=loader.registry, clock=clock, options=WorkerOptions(**options)
    )
    worker.open()
    try:
        token = current_platform.set(worker.platform)  # get_platform() while modules import
        try:
            extra: list[EventHandler] = []
            named = list(sources)
            for source in named:
                extra += _load(loader, root, source)
            if not named:
                for kind, path in loader.sources():
                    if kind in _LOADED_KINDS:
                        loader.load(kind, path)
        finally:
            current_platform.reset(token)
        worker.handlers = [*loader.handlers(), *extra]
        await worker.begin()
    except BaseException:
        await worker.stop()
        raise
    try:
        yield worker.platform
    finally:
        await worker.stop()


@pytest.fixture
def clock() -> FakeClock:
    """A ``FakeClock`` at 2026-01-01T00:00:00Z (``auto_advance`` off)."""
    return FakeClock()


@_async_fixture
async def platform(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[Platform]:
    """The project's workflows and handlers running on a temp folder, on ``clock``."""
    marker = request.node.get_closest_marker("platform")
    sources = marker.args if marker is not None else ()
    options = dict(marker.kwargs) if marker is not None else {}
    setting = str(request.config.getini("platform_project") or "")
    project = request.config.rootpath / setting if setting else request.config.rootpath
    async with open_project(
        project, tmp_path / "data", clock=clock, sources=sources, **options
    ) as p:
        token = current_platform.set(p)  # get_platform() in the test's own code
        try:
            yield p
        finally:
            # pytest-asyncio may tear down in another context than it set up in.
            with contextlib.suppress(ValueError):
                current_platform.reset(token)
