"""Nightly reconciliation: every day at 03:00 UTC, settle each order left pending.

The seed's schedule-trigger example. The cron has six fields, seconds first
(sec min hour day month weekday), always in UTC. Each tick starts one run with input
``{"scheduledAt": ms, "firedAt": ms}``; if the host was down at 03:00, one catch-up run fires
when it starts again (with ``"missedTicks"`` in its input).
"""

from __future__ import annotations

import functools
from typing import Any

from platform_shim import get_platform
from platform_shim.workflows import define_workflow


async def reconcile(order: dict[str, Any], at: int) -> dict[str, Any]:
    """Stand-in for checking an order against the payment processor's books: here it only
    marks the order reconciled. Setting the same fields twice is harmless, so a step re-run
    after a crash changes nothing."""
    # get_platform() inside a workflow (or a handler, or a route) is the host's platform.
    await get_platform().database.update_one(
        "orders", {"_id": order["_id"]}, {"$set": {"status": "reconciled", "reconciledAt": at}}
    )
    return {"orderId": order["_id"], "total": order.get("total")}


@define_workflow(
    {"id": "nightly-reconcile", "trigger": {"kind": "schedule", "cron": "0 0 3 * * *"}}
)
async def nightly_reconcile(input: dict[str, Any], step: Any, ctx: Any) -> dict[str, Any]:
    orders = await step.run(
        "fetch-pending",
        lambda: ctx.database.find("orders", {"status": "pending_reconcile"}, sort={"_id": 1}),
    )
    # One step per order: if the run dies half-way, the orders already done are not redone.
    # Step names must be unique within a run, hence the order id in the name.
    for order in orders:
        await step.run(
            f"reconcile-{order['_id']}", functools.partial(reconcile, order, input["scheduledAt"])
        )
    return {"reconciled": len(orders)}
