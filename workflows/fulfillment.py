"""Order fulfillment: charge, ship (a child workflow), tell the customer, watch for delivery.

The seed's "fuller example" (``workflows/fulfillment.ts``) in Python. ``routes/checkout.py``
starts it. The card processor and the helpdesk are local stand-ins (below), deterministic and
offline, so the example runs anywhere and every run of it gives the same ids.
"""

from __future__ import annotations

import hashlib
from typing import Any

from platform_shim import get_platform
from platform_shim.workflows import define_workflow

# The seed declares ``timeoutSecs: 7 * 24 * 3600``, but the run waits up to 14 days for the
# carrier's delivery event, and ``timeoutSecs`` is a deadline from the run's creation that counts
# waits: a 7-day budget would fail the run before it could ever open the support ticket. 15 days
# cover the 14-day wait plus the steps around it.
FIFTEEN_DAYS_SECS = 15 * 24 * 3600


def stand_in_id(prefix: str, *parts: object) -> str:
    """A stable id for a stand-in's record: the same order always gives the same id."""
    digest = hashlib.sha256("\x00".join(str(p) for p in parts).encode()).hexdigest()
    return f"{prefix}_{digest[:16]}"


async def charge_card(order_id: str, customer_id: str, total: float) -> dict[str, Any]:
    """Stand-in for a card processor. A real one is called with an idempotency key (the order
    id), so a step that runs again after a crash charges the card once; here the charge id is
    derived from the same key."""
    return {
        "id": stand_in_id("ch", order_id, customer_id, total),
        "amount": total,
        "status": "succeeded",
    }


async def open_ticket(order_id: str, customer_id: str, subject: str) -> dict[str, Any]:
    """Stand-in for a helpdesk: a document in the local ``tickets`` collection. The ticket id
    comes from the order, so a step that runs twice files one ticket."""
    database = get_platform().database
    ticket_id = stand_in_id("tkt", order_id)
    if await database.find_one("tickets", {"_id": ticket_id}) is None:
        await database.insert_one(
            "tickets",
            {
                "_id": ticket_id,
                "orderId": order_id,
                "customerId": customer_id,
                "subject": subject,
                "status": "open",
            },
        )
    return {"ticketId": ticket_id}


@define_workflow(
    {"id": "fulfill-order", "options": {"retries": 5, "timeoutSecs": FIFTEEN_DAYS_SECS}}
)
async def fulfill_order(input: dict[str, Any], step: Any, ctx: Any) -> dict[str, Any]:
    order_id = input["orderId"]
    order = await step.run("load-order", lambda: ctx.database.find_one("orders", {"_id": order_id}))
    if order is None:
        # Raised outside a step, this fails the attempt and the run retries; an order that is
        # missing now will be missing then too, so say so plainly in the run's error.
        raise LookupError(f"no order {order_id!r} in the 'orders' collection")

    charge = await step.run(
        "charge-payment", lambda: charge_card(order_id, order["customerId"], order["total"])
    )

    # A child workflow: started once (its run id is recorded), and this run parks until it ends.
    shipment = await step.invoke(
        "arrange-shipment",
        "shipping",
        {"orderId": order_id, "address": order.get("shippingAddress")},
    )

    await step.run(
        "mark-shipped",
        lambda: ctx.database.update_one(
            "orders",
            {"_id": order_id},
            {"$set": {"status": "shipped", "trackingId": shipment["trackingId"]}},
        ),
    )
    await step.run(
        "email-tracking",
        lambda: ctx.queue.send(
            "emails",
            {
                "to": input["customerEmail"],
                "template": "shipped",
                "trackingId": shipment["trackingId"],
            },
        ),
    )

    # The carrier reports delivery with send_event("shipment.delivered", {"trackingId": ...}).
    delivered = await step.wait_for_event(
        "delivery-confirmation",
        type="shipment.delivered",
        match={"trackingId": shipment["trackingId"]},
        timeout="14d",
    )
    if delivered is None:
        await step.run(
            "open-support-ticket",
            lambda: open_ticket(
                order_id, order["customerId"], f"No delivery after 14d for {order_id}"
            ),
        )

    return {"chargeId": charge["id"], "trackingId": shipment["trackingId"]}
