"""The dashboard on a 390 px phone, and on a ``dev`` host whose clock was moved forward.

On a phone every page fits its width (tables scroll inside their box, the page never scrolls
sideways) and a run opens with a tap anywhere on its row. After ``POST /api/dev/clock`` the
pages judge "how long ago" by the host's clock, not the browser's.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.host.dashboard.support import running, screenshot
from tests.support.hostproc import HostProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

PHONE = {"width": 390, "height": 844}
FITS = "() => document.documentElement.scrollWidth <= window.innerWidth"


@pytest.fixture
def phone(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, errors


@pytest.mark.slow
def test_on_a_phone_runs_open_with_a_tap_and_nothing_scrolls_sideways(
    dash: HostProcess, phone: Page
) -> None:
    run_id = dash.start_run("pipeline", {"sleep": "1ms"})
    dash.wait_status(run_id, "completed")
    dash.wait_status(dash.start_run("broken", {"message": "x" * 300}), "failed")
    long_key = "uploads/" + "very-long-folder-name/" * 6 + "report.txt"
    dash.http.put(f"/api/storage/{long_key}", content=b"hi", headers={"Content-Type": "text/plain"})
    for i in range(3):
        dash.http.post(
            "/api/events",
            json={"t": "phone.wide", "ns": "n" * 60, "data": {"i": i, "pad": "p" * 200}},
        )

    phone.goto(dash.url + "/_platform/")
    row = phone.locator(f'tr[data-run-id="{run_id}"]')
    row.wait_for()
    assert phone.evaluate(FITS)
    id_cell = row.locator("td.id").bounding_box()
    assert id_cell is not None and id_cell["width"] > 80  # the Run column is there
    uncut = "td => td.scrollWidth <= td.clientWidth"
    for cell in row.locator("td").all():
        if cell.is_visible() and "id" not in (cell.get_attribute("class") or ""):
            assert cell.evaluate(uncut), cell.inner_text()  # status and age are never cut
    screenshot(phone, "phone-runs", full_page=False)
    # A tap on the status badge, not on the id's link: the whole row is the link.
    status = row.locator("td").nth(2).bounding_box()
    assert status is not None
    phone.touchscreen.tap(status["x"] + status["width"] / 2, status["y"] + status["height"] / 2)
    phone.wait_for_url(re.compile(rf"/_platform/runs/{run_id}$"))
    phone.wait_for_selector('li.step[data-step="publish"]')
    assert phone.evaluate(FITS)
    screenshot(phone, "phone-run")

    phone.goto(dash.url + "/_platform/events")
    phone.wait_for_selector('#rows tr[data-t="phone.wide"]')
    assert phone.evaluate(FITS)
    box = phone.locator("#events").evaluate(
        "t => [t.parentElement.scrollWidth > t.parentElement.clientWidth, t.parentElement.clientWidth]"
    )
    assert box[0] is True and box[1] <= PHONE["width"]  # it scrolls, inside its box
    screenshot(phone, "phone-events", full_page=False)

    phone.goto(dash.url + "/_platform/workflows")
    phone.wait_for_selector('tr[data-workflow="pipeline"]')
    assert phone.evaluate(FITS)

    phone.goto(dash.url + "/_platform/data?tab=storage")
    phone.wait_for_selector("#objects tr[data-key]")
    assert phone.evaluate(FITS)
    phone.goto(dash.url + "/_platform/data?tab=kv")
    phone.wait_for_selector("#names")
    assert phone.evaluate(FITS)


@pytest.fixture(scope="module")
def dev_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostProcess]:
    with running(tmp_path_factory.mktemp("devclock"), command="dev") as host:
        yield host


def _advance(host: HostProcess, by: str) -> dict[str, Any]:
    answer = host.http.post("/api/dev/clock", json={"advance": by})
    assert answer.status_code == 200, answer.text
    value: dict[str, Any] = answer.json()
    return value


@pytest.mark.slow
def test_after_a_dev_clock_advance_ages_follow_the_hosts_clock(
    dev_host: HostProcess, page: Page
) -> None:
    before = dev_host.start_run("pipeline", {"sleep": "1ms"})
    dev_host.wait_status(before, "completed")
    _advance(dev_host, "3d")
    after = dev_host.start_run("pipeline", {"sleep": "1ms"})
    dev_host.wait_status(after, "completed")

    page.goto(dev_host.url + "/_platform/")
    old = page.locator(f'tr[data-run-id="{before}"] td.time time')
    new = page.locator(f'tr[data-run-id="{after}"] td.time time')
    old.wait_for()
    assert old.inner_text() == "3d ago"
    # Judged by the browser's clock this run would be "in 3d".
    assert re.fullmatch(r"just now|\d+s ago", new.inner_text()), new.inner_text()
    for cell in (old, new):
        assert cell.evaluate("t => t.parentElement.scrollWidth <= t.parentElement.clientWidth")
    screenshot(page, "runs-after-clock-advance", full_page=False)

    page.goto(f"{dev_host.url}/_platform/runs/{after}")
    page.wait_for_selector('li.step[data-step="publish"]')
    created = page.locator("#meta time").first
    assert re.fullmatch(r"just now|\d+s ago", created.inner_text())

    # The advance crossed 03:00 at least twice: the nightly cron fired, and its runs say so.
    nightly = dev_host.http.get("/api/workflows/runs", params={"workflowId": "nightly"}).json()
    assert nightly
    page.goto(f"{dev_host.url}/_platform/runs/{nightly[0]['runId']}")
    tick = page.locator("#meta .origin-cron")
    tick.wait_for()
    assert re.fullmatch(r"cron tick (just now|\d+[smhd] ago)", tick.inner_text()), tick.inner_text()

    dev_host.http.post("/api/events", json={"t": "clock.check"})
    page.goto(dev_host.url + "/_platform/events")
    when = page.locator('#rows tr[data-t="clock.check"] td.time time')
    when.wait_for()
    page.wait_for_function(
        "t => /^(just now|\\d+s ago)$/.test(t.textContent)", arg=when.element_handle()
    )
