"""Child workflows of the fulfillment example: ``shipping`` and ``invoice-builder``.

``fulfill-order`` invokes ``shipping`` with ``step.invoke("arrange-shipment", "shipping", ...)``;
``invoice-builder`` is the child of the seed's ``step.invoke`` example
(``step.invoke("generate-invoice", "invoice-builder", {"orderId": ...})``), and can be started
on its own too. The carrier is a local stand-in: deterministic, offline.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from platform_shim.workflows import define_workflow


def book_carrier(order_id: str, address: Any) -> dict[str, Any]:
    """Stand-in for a carrier's booking API: the tracking number is derived from the order, so
    booking the same order twice (a step re-run after a crash) gives the same shipment."""
    digest = hashlib.sha256(f"shipment\x00{order_id}".encode()).hexdigest()
    return {
        "trackingId": f"TRK{int(digest[:12], 16) % 10**10:010d}",
        "carrier": "local-post",
        "address": address,
    }


@define_workflow({"id": "shipping", "options": {"retries": 3}})
async def shipping(input: dict[str, Any], step: Any, ctx: Any) -> dict[str, Any]:
    # A sync function works in step.run too (it runs on the event loop, so keep it quick).
    booking = await step.run(
        "book-carrier", lambda: book_carrier(input["orderId"], input.get("address"))
    )
    label = f"{booking['carrier']} {booking['trackingId']}\nship to: {booking['address']}\n"
    await step.run(
        "store-label",
        lambda: ctx.storage.put(
            f"labels/{input['orderId']}.txt", label, {"contentType": "text/plain"}
        ),
    )
    # What the parent's step.invoke returns.
    return {"trackingId": booking["trackingId"], "carrier": booking["carrier"]}


@define_workflow({"id": "invoice-builder"})
async def invoice_builder(input: dict[str, Any], step: Any, ctx: Any) -> dict[str, Any]:
    order_id = input["orderId"]
    order = await step.run("load-order", lambda: ctx.database.find_one("orders", {"_id": order_id}))
    if order is None:
        raise LookupError(f"no order {order_id!r} in the 'orders' collection")
    invoice = {
        "id": f"inv_{order_id}",
        "orderId": order_id,
        "customerId": order.get("customerId"),
        "total": order.get("total"),
    }
    await step.run(
        "store-invoice",
        lambda: ctx.storage.put(
            f"invoices/{order_id}.json",
            json.dumps(invoice, sort_keys=True),
            {"contentType": "application/json"},
        ),
    )
    return invoice
