"""The example app (the repository's workflows/, events/, routes/) runs the seed's flows as shipped.

Each test loads the app the way the host does (``conftest.start_example_app``) on a fake clock,
drives one flow from its trigger (a document insert, a KV write, a cron tick, a stream event, an
HTTP request) and checks where it ends up; the seed's real durations (24 h, 7 d, 14 d) are
skipped with ``clock.advance``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from host.app import create_app
from host.config import HostConfig
from host.loader import Loader
from platform_shim.runtime import open_platform
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow
from tests.support.hostproc import cli, running_host
from tests.support.waiting import wait_until

from .conftest import REPO, ExampleApp, at, fast_options, start_example_app

HOUR = 3600 * 1000
DAY = 24 * HOUR


# The kit's platform fixture with no backoff between retries: deterministic and quick.
pytestmark = pytest.mark.platform(
    retry_backoff=lambda attempt: 0, handler_backoff=lambda attempt: 0
)


async def test_the_host_loads_every_seed_example(app: ExampleApp) -> None:
    assert app.worker.registry.ids() == [
        "fulfill-order",
        "invoice-builder",
        "nightly-reconcile",
        "nudge-followup",
        "onboarding",
        "onboarding-after-signup",
        "shipping",
    ]
    assert sorted(h.id for h in app.worker.handlers) == [
        "emails:deliver_emails",
        "invites:nudge_on_invite",
        "users:onboard_new_user",
    ]
    loader = Loader(REPO)
    loader.load_all(strict=True)
    assert [getattr(r, "path", None) for r in loader.routes()] == ["/chat", "/checkout"]
    onboarding = app.worker.registry.get("onboarding")
    assert onboarding is not None
    assert onboarding.retries == 5


# ------------------------------------------------------------------------------ onboarding


async def insert_user(app: ExampleApp, user_id: str, **fields: Any) -> None:
    await app.platform.database.insert_one("users", {"_id": user_id, **fields})
    await app.settle()


async def test_a_new_user_is_onboarded_and_the_survey_completes_it(app: ExampleApp) -> None:
    start = app.clock.now_ms()
    await insert_user(app, "u_123", name="Jane", email="jane@example.com")

    # events/users.py started onboarding, which welcomed Jane and parked on its 24 h sleep.
    run = await app.only_run("onboarding")
    assert run.input == {"userId": "u_123", "email": "jane@example.com"}
    assert run.status == "sleeping"
    steps = await app.history(run.run_id)
    assert list(steps) == ["fetch-user", "send-welcome", "grace-period"]
    assert steps["fetch-user"]["output"]["email"] == "jane@example.com"
    assert steps["grace-period"]["status"] == "pending"
    assert steps["grace-period"]["wakeAt"] == start + DAY
    assert await app.outbox() == [
        {"to": "jane@example.com", "template": "welcome", "name": "Jane", "enqueuedAt": start}
    ]

    await app.advance("23h")
    assert (await app.run(run.run_id)).status == "sleeping"
    await app.advance("1h")
    run = await app.only_run("onboarding")
    assert run.status == "waiting_event"
    assert (await app.history(run.run_id))["survey-reply"]["match"] == {"userId": "u_123"}

    # Someone else's survey does not resume Jane's run; hers does.
    send_event = app.platform.workflows.send_event
    assert await send_event("survey.submitted", {"userId": "u_999"}) == 0
    assert await send_event("survey.submitted", {"userId": "u_123", "score": 9}) == 1
    await app.settle()
    run = await app.only_run("onboarding")
    assert run.status == "completed"
    assert run.output == {"completed": True, "surveyed": True}
    steps = await app.history(run.run_id)
    assert steps["survey-reply"]["output"] == {"userId": "u_123", "score": 9}


async def test_without_a_survey_onboarding_completes_after_seven_days(app: ExampleApp) -> None:
    await insert_user(app, "u_1", email="sam@example.com")
    await app.advance("24h")
    await app.advance("6d")
    assert (await app.only_run("onboarding")).status == "waiting_event"
    await app.advance("1d")
    run = await app.only_run("onboarding")
    assert run.status == "completed"
    assert run.output == {"completed": True, "surveyed": False}
    assert (await app.history(run.run_id))["survey-reply"]["output"] is None


async def test_a_survey_sent_during_the_grace_period_is_not_lost(app: ExampleApp) -> None:
    await insert_user(app, "u_2", email="kim@example.com")
    # Nobody waits yet (count 0), but the event is kept for the run created before it.
    assert await app.platform.workflows.send_event("survey.submitted", {"userId": "u_2"}) == 0
    await app.advance("24h")
    assert (await app.only_run("onboarding")).output == {"completed": True, "surveyed": True}


async def test_users_without_an_email_and_other_collections_start_nothing(app: ExampleApp) -> None:
    await insert_user(app, "u_3", name="No Mail")
    await app.platform.database.insert_one("customers", {"_id": "c_1", "email": "c@example.com"})
    await app.platform.database.update_one(
        "users", {"_id": "u_3"}, {"$set": {"email": "late@example.com"}}
    )
    await app.settle()
    assert await app.runs("onboarding") == []


async def test_the_seeds_one_day_timeout_would_end_onboarding_before_the_survey(
    tmp_path: Path,
) -> None:
    """Why workflows/onboarding.py deviates from the seed's ``timeoutSecs: 86400``: the deadline
    counts sleeps, so the run fails when its own 24 h grace period ends."""
    loader = Loader(REPO)
    loader.load_all(strict=True)
    handler = loader.registry.get("onboarding").handler  # type: ignore[union-attr]
    seed = define_workflow(
        {"id": "onboarding", "options": {"retries": 5, "timeoutSecs": 86400}}, handler
    )
    clock = FakeClock()
    async with open_platform(
        tmp_path / "seed", workflows=[seed], clock=clock, watch=False
    ) as platform:
        handle = await platform.workflows.start(
            "onboarding", {"userId": "u_1", "email": "a@example.com"}
        )
        await platform.settle()
        clock.advance("24h")
        await platform.settle()
        run = await handle.status()
        assert run is not None
        assert run.status == "failed"
        assert run.error is not None
        assert run.error["type"] == "WorkflowTimeout"


# ---------------------------------------------------------------------------- fulfillment

ORDER = {
    "_id": "ord_42",
    "customerId": "c_7",
    "total": 20.0,
    "shippingAddress": "1 Main St",
    "status": "pending",
}


async def start_fulfillment(app: ExampleApp) -> str:
    await app.platform.database.insert_one("orders", dict(ORDER))
    handle = await app.platform.workflows.start(
        "fulfill-order", {"orderId": "ord_42", "customerEmail": "jane@example.com"}
    )
    await app.settle()
    return handle.run_id


async def test_fulfill_order_ships_through_its_child_and_completes_on_delivery(
    app: ExampleApp,
) -> None:
    run_id = await start_fulfillment(app)
    assert (await app.run(run_id)).status == "waiting_event"
    steps = await app.history(run_id)
    assert list(steps) == [
        "load-order",
        "charge-payment",
        "arrange-shipment",
        "mark-shipped",
        "email-tracking",
        "delivery-confirmation",
    ]
    charge = steps["charge-payment"]["output"]
    assert re.fullmatch(r"ch_[0-9a-f]{16}", charge["id"])
    assert charge["amount"] == 20.0
    tracking_id = steps["arrange-shipment"]["output"]["trackingId"]
    assert re.fullmatch(r"TRK\d{10}", tracking_id)

    # The child: a `shipping` run whose parent is this one, completed, with the label stored.
    child = await app.only_run("shipping")
    assert child.run_id == steps["arrange-shipment"]["childRunId"]
    assert child.parent_run_id == run_id
    assert child.status == "completed"
    assert child.output == {"trackingId": tracking_id, "carrier": "local-post"}
    label = await app.platform.storage.get("labels/ord_42.txt")
    assert label is not None
    assert tracking_id.encode() in label

    order = await app.platform.database.find_one("orders", {"_id": "ord_42"})
    assert order is not None
    assert order["status"] == "shipped"
    assert order["trackingId"] == tracking_id
    assert [m["template"] for m in await app.outbox()] == ["shipped"]
    assert steps["delivery-confirmation"]["match"] == {"trackingId": tracking_id}

    # Another parcel's delivery does not count; this one's does.
    send_event = app.platform.workflows.send_event
    assert await send_event("shipment.delivered", {"trackingId": "TRK0000000000"}) == 0
    assert await send_event("shipment.delivered", {"trackingId": tracking_id}) == 1
    await app.settle()
    run = await app.run(run_id)
    assert run.status == "completed"
    assert run.output == {"chargeId": charge["id"], "trackingId": tracking_id}
    assert "open-support-ticket" not in await app.history(run_id)
    assert await app.platform.database.find("tickets") == []


async def test_no_delivery_in_fourteen_days_opens_a_support_ticket(app: ExampleApp) -> None:
    run_id = await start_fulfillment(app)
    await app.advance("13d")
    assert "open-support-ticket" not in await app.history(run_id)
    await app.advance("1d")
    run = await app.run(run_id)
    assert run.status == "completed", run
    steps = await app.history(run_id)
    assert steps["delivery-confirmation"]["output"] is None
    ticket_id = steps["open-support-ticket"]["output"]["ticketId"]
    tickets = await app.platform.database.find("tickets")
    assert len(tickets) == 1
    assert tickets[0]["_id"] == ticket_id
    assert tickets[0]["subject"] == "No delivery after 14d for ord_42"
    assert tickets[0]["customerId"] == "c_7"
    assert run.output == {
        "chargeId": steps["charge-payment"]["output"]["id"],
        "trackingId": steps["arrange-shipment"]["output"]["trackingId"],
    }


async def test_the_stand_ins_are_deterministic(tmp_path: Path) -> None:
    outputs = []
    for name in ("one", "two"):
        app = await start_example_app(tmp_path / name, FakeClock(at(2026, 3, 1)))
        try:
            run_id = await start_fulfillment(app)
            steps = await app.history(run_id)
            outputs.append((steps["charge-payment"]["output"], steps["arrange-shipment"]["output"]))
        finally:
            await app.worker.stop()
    assert outputs[0] == outputs[1]


async def test_invoice_builder_stores_the_invoice(app: ExampleApp) -> None:
    await app.platform.database.insert_one("orders", dict(ORDER))
    handle = await app.platform.workflows.start("invoice-builder", {"orderId": "ord_42"})
    await app.settle()
    invoice = await handle.result(timeout=5)
    assert invoice == {"id": "inv_ord_42", "orderId": "ord_42", "customerId": "c_7", "total": 20.0}
    stored = await app.platform.storage.get("invoices/ord_42.json")
    assert stored is not None
    assert b'"inv_ord_42"' in stored


# ------------------------------------------------------------------------------- triggers


async def test_nightly_reconcile_fires_at_three_utc_and_settles_each_pending_order(
    tmp_path: Path,
) -> None:
    clock = FakeClock(at(2026, 1, 5, 2, 59, 0))
    app = await start_example_app(tmp_path / "data", clock)
    try:
        db = app.platform.database
        await db.insert_many(
            "orders",
            [
                {"_id": "ord_a", "status": "pending_reconcile", "total": 5},
                {"_id": "ord_b", "status": "pending_reconcile", "total": 7},
                {"_id": "ord_c", "status": "shipped", "total": 9},
            ],
        )
        await app.advance("59s")
        assert await app.runs("nightly-reconcile") == []
        await app.advance("1s")

        tick = at(2026, 1, 5, 3, 0, 0)
        run = await app.only_run("nightly-reconcile")
        assert run.run_id == f"nightly-reconcile.cron{tick}"
        assert run.input == {"scheduledAt": tick, "firedAt": tick}
        assert run.status == "completed"
        assert run.output == {"reconciled": 2}
        assert list(await app.history(run.run_id)) == [
            "fetch-pending",
            "reconcile-ord_a",
            "reconcile-ord_b",
        ]
        orders = {o["_id"]: o for o in await db.find("orders")}
        assert orders["ord_a"]["status"] == orders["ord_b"]["status"] == "reconciled"
        assert orders["ord_a"]["reconciledAt"] == tick
        assert orders["ord_c"]["status"] == "shipped"
        assert app.worker.scheduler.schedules() == [
            {
                "workflowId": "nightly-reconcile",
                "cron": "0 0 3 * * *",
                "nextAt": at(2026, 1, 6, 3),
                "lastAt": tick,
            }
        ]

        # The next night: one more run, nothing left to reconcile.
        await app.advance("1d")
        runs = await app.runs("nightly-reconcile")
        assert [r.input["scheduledAt"] for r in runs] == [at(2026, 1, 6, 3), tick]
        assert runs[0].output == {"reconciled": 0}
    finally:
        await app.worker.stop()


async def test_a_registered_user_event_sends_tips_two_hours_later(app: ExampleApp) -> None:
    event_id = await app.platform.events.publish(
        "auth.user.registered", {"email": "new@example.com"}, r="auth"
    )
    await app.settle()
    run = await app.only_run("onboarding-after-signup")
    assert run.run_id == f"onboarding-after-signup.evt{event_id}"
    assert run.input["t"] == "auth.user.registered"
    assert run.input["data"] == {"email": "new@example.com"}
    assert run.status == "sleeping"

    await app.advance("119m")
    assert await app.outbox() == []
    await app.advance("1m")
    run = await app.only_run("onboarding-after-signup")
    assert run.status == "completed"
    assert [(m["to"], m["template"]) for m in await app.outbox()] == [("new@example.com", "tips")]

    # Other event types start nothing.
    await app.platform.events.publish("auth.user.deleted", {"email": "new@example.com"})
    await app.settle()
    assert len(await app.runs("onboarding-after-signup")) == 1


async def test_invite_keys_start_a_nudge_and_other_keys_do_not(app: ExampleApp) -> None:
    kv = app.platform.kv
    await kv.put(
        "invites", "inv:abc", {"email": "sam@example.com", "invitedBy": "u_123", "accepted": False}
    )
    await kv.put("invites", "inv:done", {"email": "lee@example.com", "accepted": True})
    await kv.put("invites", "other:1", {"email": "x@example.com"})
    await kv.put("settings", "inv:abc", {"email": "x@example.com"})
    await kv.delete("invites", "inv:abc")
    await kv.put(
        "invites", "inv:abc", {"email": "sam@example.com", "invitedBy": "u_123", "accepted": False}
    )
    await app.settle()

    runs = await app.runs("nudge-followup")
    assert sorted(r.input["inviteKey"] for r in runs) == ["inv:abc", "inv:abc", "inv:done"]
    assert all(r.status == "sleeping" and r.run_id.startswith("nudge-followup-evt") for r in runs)

    await app.advance("3d")
    outputs = sorted(
        (r.input["inviteKey"], r.output["nudged"]) for r in await app.runs("nudge-followup")
    )
    assert outputs == [("inv:abc", True), ("inv:abc", True), ("inv:done", False)]
    reminders = [m for m in await app.outbox() if m["template"] == "invite-reminder"]
    assert [m["to"] for m in reminders] == ["sam@example.com", "sam@example.com"]


# ------------------------------------------------------------------------------ the route


async def test_checkout_route_starts_fulfill_order(tmp_path: Path) -> None:
    clock = FakeClock(at(2026, 2, 1, 12))
    app = create_app(
        HostConfig(project_dir=REPO, data_dir=tmp_path / "data"),
        clock=clock,
        worker_options=fast_options(),
    )
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http,
    ):
        worker = app.state.worker  # set by the lifespan
        order = {k: v for k, v in ORDER.items()}
        assert (await http.put("/api/db/orders", json=order)).json() == {"id": "ord_42"}

        response = await http.post(
            "/checkout", json={"orderId": "ord_42", "customerEmail": "jane@example.com"}
        )
        assert response.status_code == 200, response.text
        run_id = response.json()["runId"]
        await worker.settle(timeout=10)
        run = (await http.get(f"/api/workflows/runs/{run_id}")).json()
        assert run["workflowId"] == "fulfill-order"
        assert run["input"] == {"orderId": "ord_42", "customerEmail": "jane@example.com"}
        assert run["status"] == "waiting_event"

        # A second checkout of the same order is the same run: nothing is charged twice.
        again = await http.post(
            "/checkout", json={"orderId": "ord_42", "customerEmail": "jane@example.com"}
        )
        assert again.json() == {"runId": run_id}
        runs = (
            await http.get("/api/workflows/runs", params={"workflowId": "fulfill-order"})
        ).json()
        assert [r["runId"] for r in runs] == [run_id]

        missing = await http.post(
            "/checkout", json={"orderId": "ord_404", "customerEmail": "jane@example.com"}
        )
        assert missing.status_code == 404
        for bad in ({"orderId": "ord 42", "customerEmail": "a@b.c"}, {"orderId": "ord_42"}, [1]):
            assert (await http.post("/checkout", json=bad)).status_code == 400
        assert (await http.post("/checkout", content=b"{nope")).status_code == 400
    assert app.state.host.worker is None  # the lifespan ran its shutdown too


# ------------------------------------------------------------------- the README, for real


@pytest.mark.slow
def test_readme_walkthrough_against_a_real_host(tmp_path: Path) -> None:
    """``python -m host serve .`` in a subprocess, driven over HTTP and the CLI like the README."""
    data = tmp_path / "data"
    with running_host(Path("."), data, tmp_path / "logs", cwd=REPO) as host:
        http = host.http
        log = host.log()
        assert "loaded 7 workflow(s)" in log
        assert "user routes: /chat, /checkout" in log

        # Insert a user: events/users.py starts onboarding, which parks on its 24 h sleep.
        inserted = http.put(
            "/api/db/users", json={"_id": "u_123", "name": "Jane", "email": "jane@example.com"}
        )
        assert inserted.json() == {"id": "u_123"}

        def onboarding_runs() -> list[dict[str, Any]]:
            return list(http.get("/api/workflows/runs", params={"workflowId": "onboarding"}).json())

        run_id = wait_for_one(onboarding_runs)["runId"]
        run = host.wait_status(run_id, "sleeping")
        assert run["input"] == {"userId": "u_123", "email": "jane@example.com"}
        history = http.get(f"/api/workflows/runs/{run_id}/history").json()
        assert [(s["name"], s["kind"], s["status"]) for s in history] == [
            ("fetch-user", "run", "completed"),
            ("send-welcome", "run", "completed"),
            ("grace-period", "sleep", "pending"),
        ]
        assert history[2]["wakeAt"] - history[2]["startedAt"] == DAY

        shown = cli("runs", "show", run_id, "--data", str(data))
        assert shown.returncode == 0, shown.stderr
        assert "status    sleeping" in shown.stdout
        assert "grace-period" in shown.stdout
        assert "wakes" in shown.stdout

        # The survey answer arrives early: no run waits yet (count 0), it is kept for this one.
        signal = http.post(
            "/api/workflows/signal",
            json={"eventType": "survey.submitted", "payload": {"userId": "u_123"}},
        )
        assert signal.json() == {"count": 0}
        sent = cli(
            "send-event", "survey.submitted", '{"userId": "u_123", "score": 9}', "--data", str(data)
        )
        assert sent.returncode == 0
        assert "0 parked run(s) resumed" in sent.stdout

        # Checkout: an order, the route, the child shipment, the carrier's delivery event.
        order = {
            "_id": "ord_42",
            "customerId": "c_7",
            "total": 20.0,
            "shippingAddress": "1 Main St",
        }
        assert http.put("/api/db/orders", json=order).status_code == 200
        checkout = http.post(
            "/checkout", json={"orderId": "ord_42", "customerEmail": "jane@example.com"}
        )
        assert checkout.status_code == 200, checkout.text
        order_run = checkout.json()["runId"]
        # waiting_event comes twice: first for the shipping child, then for the carrier's event.

        def steps_so_far() -> dict[str, Any]:
            history = http.get(f"/api/workflows/runs/{order_run}/history").json()
            return {s["name"]: s for s in history}

        steps = wait_until(
            lambda: "delivery-confirmation" in (found := steps_so_far()) and found,
            what="the order run to wait for the carrier's event",
        )
        tracking_id = steps["arrange-shipment"]["output"]["trackingId"]
        assert host.run(steps["arrange-shipment"]["childRunId"])["status"] == "completed"
        delivered = http.post(
            "/api/workflows/signal",
            json={"eventType": "shipment.delivered", "payload": {"trackingId": tracking_id}},
        )
        assert delivered.json() == {"count": 1}
        done = host.wait_status(order_run, "completed")
        assert done["output"] == {
            "chargeId": steps["charge-payment"]["output"]["id"],
            "trackingId": tracking_id,
        }

        # The emails queue's consumer filed the mail in KV namespace "outbox".
        def outbox() -> list[dict[str, Any]]:
            names = [k["name"] for k in http.post("/api/kv/outbox", json={}).json()["result"]]
            return [http.get(f"/api/kv/outbox/{name}").json() for name in names]

        mails = wait_until(lambda: len(outbox()) == 2 and outbox())
        assert [m["template"] for m in mails] == ["welcome", "shipped"]

        listed = cli("runs", "list", "--data", str(data))
        assert listed.returncode == 0
        assert order_run in listed.stdout
        assert run_id in listed.stdout
    assert (data / "runs.jsonl").exists()
    assert (data / "events.jsonl").exists()


def wait_for_one(fetch: Any) -> dict[str, Any]:
    runs = wait_until(lambda: fetch() or None, what="a run")
    assert len(runs) == 1, runs
    return dict(runs[0])
