"""Searching runs: by id (exact or prefix), by text in input/output/error, within a time range;
bounded scans with a cursor; and the search box of the runs page in a real browser."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from host.dashboard.search import SCAN_MAX
from tests.host.dashboard.support import CRAFTED_RUNS
from tests.support.hostproc import HostProcess

if TYPE_CHECKING:
    from playwright.sync_api import Page


def _search(host: HostProcess, **params: Any) -> dict[str, Any]:
    answer = host.http.get("/_platform/api/runs/search", params=params)
    assert answer.status_code == 200, answer.text
    value: dict[str, Any] = answer.json()
    return value


def test_an_exact_id_is_found_at_once(crafted: tuple[HostProcess, list[dict[str, Any]]]) -> None:
    host, runs = crafted
    oldest = runs[-1]["runId"]
    found = _search(host, q=oldest)
    assert [r["runId"] for r in found["runs"]] == [oldest]
    assert found["exact"] is True and found["scanned"] == 1


def test_a_prefix_finds_every_run_it_starts(
    crafted: tuple[HostProcess, list[dict[str, Any]]],
) -> None:
    host, runs = crafted
    prefix = runs[3]["runId"][:-3]
    expected = [r["runId"] for r in runs if r["runId"].startswith(prefix)]
    found = _search(host, q=prefix, limit=500)
    assert [r["runId"] for r in found["runs"]] == expected[: len(found["runs"])]
    assert runs[3]["runId"] in [r["runId"] for r in found["runs"]]


def test_text_in_input_output_or_error_and_a_bounded_scan_with_a_cursor(
    crafted: tuple[HostProcess, list[dict[str, Any]]],
) -> None:
    host, runs = crafted
    # The crafted runs' inputs are {"n": i}; failed ones say "boom <i>".
    found = _search(host, q="BOOM 24")  # case-insensitive; in the newest 100 runs
    messages = {r["error"]["message"] for r in found["runs"]}
    assert messages and all(m.startswith("boom 24") for m in messages)
    # Over the whole ledger, page after page: each answer reads at most SCAN_MAX runs.
    seen: list[str] = []
    cursor = None
    scans = []
    while True:
        params: dict[str, Any] = {"q": '"n": 12', "limit": 500}
        if cursor:
            params["before"] = cursor
        answer = _search(host, **params)
        scans.append(answer["scanned"])
        seen += [r["runId"] for r in answer["runs"]]
        cursor = answer["next"]
        if not cursor:
            break
    assert max(scans) <= SCAN_MAX and sum(scans) == CRAFTED_RUNS
    n_of = {r["runId"]: CRAFTED_RUNS - 1 - i for i, r in enumerate(runs)}
    expected = [r["runId"] for r in runs if str(n_of[r["runId"]]).startswith("12")]
    assert seen == expected


def test_a_time_range_stops_the_scan_at_its_start(
    crafted: tuple[HostProcess, list[dict[str, Any]]],
) -> None:
    host, runs = crafted
    created = {
        r["runId"]: host.http.get(f"/api/workflows/runs/{r['runId']}").json()["createdAt"]
        for r in (runs[100], runs[140])
    }
    start, end = created[runs[140]["runId"]], created[runs[100]["runId"]]
    found = _search(host, **{"from": start, "to": end, "limit": 500})
    assert [r["runId"] for r in found["runs"]] == [r["runId"] for r in runs[100:141]]
    assert found["next"] is None and found["scanned"] <= 142


def test_bad_searches_are_400s(crafted: tuple[HostProcess, list[dict[str, Any]]]) -> None:
    api = crafted[0].http
    for params, words in [
        ({"from": "yesterday"}, "epoch milliseconds"),
        ({"from": "20", "to": "10"}, "after"),
        ({"q": "x" * 201}, "at most 200"),
        ({"before": "nope"}, "names no run"),
        ({"limit": "0"}, "limit"),
    ]:
        answer = api.get("/_platform/api/runs/search", params=params)
        assert answer.status_code == 400, (params, answer.text)
        assert words in answer.json()["detail"]


@pytest.mark.slow
def test_the_runs_page_searches_from_its_box(dash: HostProcess, page: Page) -> None:
    wanted = dash.start_run("pipeline", {"sleep": "1ms", "customer": "Zoë Quartermain"})
    other = dash.start_run("pipeline", {"sleep": "1ms", "customer": "someone else"})
    dash.wait_status(wanted, "completed")
    dash.wait_status(other, "completed")
    page.goto(dash.url + "/_platform/")
    page.wait_for_selector(f'tr[data-run-id="{other}"]')
    page.fill("#q", "quartermain")
    page.press("#q", "Enter")
    page.wait_for_function(
        "id => [...document.querySelectorAll('#rows tr')].map(tr => tr.dataset.runId).join() === id",
        arg=wanted,
    )
    assert "q=quartermain" in page.url
    assert re.search(r"1 match in the newest \d+ runs searched", page.inner_text("#summary"))
    # The URL alone reproduces it; a run id prefix works too.
    page.goto(f"{dash.url}/_platform/?q={other[:-2]}")
    page.wait_for_selector(f'tr[data-run-id="{other}"]')
    assert page.input_value("#q") == other[:-2]
    page.click("#search-clear")
    page.wait_for_selector(f'tr[data-run-id="{wanted}"]')
    assert "q=" not in page.url


def test_a_search_with_few_matches_reads_on_through_older_runs(
    crafted: tuple[HostProcess, list[dict[str, Any]]], page: Page
) -> None:
    host, runs = crafted
    oldest = runs[-1]["runId"]  # input {"n": 0}, 2,500 runs down: three scans of 1,000
    page.goto(host.url + "/_platform/?q=" + quote('"n": 0}'))
    page.wait_for_selector(f'tr[data-run-id="{oldest}"]')
    assert page.locator("#rows tr").count() == 1
    page.wait_for_function("() => document.querySelector('#older').hidden")
    assert "newest 2,500 runs searched" in page.inner_text("#summary")
