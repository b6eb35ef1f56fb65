"""Database change -> workflow: onboard every new user who has an email.

The seed's ``events/users.ts``. Filter on the collection and the operation here, then pass the
document to the ``onboarding`` workflow, which owns the durable part (welcome email, 24 h grace
period, survey wait).
"""

from __future__ import annotations

from typing import Any

from platform_shim.events import on_db_change


@on_db_change({"collection": "users", "op": "insert"})
async def onboard_new_user(event: dict[str, Any], ctx: Any) -> None:
    doc = event["doc"] or {}
    if not doc.get("email"):
        return
    # At-least-once delivery: the run id comes from the insert's stream event, so a handler that
    # runs twice for the same insert still starts one onboarding.
    await ctx.platform.workflows.start(
        "onboarding",
        {"userId": event["id"], "email": doc["email"]},
        run_id=f"onboarding-evt{event['eventId']}",
    )
