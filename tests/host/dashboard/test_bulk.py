"""Bulk actions on a filtered list of runs: cancel all of a status, rerun all failed runs of a
workflow from a step; bounded requests with a cursor; a confirmation naming the count."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from host.dashboard.bulk import BULK_MAX
from tests.host.dashboard.support import screenshot
from tests.support.hostproc import HostProcess
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Page


def _bulk(host: HostProcess, **body: Any) -> dict[str, Any]:
    answer = host.http.post("/_platform/api/runs/bulk", json=body)
    assert answer.status_code == 200, answer.text
    value: dict[str, Any] = answer.json()
    return value


def test_bad_bulk_requests_are_400s_and_change_nothing(dash: HostProcess) -> None:
    run_id = dash.start_run("approval", {"orderId": "bulk-bad"})
    dash.wait_status(run_id, "waiting_event")
    for body, words in [
        ({"action": "delete", "status": "failed"}, "'cancel' or 'rerun'"),
        ({"action": "cancel", "status": "asleep"}, "must be one of"),
        ({"action": "cancel", "status": "completed"}, "nothing to cancel"),
        ({"action": "rerun", "status": "failed"}, "needs 'workflowId'"),
        ({"action": "rerun", "status": "failed", "workflowId": "broken"}, "'fromStep'"),
        ({"action": "cancel", "status": "waiting_event", "extra": 1}, "unknown field"),
        ({"action": "cancel", "status": "waiting_event", "before": "nope"}, "names no run"),
    ]:
        answer = dash.http.post("/_platform/api/runs/bulk", json=body)
        assert answer.status_code == 400, (body, answer.text)
        assert words in answer.json()["detail"]
    assert dash.run(run_id)["status"] == "waiting_event"


def test_rerun_every_failed_run_in_bounded_requests(
    crafted: tuple[HostProcess, list[dict[str, Any]]],
) -> None:
    host, runs = crafted
    failed = [r["runId"] for r in runs if r["status"] == "failed" and r["workflowId"] == "approval"]
    assert len(failed) > BULK_MAX  # so it takes more than one request
    body: dict[str, Any] = {
        "action": "rerun",
        "status": "failed",
        "workflowId": "approval",
        "fromStep": "prepare",
    }
    first = _bulk(host, **body)
    assert first["done"] == BULK_MAX and first["next"] == failed[BULK_MAX - 1]
    second = _bulk(host, **body, before=first["next"])
    assert second["done"] == len(failed) - BULK_MAX and second["next"] is None

    def all_reran() -> bool:
        listing = host.http.get(
            "/api/workflows/runs", params={"workflowId": "approval", "limit": 5000}
        ).json()
        return len(listing) == len([r for r in runs if r["workflowId"] == "approval"]) + len(failed)

    wait_until(all_reran, what="one rerun per failed run")
    sample = host.http.get(f"/_platform/api/runs/{first['started'][0]}").json()
    assert sample["rerunOf"]["fromStep"] == "prepare"
    assert sample["rerunOf"]["runId"] in failed


@pytest.mark.slow
def test_cancel_all_waiting_from_the_page_names_the_count(dash: HostProcess, page: Page) -> None:
    waiting = [dash.start_run("approval", {"orderId": f"bulk-{i}"}) for i in range(3)]
    for run_id in waiting:
        dash.wait_status(run_id, "waiting_event")
    count = dash.http.get("/_platform/api/overview").json()["counts"]["waiting_event"]
    page.goto(dash.url + "/_platform/?status=waiting_event")
    button = page.locator("#bulk-cancel")
    button.wait_for()
    assert button.inner_text() == f"Cancel all {count}"
    button.click()
    dialog = page.locator("dialog#confirm")
    assert dialog.locator("h3").inner_text() == f"Cancel {count} waiting event runs?"
    screenshot(page, "bulk-cancel-confirm", full_page=False)
    page.click("#confirm-ok")
    for run_id in waiting:
        dash.wait_status(run_id, "cancelled")
    page.wait_for_selector("#notice:has-text('Cancelled')")
    page.wait_for_function("() => document.querySelector('#bulk').hidden")


def test_rerun_all_failed_runs_of_a_workflow_from_a_step(dash: HostProcess, page: Page) -> None:
    failed = [dash.start_run("broken", {"message": f"bulk {i}"}) for i in range(2)]
    for run_id in failed:
        dash.wait_status(run_id, "failed")
    before = len(dash.http.get("/api/workflows/runs", params={"workflowId": "broken"}).json())
    n = dash.http.get("/_platform/api/overview", params={"workflowId": "broken"}).json()["counts"][
        "failed"
    ]
    page.goto(dash.url + "/_platform/?workflow=broken&status=failed")
    page.wait_for_selector("#bulk-rerun")
    page.select_option("#bulk-step", "charge")
    page.click("#bulk-rerun")
    title = page.locator("dialog#confirm h3").inner_text()
    assert title == f"Rerun {n} failed run{'s' if n != 1 else ''} of broken from charge?"
    page.click("#confirm-cancel")
    page.wait_for_timeout(300)
    assert (
        len(dash.http.get("/api/workflows/runs", params={"workflowId": "broken"}).json()) == before
    )
    page.click("#bulk-rerun")
    page.click("#confirm-ok")
    page.wait_for_selector("#notice:has-text('Reran')")
    listing = dash.http.get("/api/workflows/runs", params={"workflowId": "broken"}).json()
    assert len(listing) == before + n
