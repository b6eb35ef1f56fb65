"""The example app's ``/chat`` page (routes/chat.py) in a real browser: two tabs talk.

Debian's Chromium driven by Playwright, as the dashboard tests do; skipped with the reason when
Chromium is missing (a failure where ``PLATFORM_TESTS_REQUIRE`` names it, as in CI). The host
serves the repository itself (its ``platform.toml`` keeps ``chat:*`` history).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.host.hosting import REPO, running_host
from tests.support.hostproc import HostProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    with running_host(tmp_path_factory.mktemp("chat"), project=REPO) as host:
        yield host


def open_tab(browser: Browser, url: str, errors: list[str]) -> Page:
    page = browser.new_context().new_page()
    page.set_default_timeout(15_000)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")
    return page


@pytest.mark.slow
def test_two_tabs_talk(example: HostProcess, browser: Browser) -> None:
    from playwright.sync_api import expect

    errors: list[str] = []
    ann = open_tab(browser, f"{example.url}/chat?name=ann", errors)
    bob = open_tab(browser, f"{example.url}/chat?name=bob", errors)
    expect(ann.locator("#members li")).to_have_text(["ann (you)", "bob"])
    expect(bob.locator("#members li")).to_have_text(["ann", "bob (you)"])

    ann.fill("#text", "hello <b>bob</b>")
    ann.press("#text", "Enter")
    expect(bob.locator("#messages li")).to_have_text(["annhello <b>bob</b>"])  # text, not markup
    bob.fill("#text", "hi ann")
    bob.click("button")
    expect(ann.locator("#messages li")).to_have_text(["annhello <b>bob</b>", "bobhi ann"])

    # A late joiner sees the kept history; a closed tab leaves the member list.
    cy = open_tab(browser, f"{example.url}/chat?name=cy", errors)
    expect(cy.locator("#messages li")).to_have_text(["annhello <b>bob</b>", "bobhi ann"])
    expect(ann.locator("#members li")).to_have_text(["ann (you)", "bob", "cy"])
    cy.context.close()
    expect(ann.locator("#members li")).to_have_text(["ann (you)", "bob"])
    assert errors == []
    ann.context.close()
    bob.context.close()
