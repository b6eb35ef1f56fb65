"""Invite nudges: remind an invitee who has not accepted after three days.

Started by ``events/invites.py`` for every KV write to a key ``inv:*`` in the ``invites``
namespace, with input ``{"inviteKey", "ts"}``. An invite is a KV value like
``{"email": "sam@example.com", "invitedBy": "u_123", "accepted": false}``.
"""

from __future__ import annotations

from typing import Any

from platform_shim.workflows import define_workflow


@define_workflow({"id": "nudge-followup", "options": {"retries": 3}})
async def nudge_followup(input: dict[str, Any], step: Any, ctx: Any) -> dict[str, Any]:
    key = input["inviteKey"]
    await step.sleep("give-them-time", "3d")
    # Read the invite after the sleep, in a step: what it says now decides, and a replay sees
    # the same answer.
    invite = await step.run("check-invite", lambda: ctx.kv.get("invites", key))
    if not isinstance(invite, dict) or invite.get("accepted") or not invite.get("email"):
        return {"nudged": False}
    await step.run(
        "send-reminder",
        lambda: ctx.queue.send(
            "emails", {"to": invite["email"], "template": "invite-reminder", "invite": key}
        ),
    )
    return {"nudged": True}
