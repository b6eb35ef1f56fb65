"""KV change -> workflow: nudge an invitee, for keys ``inv:*`` of the ``invites`` namespace only.

The seed's ``events/invites.ts``. An event trigger on a workflow matches only the event type,
resource and namespace; a handler can filter on a key pattern (and anything else), then hand the
long-running part to a workflow.
"""

from __future__ import annotations

from typing import Any

from platform_shim.events import on_kv_change


@on_kv_change({"namespace": "invites", "keyPattern": "inv:*", "op": "put"})
async def nudge_on_invite(event: dict[str, Any], ctx: Any) -> None:
    # Handlers are delivered at least once. A run id derived from the stream event's id makes a
    # second delivery of the same write start nothing new.
    await ctx.platform.workflows.start(
        "nudge-followup",
        {"inviteKey": event["key"], "ts": event["ts"]},
        run_id=f"nudge-followup-evt{event['eventId']}",
    )
