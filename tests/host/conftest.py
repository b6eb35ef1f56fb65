"""Fixtures: a real host in a subprocess (see ``tests/host/hosting.py`` for what it serves).

``host`` is one ``python -m host serve <project> --port <free> --data <tmp>`` per test module,
on 127.0.0.1; ``http`` is an httpx client on it; ``start_host(*args, env=, bind=, token=)``
starts more hosts with other options. Every host is stopped with SIGTERM at teardown and must
exit 0 within a few seconds with a clean log.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.host.hosting import StartHost, running_host
from tests.support.hostproc import HostProcess
from tests.support.required import find_program, unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = Path("/usr/bin/chromium")
JS_PACKAGES = ("@maravilla-labs/platform", "ws")  # the client, and the WebSocket Node 20 lacks
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run", "--disable-sync"]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    """One host for the test module, on 127.0.0.1 with the default options."""
    with running_host(tmp_path_factory.mktemp("host")) as running:
        yield running


@pytest.fixture(scope="module")
def http(host: HostProcess) -> Iterator[httpx.Client]:
    """An httpx client on ``host`` (one per module: building a client costs ~50 ms)."""
    with httpx.Client(base_url=host.url, timeout=10.0) as client:
        yield client


@pytest.fixture
def start_host(tmp_path: Path) -> Iterator[StartHost]:
    """``start_host(*args, env=, bind=, token=)`` starts another host; all stop at teardown."""
    with contextlib.ExitStack() as stack:
        count = 0

        def start(*extra: str, **options: Any) -> HostProcess:
            nonlocal count
            count += 1
            return stack.enter_context(running_host(tmp_path / f"host{count}", *extra, **options))

        yield start


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium through Playwright (the chat page and the Data page's people section);
    skipped with the reason without it, a failure where CI requires it."""
    from playwright.sync_api import Error, sync_playwright

    find_program("chromium", "apt-get install -y chromium", str(CHROMIUM))
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        except Error as exc:
            unavailable("chromium", f"Chromium at {CHROMIUM} does not start: {exc}")
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def node() -> str:
    """The ``node`` program: skipped with the reason without it, a failure where
    ``PLATFORM_TESTS_REQUIRE`` names it (as CI does)."""
    return find_program("node", "apt-get install -y nodejs npm")


def js_packages_in(folder: Path) -> bool:
    return all((folder / "node_modules" / name / "package.json").exists() for name in JS_PACKAGES)


@pytest.fixture(scope="session")
def js_client_dir(node: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder whose node_modules holds the platform's JS client and ``ws``:
    ``$PLATFORM_JS_CLIENT_DIR`` if it has them (``.ci/run`` sets it up), else one
    ``npm install`` into a temp folder per test session."""
    given = os.environ.get("PLATFORM_JS_CLIENT_DIR")
    if given and js_packages_in(Path(given)):
        return Path(given)
    npm = find_program("npm", "apt-get install -y npm (node is installed, npm is not)")
    folder = tmp_path_factory.mktemp("jsclient")
    result = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--no-save", "--loglevel=error", *JS_PACKAGES],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"npm install failed:\n{result.stdout}\n{result.stderr}"
    assert js_packages_in(folder), result.stdout + result.stderr
    return folder
