"""The dashboard's pages and JSON endpoints over HTTP, without a browser.

``crafted`` is a host started on a data folder holding 2,500 finished runs written straight into
``runs.jsonl``: enough that listing them has to page, and that a page walk which skipped or
repeated a run would show.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from tests.host.dashboard.support import CRAFTED_RUNS, REPO, running, tally
from tests.support.hostproc import HostProcess


def _error(response: httpx.Response, status: int, needle: str = "") -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert needle in body["detail"], body


def _walk(api: httpx.Client, limit: int, **filters: str) -> list[dict[str, Any]]:
    """Every page of /_platform/api/runs, following ``next``."""
    seen: list[dict[str, Any]] = []
    before = None
    for _ in range(CRAFTED_RUNS + 2):
        params: dict[str, Any] = {"limit": limit, **filters}
        if before is not None:
            params["before"] = before
        page = api.get("/_platform/api/runs", params=params).json()
        assert len(page["runs"]) <= limit
        seen += page["runs"]
        before = page["next"]
        if before is None:
            return seen
        assert before == page["runs"][-1]["runId"]
    raise AssertionError("the pages never ended")


# ------------------------------------------------------------------------------- runs


def test_pages_walk_every_run_once_newest_first(
    crafted: tuple[HostProcess, list[dict[str, Any]]],
) -> None:
    host, runs = crafted
    seen = _walk(host.http, 200)
    assert [r["runId"] for r in seen] == [r["runId"] for r in runs]
    assert len(seen) == CRAFTED_RUNS
    assert [r["createdAt"] for r in seen] == sorted((r["createdAt"] for r in seen), reverse=True)
    # Summaries only: a page never carries inputs or outputs.
    assert all("input" not in r and "output" not in r for r in seen)
    failed = next(r for r in seen if r["status"] == "failed")
    assert failed["error"]["step"] == "prepare"


def test_filters_page_too(crafted: tuple[HostProcess, list[dict[str, Any]]]) -> None:
    host, runs = crafted
    wanted = [r["runId"] for r in runs if r["status"] == "failed" and r["workflowId"] == "approval"]
    seen = _walk(host.http, 37, status="failed", workflowId="approval")
    assert [r["runId"] for r in seen] == wanted
    assert wanted  # the crafted ledger has some
    by_status = _walk(host.http, 500, status="cancelled")
    assert [r["runId"] for r in by_status] == [
        r["runId"] for r in runs if r["status"] == "cancelled"
    ]


def test_a_default_page_is_small(crafted: tuple[HostProcess, list[dict[str, Any]]]) -> None:
    host, runs = crafted
    response = host.http.get("/_platform/api/runs")
    page = response.json()
    assert len(page["runs"]) == 50
    assert page["next"] == runs[49]["runId"]
    assert len(response.content) < 20_000


def test_counts_and_workflows(crafted: tuple[HostProcess, list[dict[str, Any]]]) -> None:
    host, runs = crafted
    overview = host.http.get("/_platform/api/overview").json()
    expected = Counter(r["status"] for r in runs)
    assert {k: v for k, v in overview["counts"].items() if v} == dict(expected)
    assert set(overview["counts"]) == {
        "queued",
        "running",
        "sleeping",
        "waiting_event",
        "completed",
        "failed",
        "cancelled",
    }
    assert overview["total"] == CRAFTED_RUNS
    assert overview["workflows"] == [
        "approval",
        "broken",
        "child",
        "flaky",
        "greeter",
        "lookup",
        "nightly",
        "parent",
        "pipeline",
    ]
    assert isinstance(overview["now"], int)
    for workflow_id in ("pipeline", "approval"):
        mine = host.http.get("/_platform/api/overview", params={"workflowId": workflow_id}).json()
        expected = Counter(r["status"] for r in runs if r["workflowId"] == workflow_id)
        assert {k: v for k, v in mine["counts"].items() if v} == dict(expected)
        assert mine["total"] == CRAFTED_RUNS // 2
    nobody = host.http.get("/_platform/api/overview", params={"workflowId": "nobody"}).json()
    assert nobody["total"] == 0


def test_bad_page_requests_are_400s(crafted: tuple[HostProcess, list[dict[str, Any]]]) -> None:
    api = crafted[0].http
    for limit in ("0", "501", "many", "-3"):
        _error(api.get("/_platform/api/runs", params={"limit": limit}), 400, "limit")
    _error(api.get("/_platform/api/runs", params={"before": "nope"}), 400, "'before' names no run")
    _error(api.get("/_platform/api/runs", params={"status": "asleep"}), 400, "asleep")
    _error(api.post("/_platform/api/runs"), 405)


def test_one_run_in_full(crafted: tuple[HostProcess, list[dict[str, Any]]]) -> None:
    host, runs = crafted
    run_id = runs[0]["runId"]
    detail = host.http.get(f"/_platform/api/runs/{run_id}").json()
    assert detail["run"]["runId"] == run_id
    assert detail["run"]["input"] == {"n": CRAFTED_RUNS - 1}
    assert [s["name"] for s in detail["steps"]] == ["prepare"]
    assert detail["stepCount"] == 1
    assert detail["rerunOf"] is None
    assert detail["children"] == {}
    _error(host.http.get("/_platform/api/runs/no-such-run"), 404, "no-such-run")


def test_a_rerun_and_a_child_are_linked(dash: HostProcess) -> None:
    parent = dash.start_run("parent", {"n": 2})
    dash.wait_status(parent, "completed")
    detail = dash.http.get(f"/_platform/api/runs/{parent}").json()
    (child,) = detail["children"]
    assert detail["children"][child] == {"workflowId": "child", "status": "completed"}
    rerun = dash.http.post(f"/api/workflows/runs/{parent}/rerun", json={"fromStep": "wrap"}).json()[
        "runId"
    ]
    dash.wait_status(rerun, "completed")
    again = dash.http.get(f"/_platform/api/runs/{rerun}").json()
    assert again["rerunOf"] == {"runId": parent, "fromStep": "wrap"}
    assert list(again["children"]) == [child]  # the invoke replayed: no second child


def test_large_outputs_are_previews(dash: HostProcess) -> None:
    big = "x" * 200_000
    run_id = dash.start_run("pipeline", {"sleep": "1ms", "pad": big})
    dash.wait_status(run_id, "completed")
    detail = dash.http.get(f"/_platform/api/runs/{run_id}").json()
    assert detail["run"]["inputTruncated"] > 200_000
    assert isinstance(detail["run"]["input"], str)
    assert len(detail["run"]["input"]) <= 4096
    assert dash.run(run_id)["input"]["pad"] == big  # the API itself still gives it whole


# ------------------------------------------------------------------------------- data


def test_kv_namespaces_and_keys(dash: HostProcess) -> None:
    api = dash.http
    for i in range(5):
        assert api.put(f"/api/kv/listing-ns/k{i}", json={"i": i}).status_code == 200
    api.put("/api/kv/listing-ns/big", json="y" * 100_000)
    spaces = api.get("/_platform/api/kv").json()
    assert {"name": "listing-ns", "keys": 6} in spaces["items"]
    assert spaces["truncated"] is False

    first = api.get(
        "/_platform/api/kv/keys", params={"ns": "listing-ns", "prefix": "k", "limit": 3}
    ).json()
    assert [k["name"] for k in first["keys"]] == ["k0", "k1", "k2"]
    assert first["keys"][0]["value"] == {"i": 0}
    rest = api.get(
        "/_platform/api/kv/keys",
        params={"ns": "listing-ns", "prefix": "k", "cursor": first["cursor"]},
    ).json()
    assert [k["name"] for k in rest["keys"]] == ["k3", "k4"]
    assert rest["cursor"] is None
    big = api.get("/_platform/api/kv/keys", params={"ns": "listing-ns", "prefix": "big"}).json()[
        "keys"
    ][0]
    assert big["truncated"] == 100_002
    assert len(big["value"]) == 4096

    _error(api.get("/_platform/api/kv/keys"), 400, "'ns' is required")
    _error(
        api.get("/_platform/api/kv/keys", params={"ns": "listing-ns", "limit": "501"}), 400, "limit"
    )


def test_collections_and_documents(dash: HostProcess) -> None:
    api = dash.http
    for i in range(7):
        api.put("/api/db/listing-coll", json={"_id": f"d{i}", "n": i})
    colls = api.get("/_platform/api/db").json()["items"]
    assert {"name": "listing-coll", "documents": 7, "indexes": 1} in colls

    page = api.get(
        "/_platform/api/db/docs", params={"coll": "listing-coll", "limit": 3, "skip": 2}
    ).json()
    assert page["total"] == 7
    assert [d["id"] for d in page["docs"]] == ["d2", "d3", "d4"]
    assert page["docs"][0]["doc"]["n"] == 2
    found = api.get(
        "/_platform/api/db/docs", params={"coll": "listing-coll", "filter": '{"n": {"$gte": 5}}'}
    ).json()
    assert found["total"] == 2
    assert [d["id"] for d in found["docs"]] == ["d5", "d6"]
    empty = api.get("/_platform/api/db/docs", params={"coll": "no-such-coll"}).json()
    assert empty == {"docs": [], "total": 0}

    _error(
        api.get("/_platform/api/db/docs", params={"coll": "listing-coll", "filter": "{bad"}),
        400,
        "not valid JSON",
    )
    _error(
        api.get("/_platform/api/db/docs", params={"coll": "listing-coll", "filter": "[1]"}),
        400,
        "JSON object",
    )
    _error(
        api.get(
            "/_platform/api/db/docs",
            params={"coll": "listing-coll", "filter": '{"n": {"$near": 1}}'},
        ),
        400,
        "$near",
    )
    _error(
        api.get("/_platform/api/db/docs", params={"coll": "listing-coll", "skip": "-1"}),
        400,
        "skip",
    )
    _error(api.get("/_platform/api/db/docs"), 400, "'coll' is required")


def test_stored_objects(dash: HostProcess) -> None:
    api = dash.http
    for name in ("c", "a", "e", "b", "d"):
        api.put(
            f"/api/storage/listing/{name}.txt",
            content=f"object {name}".encode(),
            headers={"Content-Type": "text/plain"},
        )
    api.put(
        "/api/storage/listing/z.bin",
        content=bytes(range(256)),
        headers={"Content-Type": "application/octet-stream"},
    )
    first = api.get("/_platform/api/storage", params={"prefix": "listing/", "limit": 2}).json()
    assert [o["key"] for o in first["items"]] == ["listing/a.txt", "listing/b.txt"]
    assert first["items"][0]["size"] == 8
    assert first["items"][0]["contentType"] == "text/plain"
    keys = [o["key"] for o in first["items"]]
    after = first["next"]
    while after:
        page = api.get(
            "/_platform/api/storage", params={"prefix": "listing/", "limit": 2, "after": after}
        ).json()
        keys += [o["key"] for o in page["items"]]
        after = page["next"]
    assert keys == [f"listing/{n}.txt" for n in "abcde"] + ["listing/z.bin"]

    text = api.get("/_platform/api/storage/preview", params={"key": "listing/c.txt"}).json()
    assert text == {
        "key": "listing/c.txt",
        "size": 8,
        "contentType": "text/plain",
        "text": "object c",
        "truncated": False,
    }
    binary = api.get("/_platform/api/storage/preview", params={"key": "listing/z.bin"}).json()
    assert binary["text"] is None
    assert binary["size"] == 256
    _error(
        api.get("/_platform/api/storage/preview", params={"key": "listing/nope"}),
        404,
        "listing/nope",
    )
    # A key no object can have is named as the mistake, as the storage API does.
    _error(
        api.get("/_platform/api/storage/preview", params={"key": "listing/../c.txt"}),
        400,
        "'..' segment",
    )


# ------------------------------------------------------------------------- pages and files


def test_pages_and_their_files(dash: HostProcess) -> None:
    api = dash.http
    redirect = api.get("/_platform", follow_redirects=False)
    assert redirect.status_code == 308
    assert redirect.headers["location"] == "/_platform/"
    for path in ("/_platform/", "/_platform/events", "/_platform/data"):
        page = api.get(path)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["referrer-policy"] == "no-referrer"
        assert "{{token}}" not in page.text
        assert 'src="/_platform/static/common.js"' in page.text
    assert api.get("/_platform/runs/nope").status_code == 404
    assert api.get("/_platform/static/dashboard.css").headers["content-type"].startswith("text/css")
    assert (
        api.get("/_platform/static/runs.js").headers["content-type"].startswith("text/javascript")
    )
    _error(api.get("/_platform/static/nope.js"), 404, "nope.js")
    _error(api.get("/_platform/static/runs.html"), 404)  # pages are served at their own paths
    assert api.get("/_platform/static/%2e%2e%2fpages.py").status_code == 404


def test_pages_carry_the_token_they_were_opened_with(tmp_path: Path) -> None:
    token = "tok'en-1"  # a quote a URL keeps as it is, and HTML must escape
    with running(tmp_path, token=token) as host:
        _error(httpx.get(host.url + "/_platform/"), 401)
        page = httpx.get(f"{host.url}/_platform/?token={token}")
        assert page.status_code == 200
        assert 'src="/_platform/static/common.js?token=tok&#x27;en-1"' in page.text
        assert token not in page.text  # only ever escaped
        assert httpx.get(f"{host.url}/_platform/static/common.js?token={token}").status_code == 200
        _error(httpx.get(f"{host.url}/_platform/static/common.js"), 401)
        # With the header (not a browser), no token is copied into the page.
        assert 'src="/_platform/static/common.js"' in host.http.get("/_platform/").text
        assert host.http.get("/_platform/api/overview").status_code == 200
        _error(httpx.get(host.url + "/_platform/api/overview"), 401)


# ---------------------------------------------------------------------------------- CLI


def test_rerun_with_the_cli_beside_a_running_host(dash: HostProcess, tmp_path: Path) -> None:
    log = tmp_path / "steps.log"
    original = dash.start_run("pipeline", {"log": str(log), "sleep": "1ms"})
    dash.wait_status(original, "completed")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "host", "runs", *args, "--data", str(dash.data)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )

    done = cli("rerun", original, "--from", "transform")
    assert done.returncode == 0, done.stderr
    rerun = done.stdout.strip()
    assert rerun
    assert rerun != original
    assert dash.wait_status(rerun, "completed")["output"] == {"total": 30}
    assert tally(log) == {"prepare": 1, "transform": 2, "publish": 2}

    wrong_step = cli("rerun", original, "--from", "nope")
    assert wrong_step.returncode == 2
    assert "no step 'nope'" in wrong_step.stderr
    assert "'transform'" in wrong_step.stderr
    wrong_run = cli("rerun", "no-such-run", "--from", "transform")
    assert wrong_run.returncode == 1
    assert "no-such-run" in wrong_run.stderr
