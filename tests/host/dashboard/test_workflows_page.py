"""The workflows page: each workflow with its trigger, next cron tick, runs by status linking to
those runs, and options; and its JSON endpoint."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from tests.host.dashboard.support import screenshot
from tests.support.hostproc import HostProcess

if TYPE_CHECKING:
    from playwright.sync_api import Page


def test_the_endpoint_lists_triggers_ticks_and_counts(dash: HostProcess) -> None:
    failed = dash.start_run("broken", {"message": "x"})
    dash.wait_status(failed, "failed")
    answer = dash.http.get("/_platform/api/workflows").json()
    by_id = {w["id"]: w for w in answer["workflows"]}
    assert by_id["nightly"]["trigger"] == {"kind": "schedule", "cron": "0 3 * * *"}
    assert by_id["nightly"]["nextAt"] > answer["now"]
    assert by_id["greeter"]["trigger"] == {"kind": "event", "t": "user.signed_up"}
    assert by_id["greeter"]["nextAt"] is None
    assert by_id["pipeline"]["trigger"] is None
    assert by_id["broken"]["options"] == {"retries": 0}
    broken = dash.http.get("/api/workflows/runs", params={"workflowId": "broken"}).json()
    assert by_id["broken"]["total"] == len(broken)
    assert by_id["broken"]["counts"]["failed"] == sum(r["status"] == "failed" for r in broken)


def test_the_workflows_page_links_each_count_to_its_runs(dash: HostProcess, page: Page) -> None:
    failed = dash.start_run("broken", {"message": "x"})
    dash.wait_status(failed, "failed")
    page.goto(dash.url + "/_platform/workflows")
    nightly = page.locator('tr[data-workflow="nightly"]')
    nightly.wait_for()
    assert "0 3 * * *" in nightly.locator("code.cron").inner_text()
    assert re.fullmatch(r"in \d+[smh]", nightly.locator("td.time time").first.inner_text())
    greeter = page.locator('tr[data-workflow="greeter"]')
    assert "user.signed_up" in greeter.inner_text()
    broken = page.locator('tr[data-workflow="broken"]')
    assert "retries 0" in broken.inner_text()
    screenshot(page, "workflows")
    broken.locator("a.count-link", has_text="failed").click()
    page.wait_for_url(re.compile(r"/_platform/\?workflow=broken&status=failed$"))
    page.wait_for_selector(f'tr[data-run-id="{failed}"]')
    assert page.locator("#f-workflow").input_value() == "broken"


def test_a_run_starts_from_the_workflows_page_with_custom_input(
    dash: HostProcess, page: Page
) -> None:
    page.goto(dash.url + "/_platform/workflows")
    page.locator('tr[data-workflow="child"] button.start').click()
    page.fill("#start-input", '{"n": 21}')
    page.click("#confirm-ok")
    page.wait_for_url(re.compile(r"/_platform/runs/[^/?]+$"))
    run_id = page.url.rsplit("/", 1)[1]
    assert dash.wait_status(run_id, "completed")["output"] == {"doubled": 42}
    page.wait_for_selector('#status .badge[data-status="completed"]')
