"""Tips for new sign-ups: an event-triggered workflow.

The seed's event-trigger example. Every ``auth.user.registered`` event on the platform's event
stream starts one run, whose input is that event (``{"id", "t", "r", "ns", "k", "data", "ts"}``).
A registration emits it (``POST /api/platform/auth/register {"email", "password"}`` or
``platform.auth.register(...)``; ``data`` is the new user, without secrets); a test can also
publish one with ``platform.events.publish("auth.user.registered", {...})``.
"""

from __future__ import annotations

from typing import Any

from platform_shim.workflows import define_workflow


@define_workflow(
    {"id": "onboarding-after-signup", "trigger": {"kind": "event", "t": "auth.user.registered"}}
)
async def on_signup(event: dict[str, Any], step: Any, ctx: Any) -> None:
    await step.sleep("wait-before-nudge", "2h")
    await step.run(
        "send-tips",
        lambda: ctx.queue.send("emails", {"to": event["data"]["email"], "template": "tips"}),
    )
