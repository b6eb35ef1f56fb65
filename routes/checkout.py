"""``POST /checkout``: start fulfilling an order and answer at once with the run id.

The seed's route handler. Body: ``{"orderId": "ord_42", "customerEmail": "jane@example.com"}``
for an order already in the ``orders`` collection. The run id is derived from the order, so a
second checkout of the same order (a double click, a retried request) returns the same run and
charges nothing twice.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from platform_shim import get_platform

# Order ids end up in a run id, which may not hold '/', '?', '#', '%' or spaces.
_ORDER_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")


def _bad(detail: str, status: int = 400) -> JSONResponse:
    return JSONResponse(
        {"error": "bad_request" if status == 400 else "not_found", "detail": detail}, status
    )


async def checkout(request: Request) -> JSONResponse:
    try:
        body: Any = await request.json()
    except ValueError:
        return _bad("the body must be JSON")
    if not isinstance(body, dict):
        return _bad("the body must be a JSON object")
    order_id, email = body.get("orderId"), body.get("customerEmail")
    if not isinstance(order_id, str) or not _ORDER_ID.fullmatch(order_id):
        return _bad("'orderId' must be a string of letters, digits, '_' or '-'")
    if not isinstance(email, str) or "@" not in email:
        return _bad("'customerEmail' must be an email address")

    platform = get_platform()
    if await platform.database.find_one("orders", {"_id": order_id}) is None:
        return _bad(f"no order {order_id!r}", 404)
    handle = await platform.workflows.start(
        "fulfill-order",
        {"orderId": order_id, "customerEmail": email},
        run_id=f"fulfill-order-{order_id}",
    )
    return JSONResponse({"runId": handle.run_id})


routes: list[BaseRoute] = [Route("/checkout", checkout, methods=["POST"])]
