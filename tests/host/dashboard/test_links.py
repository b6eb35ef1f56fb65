"""Events and runs linked both ways: a run shows what started it (an event, a cron tick, a
parent, a rerun); an event shows the runs it started."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from tests.host.dashboard.support import screenshot
from tests.support.hostproc import HostProcess
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Page


@pytest.mark.slow
def test_an_event_and_the_run_it_started_link_to_each_other(dash: HostProcess, page: Page) -> None:
    event_id = dash.http.post("/api/events", json={"t": "user.signed_up", "data": {"u": 7}}).json()[
        "id"
    ]
    run_id = f"greeter.evt{event_id}"
    wait_until(lambda: dash.http.get(f"/api/workflows/runs/{run_id}").status_code == 200)
    dash.wait_status(run_id, "completed")
    started = dash.http.get(f"/_platform/api/events/{event_id}/runs").json()["runs"]
    assert started == [{"runId": run_id, "workflowId": "greeter", "status": "completed"}]
    assert dash.http.get("/_platform/api/events/999999/runs").json() == {"runs": []}
    assert dash.http.get("/_platform/api/events/x1/runs").status_code == 400

    page.goto(dash.url + "/_platform/events?t=user.signed_up")
    row = page.locator(f'#rows tr[data-id="{event_id}"]')
    row.locator("button.expand").click()
    link = page.locator(f'tr.detail-row .started-runs a[href^="/_platform/runs/{run_id}"]')
    link.wait_for()
    link.click()
    page.wait_for_url(re.compile(rf"/_platform/runs/{re.escape(run_id)}$"))
    origin = page.locator("#meta a.origin-event")
    origin.wait_for()
    assert origin.inner_text() == f"event #{event_id}"
    assert "user.signed_up" in page.locator("#meta").inner_text()
    screenshot(page, "run-started-by-event", full_page=False)
    origin.click()
    page.wait_for_url(re.compile(rf"/_platform/events\?t=user.signed_up#event-{event_id}$"))
    page.wait_for_selector(f'#rows tr.linked.expanded[data-id="{event_id}"]')


def test_runs_say_when_they_were_started_directly_or_by_a_parent(
    dash: HostProcess, page: Page
) -> None:
    direct = dash.start_run("parent", {"n": 2})
    dash.wait_status(direct, "completed")
    detail = dash.http.get(f"/_platform/api/runs/{direct}").json()
    assert detail["origin"] == {"kind": "direct"}
    child = next(s["childRunId"] for s in detail["steps"] if s["kind"] == "invoke")
    child_detail = dash.http.get(f"/_platform/api/runs/{child}").json()
    assert child_detail["origin"] == {"kind": "parent", "runId": direct}
    # A run id that only looks derived is not taken for a trigger's.
    lookalike = dash.http.post("/api/workflows/pipeline/start?runId=greeter.evt5", json={})
    assert lookalike.status_code == 200
    mimic = dash.http.get("/_platform/api/runs/greeter.evt5").json()
    assert mimic["origin"] == {"kind": "direct"}
    page.goto(f"{dash.url}/_platform/runs/{direct}")
    page.wait_for_selector("#meta")
    page.wait_for_function(
        "() => document.querySelector('#meta').textContent.includes('API, CLI or code')"
    )
