"""Reading the dashboard right: who a failure is blamed on, times that read, counts that match
the list, reruns that say what they replayed, a cancel that is no error, keyboard and landmark
basics, and a token with URL-special characters. In headless Chromium against a real host."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

from tests.host.dashboard.support import running, screenshot, tally
from tests.support.hostproc import HostProcess
from tests.support.waiting import wait_until

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


def _row(run_id: str) -> str:
    return f'tr[data-run-id="{run_id}"]'


@pytest.mark.slow
def test_a_failure_outside_any_step_is_not_blamed_on_the_last_step(
    dash: HostProcess, page: Page
) -> None:
    run_id = dash.start_run("lookup", {"orderId": "ord_missing"})
    failed = dash.wait_status(run_id, "failed")
    assert failed["error"]["type"] == "LookupError"
    assert "step" not in failed["error"]

    page.goto(f"{dash.url}/_platform/runs/{run_id}")
    page.wait_for_selector("#error:not([hidden])")
    assert page.locator("#error h3").inner_text() == "Failed"
    assert page.locator("#error .error-step").count() == 0
    step = page.locator('li.step[data-step="load-order"]')
    assert step.get_attribute("data-status") == "completed"

    page.goto(f"{dash.url}/_platform/?workflow=lookup")
    cell = page.locator(_row(run_id) + " td.err")
    cell.wait_for()
    assert cell.inner_text() == "LookupError: no order 'ord_missing'"


def test_each_failed_attempt_shows_its_traceback_on_the_dashboard_only(
    dash: HostProcess, page: Page
) -> None:
    run_id = dash.start_run("flaky")
    failed = dash.wait_status(run_id, "failed")
    assert failed["error"] == {"type": "KeyError", "message": "'missing price'"}
    # The public API and the event stream carry no traceback; the dashboard's endpoint does.
    public = [
        dash.http.get(f"/api/workflows/runs/{run_id}").text,
        dash.http.get(f"/api/workflows/runs/{run_id}/history").text,
        dash.http.get("/api/events", params={"r": "workflow", "limit": 1000}).text,
    ]
    assert all("Traceback" not in text and "_charge_card" not in text for text in public)
    detail = dash.http.get(f"/_platform/api/runs/{run_id}").json()
    assert [(f["attempt"], f["type"], f.get("step")) for f in detail["failures"]] == [
        (1, "ConnectionError", "charge"),
        (2, "KeyError", None),
    ]

    page.goto(f"{dash.url}/_platform/runs/{run_id}")
    page.wait_for_selector("#attempts:not([hidden])")
    attempts = page.locator("li.attempt")
    assert [attempts.nth(i).get_attribute("data-attempt") for i in range(2)] == ["2", "1"]
    latest, first = attempts.nth(0), attempts.nth(1)
    assert "outside any step" in latest.locator(".title").inner_text()
    assert latest.locator(".what").inner_text() == "KeyError: 'missing price'"
    assert latest.locator("details").get_attribute("open") is not None  # the latest, unfolded
    assert 'raise KeyError("missing price")' in latest.locator("pre").inner_text()
    assert first.locator("details").get_attribute("open") is None
    first.locator("summary").click()
    trace = first.locator("pre").inner_text()
    assert "in flaky" in trace and "in _charge_card" in trace
    assert trace.rstrip().endswith("ConnectionError: card network down on attempt 1")
    assert "platform_shim" not in trace  # only the user's frames
    assert "at step charge" in first.locator(".title").inner_text()
    screenshot(page, "run-attempts")


def test_times_read_as_ages_with_the_full_time_on_hover(dash: HostProcess, page: Page) -> None:
    run_id = dash.start_run("pipeline", {"sleep": "1ms"})
    dash.wait_status(run_id, "completed")
    page.goto(dash.url + "/_platform/")
    created = page.locator(_row(run_id) + " td.time time")
    created.wait_for()
    assert re.fullmatch(r"just now|\d+s ago|\dm ago", created.inner_text())
    full = created.get_attribute("title") or ""
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} UTC[+-]\d\d:\d\d", full), full
    # Never cut off: the text fits its cell.
    assert created.evaluate("t => t.parentElement.scrollWidth <= t.parentElement.clientWidth")

    page.goto(dash.url + "/_platform/events")
    when = page.locator("#rows tr td.time time").first
    when.wait_for()
    assert when.inner_text().endswith("ago") or when.inner_text() == "just now"
    assert when.evaluate("t => t.parentElement.scrollWidth <= t.parentElement.clientWidth")


def test_the_counts_follow_the_workflow_filter(dash: HostProcess, page: Page) -> None:
    for _ in range(2):
        dash.wait_status(dash.start_run("broken", {"message": "no"}), "failed")
    dash.wait_status(dash.start_run("pipeline", {"sleep": "1ms"}), "completed")
    page.goto(dash.url + "/_platform/?workflow=broken")

    def shown() -> dict[str, int]:
        chips = page.locator(".count")
        return {
            str(chips.nth(i).get_attribute("data-status")): int(
                re.sub(r"\D", "", chips.nth(i).locator(".n").inner_text())
            )
            for i in range(chips.count())
        }

    def matches() -> bool:
        broken = dash.http.get("/api/workflows/runs", params={"workflowId": "broken"}).json()
        by_status = {s: sum(r["status"] == s for r in broken) for s in ("failed", "completed")}
        numbers = shown()
        return bool(numbers) and (
            numbers["all"] == len(broken)
            and numbers["failed"] == by_status["failed"]
            and numbers["completed"] == by_status["completed"] == 0
        )

    wait_until(matches, what="the counts of the 'broken' workflow only")
    assert "broken" in page.locator('.count[data-status="all"] .label').inner_text()
    assert page.locator('.count[data-status="all"]').get_attribute("aria-pressed") == "true"
    page.click('.count[data-status="failed"]')
    page.wait_for_selector('.count[data-status="failed"][aria-pressed="true"]')
    assert page.locator('.count[data-status="all"]').get_attribute("aria-pressed") == "false"


def test_a_rerun_marks_what_it_replayed_and_keeps_every_bar_in_its_box(
    dash: HostProcess, page: Page
) -> None:
    original = dash.start_run("pipeline", {"sleep": "20ms"})
    dash.wait_status(original, "completed")
    page.wait_for_timeout(1500)  # the rerun's span is then far shorter than its age
    rerun = dash.http.post(
        f"/api/workflows/runs/{original}/rerun", json={"fromStep": "transform"}
    ).json()["runId"]
    dash.wait_status(rerun, "completed")
    page.goto(f"{dash.url}/_platform/runs/{rerun}")
    page.wait_for_selector('li.step[data-step="publish"][data-status="completed"]')

    replayed = page.eval_on_selector_all(
        "li.step[data-replayed=true]", "items => items.map(li => li.dataset.step)"
    )
    assert replayed == ["prepare", "nap"]
    for name in ("prepare", "nap"):
        item = page.locator(f'li.step[data-step="{name}"]')
        assert item.locator(".badge.replayed").inner_text() == "replayed"
        assert "replayed" in item.locator(".timing").inner_text()
    for name in ("transform", "publish"):
        item = page.locator(f'li.step[data-step="{name}"]')
        assert item.locator(".badge.replayed").count() == 0
        assert item.locator(".timing").inner_text().startswith("+")
    inside = page.eval_on_selector_all(
        ".bar",
        """bars => bars.every(bar => [...bar.children].every(fill => {
            const a = bar.getBoundingClientRect(), b = fill.getBoundingClientRect();
            return b.left >= a.left - 0.5 && b.right <= a.right + 0.5;
        }))""",
    )
    assert inside is True
    screenshot(page, "run-rerun")


def test_event_rows_unfold_from_the_keyboard(dash: HostProcess, page: Page) -> None:
    answer = dash.http.post("/api/events", json={"t": "kbd.test", "data": {"key": "Enter"}})
    event_id = answer.json()["id"]
    page.goto(dash.url + "/_platform/events")
    toggle = page.locator(f'#rows tr[data-id="{event_id}"] button.expand')
    toggle.wait_for()
    toggle.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("tr.detail-row .jv-tree")
    assert toggle.get_attribute("aria-expanded") == "true"
    assert '"kbd.test"' in page.locator("tr.detail-row").inner_text()
    page.keyboard.press("Space")
    page.wait_for_function("() => !document.querySelector('tr.detail-row')")
    assert toggle.get_attribute("aria-expanded") == "false"


@pytest.mark.slow
def test_every_page_has_one_h1_and_marks_where_you_are(dash: HostProcess, page: Page) -> None:
    run_id = dash.start_run("pipeline", {"sleep": "1ms"})
    dash.wait_status(run_id, "completed")
    for path, nav in [
        ("/_platform/", "runs"),
        ("/_platform/workflows", "workflows"),
        ("/_platform/events", "events"),
        ("/_platform/data", "data"),
        (f"/_platform/runs/{run_id}", "runs"),
    ]:
        page.goto(dash.url + path)
        page.wait_for_selector("h1")
        assert page.locator("h1").count() == 1, path
        current = page.locator("header nav a[aria-current=page]")
        assert current.count() == 1, path
        assert current.get_attribute("data-nav") == nav
    page.goto(dash.url + "/_platform/data?tab=db")
    page.wait_for_selector('#tabs a[data-tab="db"][aria-current="page"]')
    assert page.locator("#tabs a[aria-current]").count() == 1


def test_the_dashboard_works_behind_a_token_with_url_special_characters(
    chromium: Browser, tmp_path: Path
) -> None:
    token = "a+b/c%d&e=f g"
    with running(tmp_path, token=token) as host:
        run_id = host.start_run("approval", {"orderId": "sp-1"})
        host.wait_status(run_id, "waiting_event")
        context = chromium.new_context()
        try:
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.goto(f"{host.url}/_platform/?token={quote(token, safe='')}")
            page.wait_for_selector(_row(run_id))  # the API took the Bearer header
            page.wait_for_selector("#live.on")  # and so did the stream
            later = host.start_run("pipeline", {"sleep": "1ms"})
            page.wait_for_selector(_row(later))
            page.click(f"{_row(run_id)} a")
            page.wait_for_selector("#signal:not([hidden])")
            page.click("#signal-send")
            host.wait_status(run_id, "completed")
            page.wait_for_selector('#status .badge[data-status="completed"]')
            page.click("nav a[data-nav=events]")
            page.wait_for_selector('#rows tr[data-t="workflow.run.completed"]')
            assert not errors, errors
        finally:
            context.close()


@pytest.mark.slow
def test_json_folds_and_unfolds_and_copies(chromium: Browser, dash: HostProcess) -> None:
    deep = {
        "customer": {"id": "c-1", "address": {"city": "Lyon", "lines": ["1 rue", "2e étage"]}},
        "items": [{"sku": f"s-{i}", "qty": i} for i in range(60)],
        "note": '<b>not bold</b> "quoted"',
        "paid": True,
        "coupon": None,
    }
    run_id = dash.start_run("child", {"n": 1, "order": deep})
    dash.wait_status(run_id, "completed")
    context = chromium.new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=dash.url)
    try:
        page = context.new_page()
        page.goto(f"{dash.url}/_platform/runs/{run_id}")
        tree = page.locator("#input .jv-tree")
        tree.wait_for()
        order = tree.locator("details.jv-node").nth(1)  # the root, then "order"
        assert order.locator("> summary .jv-key").inner_text() == '"order": '
        # Deeper levels and long arrays start folded, with a count.
        items = tree.locator("details.jv-node", has_text='"items"').last
        assert items.get_attribute("open") is None
        assert "60 items" in items.locator("> summary").inner_text()
        customer = tree.locator("details.jv-node", has_text='"customer"').last
        assert customer.get_attribute("open") is None
        customer.locator("> summary").click()
        address = tree.locator("details.jv-node", has_text='"address"').last
        assert address.get_attribute("open") is None
        address.locator("> summary").click()
        assert address.get_attribute("open") is not None
        assert '"Lyon"' in address.inner_text()
        assert tree.locator(".jv-string", has_text="not bold").count() == 1
        assert page.locator("#input b").count() == 0  # text, never markup
        # Unfolded, its text is the JSON itself.
        page.locator("#input .jv-tools button", has_text="Expand all").click()
        assert json.loads(tree.inner_text()) == {"n": 1, "order": deep}
        page.locator("#input .jv-tools button", has_text="Collapse all").click()
        assert tree.locator("details[open]").count() == 1  # the root stays open
        # A run refreshes often; what the user folded stays folded.
        page.wait_for_timeout(2500)
        assert tree.locator("details[open]").count() == 1
        page.locator("#input .jv-tools button.copy").click()
        copied = page.evaluate("navigator.clipboard.readText()")
        assert json.loads(copied) == {"n": 1, "order": deep}
        screenshot(page, "json-viewer")
    finally:
        context.close()


def test_rerun_with_edited_input_asks_and_runs_every_step_again(
    dash: HostProcess, page: Page, tmp_path: Path
) -> None:
    log = tmp_path / "steps.log"
    original = dash.start_run("pipeline", {"log": str(log), "sleep": "1ms", "items": 2})
    dash.wait_status(original, "completed")
    page.goto(f"{dash.url}/_platform/runs/{original}")
    page.wait_for_selector('li.step[data-step="publish"]')
    page.click("#rerun-input")
    dialog = page.locator("dialog#confirm")
    dialog.wait_for()
    assert json.loads(page.input_value("#rerun-input-json"))["items"] == 2
    assert dialog.locator(".again code").all_inner_texts() == [
        "prepare",
        "nap",
        "transform",
        "publish",
    ]
    page.fill("#rerun-input-json", "{not json")
    page.click("#confirm-ok")
    assert "not valid JSON" in dialog.locator(".dialog-problem").inner_text()
    page.fill("#rerun-input-json", json.dumps({"log": str(log), "sleep": "1ms", "items": 7}))
    page.click("#confirm-ok")
    page.wait_for_url(re.compile(r"/_platform/runs/(?!" + re.escape(original) + r"$)[^/?]+$"))
    rerun = page.url.rsplit("/", 1)[1]
    assert dash.wait_status(rerun, "completed")["output"] == {"total": 70}
    assert tally(log) == {"prepare": 2, "transform": 2, "publish": 2}
