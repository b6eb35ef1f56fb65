"""Fixtures for the dashboard tests: a host on the test project, and a headless Chromium.

``chromium`` drives Debian's ``/usr/bin/chromium`` through Playwright (in the ``test`` extra;
``apt-get install -y chromium``, as Playwright cannot download browsers here). When
it is missing or the browser cannot start, the browser tests are skipped with that reason, or
fail where ``PLATFORM_TESTS_REQUIRE`` names ``chromium`` (as CI does: ``tests/support/required.py``);
the endpoint and CLI tests beside them do not need it and always run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.host.dashboard.support import CRAFTED_RUNS, PageErrors, running, write_ledger
from tests.support.hostproc import HostProcess
from tests.support.required import find_program, unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    """One host per test module on the test project (tests use their own runs and names)."""
    with running(tmp_path_factory.mktemp("dash")) as host:
        yield host


@pytest.fixture(scope="module")
def crafted(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[HostProcess, list[dict[str, Any]]]]:
    """A host on a folder of 2,500 finished runs written straight into ``runs.jsonl``
    (newest first in the list it yields beside the host)."""
    root = tmp_path_factory.mktemp("crafted")
    runs = write_ledger(root / "data", CRAFTED_RUNS)
    with running(root) as host:
        yield host, runs


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    # Playwright is in the 'test' extra; the browser is Debian's, which pip cannot provide:
    # without it (or if it will not start) the browser tests skip and say why, or fail in CI.
    from playwright.sync_api import Error, sync_playwright

    find_program("chromium", "apt-get install -y chromium", str(CHROMIUM))
    with sync_playwright() as playwright:
        try:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        except Error as exc:
            unavailable("chromium", f"Chromium at {CHROMIUM} does not start: {exc}")
        yield browser
        browser.close()


@pytest.fixture
def page_errors() -> PageErrors:
    return PageErrors()


@pytest.fixture
def page(chromium: Browser, page_errors: PageErrors) -> Iterator[Page]:
    """A fresh browser page; the test fails if the page logs a script or console error."""
    context = chromium.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(15_000)

    def on_console(message: Any) -> None:
        if message.type == "error":
            page_errors.append(f"console: {message.text}")

    page.on("pageerror", lambda exc: page_errors.append(f"pageerror: {exc}"))
    page.on("console", on_console)
    yield page
    context.close()
    assert not page_errors.unexpected(), page_errors
