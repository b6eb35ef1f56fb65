"""The dashboard in a real browser (headless Chromium via Playwright) against a real host.

Each test acts the way a user does — opens a page, waits for what appears, clicks — and then
checks the outcome through the HTTP API (and, for reruns, by counting how often each step body
really ran). Every page's screenshot is saved under ``test-artifacts/``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.host.dashboard.support import PIPELINE_STEPS, PageErrors, running, screenshot, tally
from tests.support.hostproc import HostProcess, running_host
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


def _row(run_id: str) -> str:
    return f'tr[data-run-id="{run_id}"]'


@pytest.mark.slow
def test_a_started_run_appears_live_and_moves_through_its_statuses(
    dash: HostProcess, page: Page
) -> None:
    dash.start_run("pipeline", {"sleep": "10ms"})  # something to show before the live one
    page.goto(dash.url + "/_platform/")
    page.wait_for_selector("#live.on")
    page.wait_for_selector("#rows tr")
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads

    run_id = dash.start_run("pipeline", {"sleep": "600ms"})
    row = page.locator(_row(run_id))
    row.wait_for()
    assert page.evaluate("window.__sameDocument") is True
    assert page.locator("#rows tr").first.get_attribute("data-run-id") == run_id  # newest on top
    page.wait_for_selector(_row(run_id) + '[data-status="sleeping"]')
    page.wait_for_selector(_row(run_id) + '[data-status="completed"]')
    assert page.evaluate("window.__sameDocument") is True
    assert row.locator("td").nth(1).inner_text().startswith("pipeline")

    # The counts follow the server's, also without a reload.
    def counted() -> bool:
        chips = page.locator(".count")
        shown = {
            chips.nth(i).get_attribute("data-status"): int(chips.nth(i).locator(".n").inner_text())
            for i in range(chips.count())
        }
        counts = dash.http.get("/_platform/api/overview").json()["counts"]
        return shown == {"all": sum(counts.values()), **counts}

    wait_until(counted, what="the counts to match the server's")
    screenshot(page, "runs-live")


@pytest.mark.slow
def test_the_runs_page_pages_through_a_large_ledger(
    crafted: tuple[HostProcess, list[dict[str, Any]]], page: Page
) -> None:
    host, runs = crafted
    ids = [r["runId"] for r in runs]
    page.goto(host.url + "/_platform/")
    page.wait_for_selector("#rows tr")
    shown = "trs => trs.map(tr => tr.dataset.runId)"
    assert page.eval_on_selector_all("#rows tr", shown) == ids[:50]  # one page, not 2,500
    assert re.sub(r"\D", "", page.locator('.count[data-status="all"] .n').inner_text()) == "2500"
    page.click("#older")
    page.wait_for_function("() => document.querySelectorAll('#rows tr').length === 100")
    page.click("#older")
    page.wait_for_function("() => document.querySelectorAll('#rows tr').length === 150")
    assert page.eval_on_selector_all("#rows tr", shown) == ids[:150]

    # A new run goes on top; the older pages already loaded stay.
    page.wait_for_selector("#live.on")
    new = host.start_run("pipeline", {"sleep": "1ms"})
    page.wait_for_selector(_row(new) + '[data-status="completed"]')
    page.wait_for_timeout(1000)  # past the refetch that follows the events
    assert page.eval_on_selector_all("#rows tr", shown) == [new, *ids[:150]]

    page.click('.count[data-status="cancelled"]')
    page.wait_for_function(
        "() => document.querySelectorAll('#rows tr').length === 50 && "
        "[...document.querySelectorAll('#rows tr')].every(tr => tr.dataset.status === 'cancelled')"
    )
    cancelled = [r["runId"] for r in runs if r["status"] == "cancelled"]
    assert page.eval_on_selector_all("#rows tr", shown) == cancelled[:50]
    assert not page.locator("#older").is_hidden()


def test_filters_show_one_workflow_and_one_status(dash: HostProcess, page: Page) -> None:
    failed = dash.start_run("broken", {"message": "card declined"})
    dash.wait_status(failed, "failed")
    dash.wait_status(dash.start_run("pipeline", {"sleep": "1ms"}), "completed")
    page.goto(dash.url + "/_platform/")
    page.select_option("#f-workflow", "broken")
    page.wait_for_selector(_row(failed))
    page.wait_for_function(
        "() => [...document.querySelectorAll('#rows tr')].every(tr => tr.children[1].textContent.startsWith('broken'))"
    )
    assert "workflow=broken" in page.url
    page.select_option("#f-workflow", "")
    page.click('.count[data-status="failed"]')
    page.wait_for_function(
        "() => document.querySelectorAll('#rows tr').length > 0 && "
        "[...document.querySelectorAll('#rows tr')].every(tr => tr.dataset.status === 'failed')"
    )
    error = page.locator(_row(failed) + " td.err").inner_text()
    assert error == "[charge] RuntimeError: card declined"


def test_the_timeline_shows_every_step(dash: HostProcess, page: Page) -> None:
    run_id = dash.start_run("pipeline", {"items": 4})
    dash.wait_status(run_id, "completed")
    page.goto(f"{dash.url}/_platform/runs/{run_id}")
    page.wait_for_selector('li.step[data-step="publish"]')

    steps = page.locator("li.step")
    assert [steps.nth(i).get_attribute("data-step") for i in range(steps.count())] == PIPELINE_STEPS
    kinds = [steps.nth(i).get_attribute("data-kind") for i in range(steps.count())]
    assert kinds == ["run", "sleep", "run", "run"]
    assert all(steps.nth(i).get_attribute("data-status") == "completed" for i in range(4))
    assert page.locator('li.step[data-step="nap"] code.wake').count() == 1  # its wake time
    assert "took" in page.locator('li.step[data-step="transform"] .timing').inner_text()
    assert "40" in page.locator('li.step[data-step="transform"] .inline-out').inner_text()
    assert json.loads(page.locator("#output .jv-tree").inner_text()) == {"total": 40}
    assert json.loads(page.locator("#input .jv-tree").inner_text()) == {"items": 4}
    assert page.locator("#status .badge").inner_text() == "completed"
    assert page.locator("#cancel").is_hidden()  # nothing to cancel once it ended
    screenshot(page, "run")


def test_an_invoke_links_to_its_child_run(dash: HostProcess, page: Page) -> None:
    run_id = dash.start_run("parent", {"n": 5})
    dash.wait_status(run_id, "completed")
    page.goto(f"{dash.url}/_platform/runs/{run_id}")
    link = page.locator('li.step[data-step="delegate"] a.child-link')
    link.wait_for()
    child_id = link.inner_text()
    assert dash.run(child_id)["parentRunId"] == run_id
    link.click()
    page.wait_for_url(re.compile(rf"/_platform/runs/{re.escape(child_id)}$"))
    page.wait_for_selector('li.step[data-step="work"]')
    assert page.locator("#workflow").inner_text() == "child"
    assert page.locator("#meta").get_by_text(run_id).count() == 1  # "Parent run" links back


def test_cancel_from_the_page_cancels_the_run(dash: HostProcess, page: Page) -> None:
    run_id = dash.start_run("pipeline", {"sleep": "1h"})
    dash.wait_status(run_id, "sleeping")
    page.goto(f"{dash.url}/_platform/runs/{run_id}")
    page.wait_for_selector('li.step[data-step="nap"][data-status="pending"]')
    assert page.locator('li.step[data-step="nap"] .detail').inner_text() == "wakes in 59m"
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#cancel")
    dash.wait_status(run_id, "cancelled")
    page.wait_for_selector('#status .badge[data-status="cancelled"]')
    assert page.locator("#cancel").is_hidden()
    # The sleep the cancel cut short is no longer shown as waiting, here or in the API.
    nap = page.locator('li.step[data-step="nap"]')
    nap.and_(page.locator('[data-status="abandoned"]')).wait_for()
    assert "wakes" not in nap.inner_text()
    assert nap.locator(".bar span.open").count() == 0  # no "still going" stripes
    assert [s["status"] for s in dash.history(run_id)] == ["completed", "abandoned"]
    # A deliberate cancel is not an error: neutral colours, no red error text.
    callout = page.locator("#error")
    assert callout.get_attribute("class") == "callout cancelled"
    assert callout.locator("pre.error").count() == 0
    red = "rgb(220, 38, 38)"
    assert callout.locator("h3").evaluate("h => getComputedStyle(h).color") != red
    screenshot(page, "run-cancelled")


def test_rerun_from_a_step_does_not_run_the_earlier_steps_again(
    dash: HostProcess, page: Page, tmp_path: Path
) -> None:
    log = tmp_path / "steps.log"
    original = dash.start_run("pipeline", {"log": str(log), "sleep": "20ms"})
    dash.wait_status(original, "completed")
    assert tally(log) == {"prepare": 1, "transform": 1, "publish": 1}

    page.goto(f"{dash.url}/_platform/runs/{original}")
    page.click('li.step[data-step="transform"] button.rerun-from')
    # It asks first, naming the steps that run again and those that replay.
    dialog = page.locator("dialog#confirm")
    dialog.wait_for()
    assert dialog.locator(".again code").all_inner_texts() == ["transform", "publish"]
    assert dialog.locator(".replayed code").all_inner_texts() == ["prepare", "nap"]
    screenshot(page, "rerun-confirm", full_page=False)
    page.click("#confirm-ok")
    page.wait_for_url(re.compile(r"/_platform/runs/(?!" + re.escape(original) + r"$)[^/?]+$"))
    rerun = page.url.rsplit("/", 1)[1]
    assert rerun != original

    finished = dash.wait_status(rerun, "completed")
    assert finished["output"] == {"total": 30}
    # prepare (and the sleep) replayed from the records; transform and publish ran again.
    assert tally(log) == {"prepare": 1, "transform": 2, "publish": 2}
    assert [s["name"] for s in dash.history(rerun)] == PIPELINE_STEPS
    page.wait_for_selector('#status .badge[data-status="completed"]')
    meta = page.locator("#meta").inner_text()
    assert original in meta
    assert "transform" in meta


def test_rerun_from_the_step_picker(dash: HostProcess, page: Page, tmp_path: Path) -> None:
    log = tmp_path / "steps.log"
    original = dash.start_run("pipeline", {"log": str(log), "sleep": "1ms"})
    dash.wait_status(original, "completed")
    page.goto(f"{dash.url}/_platform/runs/{original}")
    page.wait_for_selector('li.step[data-step="publish"]')
    page.select_option("#rerun-step", "publish")
    page.click("#rerun")
    page.click("#confirm-cancel")  # changed my mind: nothing starts
    page.wait_for_timeout(300)
    assert tally(log) == {"prepare": 1, "transform": 1, "publish": 1}
    page.click("#rerun")
    assert page.locator("dialog#confirm .again code").all_inner_texts() == ["publish"]
    page.click("#confirm-ok")
    page.wait_for_url(re.compile(r"/_platform/runs/(?!" + re.escape(original) + r"$)[^/?]+$"))
    dash.wait_status(page.url.rsplit("/", 1)[1], "completed")
    assert tally(log) == {"prepare": 1, "transform": 1, "publish": 2}


def test_sending_the_matching_event_from_the_page_resumes_the_run(
    dash: HostProcess, page: Page
) -> None:
    other = dash.start_run("approval", {"orderId": "o-other"})
    run_id = dash.start_run("approval", {"orderId": "o-42"})
    dash.wait_status(run_id, "waiting_event")
    dash.wait_status(other, "waiting_event")
    page.goto(f"{dash.url}/_platform/runs/{run_id}")
    page.wait_for_selector("#signal:not([hidden])")
    # Prefilled from the wait: its type, and its match as the payload.
    assert page.input_value("#signal-type") == "order.approved"
    assert json.loads(page.input_value("#signal-payload")) == {"orderId": "o-42"}
    wait = page.locator('li.step[data-step="approval"] .detail').inner_text()
    assert "order.approved" in wait
    assert '{"orderId":"o-42"}' in wait
    screenshot(page, "run-waiting")

    page.fill("#signal-payload", json.dumps({"orderId": "o-42", "by": "dashboard"}))
    page.click("#signal-send")
    finished = dash.wait_status(run_id, "completed")
    assert finished["output"] == {"approved": {"orderId": "o-42", "by": "dashboard"}}
    assert dash.run(other)["status"] == "waiting_event"  # the match kept it to the one run
    page.wait_for_selector('#status .badge[data-status="completed"]')
    assert page.locator("#signal").is_hidden()


def test_a_failed_run_shows_its_error_and_failing_step_as_text(
    dash: HostProcess, page: Page
) -> None:
    hostile = '<img src=x onerror="window.__owned=1"><script>window.__owned=2</script>'
    run_id = dash.start_run("broken", {"message": hostile})
    dash.wait_status(run_id, "failed")
    page.goto(f"{dash.url}/_platform/runs/{run_id}")
    page.wait_for_selector("#error:not([hidden])")
    assert page.locator("#error .error-step").inner_text() == "charge"
    assert page.locator("#error pre").inner_text() == f"RuntimeError: {hostile}"
    assert page.locator('li.step[data-step="charge"]').get_attribute("data-status") == "failed"
    assert page.locator("main img, main script").count() == 0
    assert page.evaluate("window.__owned") is None
    screenshot(page, "run-failed")


def test_an_unknown_run_says_so(dash: HostProcess, page: Page, page_errors: PageErrors) -> None:
    page_errors.expect("404")
    response = page.goto(f"{dash.url}/_platform/runs/no-such-run")
    assert response is not None
    assert response.status == 404
    page.wait_for_selector("#missing:not([hidden])")
    assert "no-such-run" in page.locator("#missing").inner_text()


@pytest.mark.slow
def test_the_events_page_streams_and_filters(dash: HostProcess, page: Page) -> None:
    dash.http.post("/api/events", json={"t": "shop.opened", "data": {"door": "front"}})
    page.goto(dash.url + "/_platform/events")
    page.wait_for_selector('#rows tr[data-t="shop.opened"]')
    page.wait_for_selector("#live.on")
    page.evaluate("window.__sameDocument = true")
    answer = dash.http.post(
        "/api/events", json={"t": "shop.sale", "ns": "till-1", "data": {"amount": 12}}
    )
    sale = page.locator(f'#rows tr[data-id="{answer.json()["id"]}"]')
    sale.wait_for()
    assert page.locator("#rows tr").first.get_attribute("data-id") == str(answer.json()["id"])
    assert '{"amount":12}' in sale.inner_text()
    sale.click()  # unfolds the whole event
    assert json.loads(page.locator("tr.detail-row .jv-tree").inner_text())["data"] == {"amount": 12}
    assert page.evaluate("window.__sameDocument") is True

    page.fill("#f-t", "shop.sale")
    page.click("#filters button[type=submit]")
    page.wait_for_function(
        "() => document.querySelectorAll('#rows tr[data-t]').length > 0 && "
        "[...document.querySelectorAll('#rows tr[data-t]')].every(tr => tr.dataset.t === 'shop.sale')"
    )
    assert "t=shop.sale" in page.url
    page.wait_for_selector("#live.on")
    later = dash.http.post("/api/events", json={"t": "shop.sale", "data": {"amount": 3}}).json()[
        "id"
    ]
    dash.http.post("/api/events", json={"t": "shop.closed"})
    page.wait_for_selector(f'#rows tr[data-id="{later}"]')
    assert page.locator('#rows tr[data-t="shop.closed"]').count() == 0

    page.fill("#f-t", "")
    page.click("#filters button[type=submit]")
    run_id = dash.start_run("pipeline", {"sleep": "1ms"})
    dash.wait_status(run_id, "completed")
    page.wait_for_selector('#rows tr[data-t="workflow.run.completed"] a')
    screenshot(page, "events", full_page=False)


def test_the_data_browser_shows_kv_documents_and_objects(dash: HostProcess, page: Page) -> None:
    api = dash.http
    hostile = "<b>bold</b><img src=x onerror=alert(1)>"
    assert (
        api.put("/api/kv/browse-users/u1", json={"name": hostile, "tags": ["a"]}).status_code == 200
    )
    assert (
        api.put("/api/kv/browse-users/u2", json="plain", headers={"X-TTL": "3600"}).status_code
        == 200
    )
    for i in range(3):
        assert (
            api.put("/api/db/browse-orders", json={"_id": f"o-{i}", "total": i * 10}).status_code
            == 200
        )
    assert (
        api.put(
            "/api/storage/browse/hello.txt",
            content=b"hello world",
            headers={"Content-Type": "text/plain"},
        ).status_code
        == 200
    )
    assert (
        api.put(
            "/api/storage/browse/page.html",
            content=hostile.encode(),
            headers={"Content-Type": "text/html"},
        ).status_code
        == 200
    )

    page.goto(dash.url + "/_platform/data?tab=kv&name=browse-users")
    page.wait_for_selector('#kv-keys tr[data-key="u2"]')
    assert page.locator("#names button.current").inner_text().startswith("browse-users")
    assert hostile in page.locator('#kv-keys tr[data-key="u1"] td.value').inner_text()
    assert page.locator('#kv-keys tr[data-key="u2"] td').nth(2).inner_text().startswith("in ")
    assert page.locator("main b, main img").count() == 0
    screenshot(page, "data")

    page.click("#tabs a[data-tab=db]")
    page.click('#names button[data-name="browse-orders"]')
    page.wait_for_selector('#documents tr[data-id="o-2"]')
    page.fill("#pane input", '{"total": {"$gte": 10}}')
    page.click("#pane form button")
    page.wait_for_function("() => document.querySelectorAll('#documents tr[data-id]').length === 2")
    assert "2 documents" in page.locator("#pane h2").inner_text()
    screenshot(page, "data-db")

    page.click("#tabs a[data-tab=storage]")
    row = page.locator('#objects tr[data-key="browse/page.html"]')
    row.wait_for()
    assert "text/html" in row.inner_text()
    assert row.locator("a[download]").count() == 1  # never rendered on the dashboard's origin
    row.locator("button").click()
    assert page.locator("tr.detail-row pre").inner_text() == hostile
    assert page.locator("main b, main img").count() == 0
    screenshot(page, "data-storage")


def test_the_runs_page_shows_every_kind_of_run(dash: HostProcess, page: Page) -> None:
    # By now this module's host holds completed, failed, cancelled, waiting and child runs.
    waiting = dash.start_run("approval", {"orderId": "o-screenshot"})
    dash.wait_status(waiting, "waiting_event")
    page.goto(dash.url + "/_platform/")
    page.wait_for_selector(_row(waiting))
    statuses = set(page.eval_on_selector_all("#rows tr", "trs => trs.map(tr => tr.dataset.status)"))
    assert {"completed", "failed", "cancelled", "waiting_event"} <= statuses
    child = page.locator("#rows tr", has_text="↳").first
    assert child.locator("td").nth(1).inner_text() == "↳ child"
    failed = page.locator('#rows tr[data-status="failed"] td.err').first.inner_text()
    assert failed.startswith("[charge] RuntimeError: ")
    screenshot(page, "runs")


@pytest.mark.slow
def test_the_dashboard_works_behind_a_token(chromium: Browser, tmp_path: Path) -> None:
    token = "s3cret-t0ken"
    with running(tmp_path, token=token) as host:
        run_id = host.start_run("approval", {"orderId": "t-1"})
        host.wait_status(run_id, "waiting_event")
        context = chromium.new_context()
        try:
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            assert page.goto(host.url + "/_platform/").status == 401  # type: ignore[union-attr]
            page.goto(f"{host.url}/_platform/?token={token}")
            page.wait_for_selector(_row(run_id))
            page.wait_for_selector("#live.on")
            later = host.start_run("pipeline", {"sleep": "1ms"})
            page.wait_for_selector(_row(later))  # live behind the token too
            page.click(f"{_row(run_id)} a")
            page.wait_for_url(re.compile(rf"/_platform/runs/{run_id}\?token={token}$"))
            page.wait_for_selector("#signal:not([hidden])")
            page.click("#signal-send")
            host.wait_status(run_id, "completed")
            page.click("nav a[data-nav=events]")
            page.wait_for_url(re.compile(rf"/_platform/events\?token={token}$"))
            page.wait_for_selector('#rows tr[data-t="workflow.run.completed"]')
            page.click("nav a[data-nav=data]")
            page.wait_for_selector("#names")
            assert not errors, errors
        finally:
            context.close()


@pytest.mark.slow
def test_the_header_says_which_process_is_the_worker(
    dash: HostProcess, page: Page, tmp_path: Path
) -> None:
    """On the worker it names itself; on a standby host on the same folder, the worker's pid."""
    assert dash.proc is not None
    page.goto(dash.url + "/_platform/")
    worker = f"worker · pid {dash.proc.pid}"
    page.wait_for_selector(f'#worker[data-role="worker"]:text-is("{worker}")')
    with running_host(dash.project, dash.data, tmp_path) as standby:
        standby.wait_for_log("standby: the worker on")
        page.goto(standby.url + "/_platform/workflows")
        said = f"standby · the worker is pid {dash.proc.pid}"
        page.wait_for_selector(f'#worker[data-role="standby"]:text-is("{said}")')
        screenshot(page, "standby-header")
