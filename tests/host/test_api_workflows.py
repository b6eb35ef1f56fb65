"""Workflows over HTTP against a real host: start, signal, runs, history, cancel, list, schedules."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.host.hosting import assert_error
from tests.support.waiting import wait_until

RUN_KEYS = {
    "runId",
    "workflowId",
    "status",
    "input",
    "output",
    "error",
    "attempt",
    "createdAt",
    "updatedAt",
    "completedAt",
    "parentRunId",
}


def start(http: httpx.Client, workflow: str, input: Any = None, **params: str) -> str:
    response = http.post(f"/api/workflows/{workflow}/start", json=input, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"runId"}, body
    run_id: str = body["runId"]
    return run_id


def run(http: httpx.Client, run_id: str) -> dict[str, Any]:
    response = http.get(f"/api/workflows/runs/{run_id}")
    assert response.status_code == 200, response.text
    record: dict[str, Any] = response.json()
    return record


def history(http: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    response = http.get(f"/api/workflows/runs/{run_id}/history")
    assert response.status_code == 200, response.text
    steps: list[dict[str, Any]] = response.json()
    return steps


def wait_status(http: httpx.Client, run_id: str, *statuses: str) -> dict[str, Any]:
    record: dict[str, Any] = wait_until(
        lambda: (r := run(http, run_id))["status"] in statuses and r
    )
    return record


def runs(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = http.get("/api/workflows/runs", params=params)
    assert response.status_code == 200, response.text
    records: list[dict[str, Any]] = response.json()
    return records


def test_start_runs_to_completion_and_the_record_is_camel_case(http: httpx.Client) -> None:
    before = int(time.time() * 1000)
    run_id = start(http, "echo", {"hello": "world", "n": [1, 2]})
    record = wait_status(http, run_id, "completed")
    assert set(record) == RUN_KEYS
    assert record["runId"] == run_id
    assert record["workflowId"] == "echo"
    assert record["input"] == {"hello": "world", "n": [1, 2]}
    assert record["output"] == {"hello": "world", "n": [1, 2]}
    assert record["error"] is None
    assert record["attempt"] == 1
    assert record["parentRunId"] is None
    assert before - 5000 <= record["createdAt"] <= record["updatedAt"] <= record["completedAt"]
    assert record["completedAt"] <= time.time() * 1000 + 1000
    [step] = history(http, run_id)
    assert step["name"] == "echo"
    assert step["kind"] == "run"
    assert step["status"] == "completed"
    assert step["output"] == {"hello": "world", "n": [1, 2]}
    assert step["error"] is None
    assert record["createdAt"] <= step["startedAt"] <= step["completedAt"]
    assert step["wakeAt"] is None


def test_start_without_a_body_gives_a_null_input(http: httpx.Client) -> None:
    response = http.post("/api/workflows/echo/start")
    assert response.status_code == 200
    record = wait_status(http, response.json()["runId"], "completed")
    assert record["input"] is None
    assert record["output"] is None


def test_a_caller_chosen_run_id_makes_start_idempotent(http: httpx.Client) -> None:
    first = start(http, "echo", {"once": True}, runId="order-42")
    assert first == "order-42"
    assert start(http, "echo", {"twice": True}, runId="order-42") == "order-42"
    record = wait_status(http, "order-42", "completed")
    assert record["input"] == {"once": True}
    assert [r["runId"] for r in runs(http, workflowId="echo", limit=1000)].count("order-42") == 1
    # the same run id for another workflow is a conflict, not a silent no-op
    assert_error(
        http.post("/api/workflows/sleepy/start", params={"runId": "order-42"}, json={}), 409, "echo"
    )
    assert "order-42" not in {r["runId"] for r in runs(http, workflowId="sleepy", limit=1000)}
    assert run(http, "order-42")["workflowId"] == "echo"


def test_sleep_parks_the_run_and_history_shows_the_wake_time(http: httpx.Client) -> None:
    run_id = start(http, "sleepy", {})
    record = wait_status(http, run_id, "completed")
    assert record["output"] == {"slept": True}
    [nap] = history(http, run_id)
    assert nap["name"] == "nap"
    assert nap["kind"] == "sleep"
    assert nap["status"] == "completed"
    assert nap["wakeAt"] >= nap["startedAt"] + 200
    assert record["completedAt"] >= nap["wakeAt"]


def test_signal_resumes_the_matching_waiter_only(http: httpx.Client) -> None:
    mine = start(http, "waiter", {"orderId": "o-1"})
    other = start(http, "waiter", {"orderId": "o-2"})
    wait_status(http, mine, "waiting_event")
    wait_status(http, other, "waiting_event")
    [step] = history(http, mine)
    assert step["kind"] == "wait_event"
    assert step["status"] == "pending"
    assert step["eventType"] == "order.approved"
    assert step["match"] == {"orderId": "o-1"}

    response = http.post(
        "/api/workflows/signal", json={"eventType": "order.approved", "payload": {"orderId": "o-9"}}
    )
    assert response.status_code == 200
    assert response.json() == {"count": 0}
    response = http.post(
        "/api/workflows/signal",
        json={"eventType": "order.approved", "payload": {"orderId": "o-1", "by": "ann"}},
    )
    assert response.json() == {"count": 1}
    assert wait_status(http, mine, "completed")["output"] == {
        "approved": {"orderId": "o-1", "by": "ann"}
    }
    assert run(http, other)["status"] == "waiting_event"
    assert http.post("/api/workflows/signal", json={"eventType": "unrelated"}).json() == {
        "count": 0
    }
    assert http.post(f"/api/workflows/runs/{other}/cancel").json() == {"cancelled": True}


def test_a_failing_workflow_ends_failed_with_its_error(http: httpx.Client) -> None:
    run_id = start(http, "failing", {})
    record = wait_status(http, run_id, "failed")
    assert record["output"] is None
    assert "boom" in str(record["error"])
    assert record["completedAt"] is not None
    [step] = history(http, run_id)
    assert step["name"] == "explode"
    assert step["status"] == "failed"
    assert "boom" in str(step["error"])


def test_cancel_a_parked_run(http: httpx.Client) -> None:
    run_id = start(http, "waiter", {"orderId": "to-cancel"})
    wait_status(http, run_id, "waiting_event")
    response = http.post(f"/api/workflows/runs/{run_id}/cancel")
    assert response.status_code == 200
    assert response.json() == {"cancelled": True}
    assert run(http, run_id)["status"] == "cancelled"
    assert http.post(f"/api/workflows/runs/{run_id}/cancel").json() == {"cancelled": False}
    # a completed run does not change either
    done = start(http, "echo", 1)
    wait_status(http, done, "completed")
    assert http.post(f"/api/workflows/runs/{done}/cancel").json() == {"cancelled": False}
    assert run(http, done)["status"] == "completed"


def test_unknown_runs_and_workflows_are_404(http: httpx.Client) -> None:
    before = runs(http, limit=1000)
    assert_error(http.post("/api/workflows/no-such-flow/start", json={}), 404, "no-such-flow")
    assert_error(http.get("/api/workflows/runs/no-such-run"), 404, "no-such-run")
    assert_error(http.get("/api/workflows/runs/no-such-run/history"), 404)
    assert_error(http.post("/api/workflows/runs/no-such-run/cancel"), 404)
    assert runs(http, limit=1000) == before


def test_list_filters_and_orders_newest_first(http: httpx.Client) -> None:
    ids = [start(http, "echo", {"i": i}) for i in range(3)]
    for run_id in ids:
        wait_status(http, run_id, "completed")
    listed = runs(http, workflowId="echo", limit=1000)
    assert all(r["workflowId"] == "echo" for r in listed)
    assert {*ids} <= {r["runId"] for r in listed}
    created = [r["createdAt"] for r in listed]
    assert created == sorted(created, reverse=True)
    assert [r["runId"] for r in listed if r["runId"] in ids] == list(reversed(ids))
    assert len(runs(http, workflowId="echo", limit=2)) == 2
    assert runs(http, workflowId="echo", limit=1)[0]["runId"] == ids[-1]
    completed = runs(http, status="completed", limit=1000)
    assert completed
    assert all(r["status"] == "completed" for r in completed)
    assert {*ids} <= {r["runId"] for r in completed}
    assert all(set(r) == RUN_KEYS for r in listed)
    assert runs(http, workflowId="no-such-flow") == []


def test_schedules_lists_every_cron_trigger(http: httpx.Client) -> None:
    response = http.get("/api/workflows/schedules")
    assert response.status_code == 200
    [nightly] = response.json()
    assert nightly["workflowId"] == "nightly"
    assert nightly["cron"] == "0 0 3 * * *"
    assert nightly["lastAt"] is None
    now = datetime.now(UTC)
    expected = now.replace(hour=3, minute=0, second=0, microsecond=0)
    if expected <= now:
        expected += timedelta(days=1)
    assert nightly["nextAt"] == int(expected.timestamp() * 1000)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "needle"),
    [
        ("POST", "/api/workflows/echo/start", b"{bad", 400, "malformed JSON"),
        ("POST", "/api/workflows/echo/start", b"NaN", 400, "malformed JSON"),
        ("POST", "/api/workflows/echo/start?runId=a%2Fb", b"{}", 400, "run id"),
        ("POST", "/api/workflows/signal", b"{bad", 400, "malformed JSON"),
        ("POST", "/api/workflows/signal", b"[]", 400, "object"),
        ("POST", "/api/workflows/signal", b"{}", 400, "eventType"),
        ("POST", "/api/workflows/signal", b'{"eventType": ""}', 400, "eventType"),
        ("POST", "/api/workflows/signal", b'{"eventType": 5}', 400, "eventType"),
        ("POST", "/api/workflows/signal", b"", 400, ""),
        ("GET", "/api/workflows/runs?limit=abc", b"", 400, "limit"),
        ("GET", "/api/workflows/runs?limit=0", b"", 400, "limit"),
        ("GET", "/api/workflows/runs?status=asleep", b"", 400, "asleep"),
        ("GET", "/api/workflows/echo/start", b"", 405, "GET"),
        ("GET", "/api/workflows/signal", b"", 405, "GET"),
        ("POST", "/api/workflows/runs", b"", 405, "POST"),
        ("DELETE", "/api/workflows/runs/x", b"", 405, "DELETE"),
        ("GET", "/api/workflows/runs/x/cancel", b"", 405, "GET"),
        ("POST", "/api/workflows/schedules", b"", 405, "POST"),
        ("GET", "/api/workflows", b"", 404, "/api/workflows"),
    ],
)
def test_client_mistakes_are_4xx_and_start_nothing(
    http: httpx.Client, method: str, path: str, body: bytes, status: int, needle: str
) -> None:
    before = runs(http, limit=1000)
    assert_error(http.request(method, path, content=body), status, needle)
    assert runs(http, limit=1000) == before


def test_runs_list_pages_with_before(http: httpx.Client) -> None:
    ids = [http.post("/api/workflows/echo/start", json={"i": i}).json()["runId"] for i in range(5)]
    first = http.get("/api/workflows/runs", params={"workflowId": "echo", "limit": 2}).json()
    assert len(first) == 2
    rest = http.get(
        "/api/workflows/runs",
        params={"workflowId": "echo", "limit": 100, "before": first[-1]["runId"]},
    ).json()
    seen = [r["runId"] for r in first + rest]
    assert len(seen) == len(set(seen))
    assert set(ids) <= set(seen)
