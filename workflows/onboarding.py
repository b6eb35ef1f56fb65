"""Onboarding: welcome a new user, give them a day, then wait up to a week for their survey.

The seed's ``workflows/onboarding.ts`` in Python. ``events/users.py`` starts one run for every
user document inserted with an email; try it with the README's walkthrough.
"""

from __future__ import annotations

from typing import Any

from platform_shim.workflows import define_workflow

# The seed declares ``timeoutSecs: 86400``, but ``timeoutSecs`` is a deadline from the run's
# creation that counts sleeps, so a one-day budget would fail every run at the very moment its
# 24 h grace period ends, before it could wait for the survey. The budget here covers the whole
# flow: the 24 h grace period, up to 7 days of waiting for the survey, and a day to spare for
# retries.
NINE_DAYS_SECS = 9 * 24 * 3600


@define_workflow({"id": "onboarding", "options": {"retries": 5, "timeoutSecs": NINE_DAYS_SECS}})
async def onboarding(input: dict[str, Any], step: Any, ctx: Any) -> dict[str, Any]:
    # The lambdas return coroutines: step.run awaits them and records what they return. On a
    # replay (after the sleep, the event, or a restart) the recorded values come back instead
    # and nothing is fetched or sent twice.
    user = await step.run(
        "fetch-user", lambda: ctx.database.find_one("users", {"_id": input["userId"]})
    )
    await step.run(
        "send-welcome",
        lambda: ctx.queue.send(
            "emails",
            {"to": input["email"], "template": "welcome", "name": (user or {}).get("name")},
        ),
    )

    # Durable: the run is parked (no task, no thread) and wakes a day later, even if the host
    # was restarted in between.
    await step.sleep("grace-period", "24h")

    # Parks until someone calls send_event("survey.submitted", {"userId": ..., ...}) for this
    # user, or returns None after 7 days.
    survey = await step.wait_for_event(
        "survey-reply",
        type="survey.submitted",
        match={"userId": input["userId"]},
        timeout="7d",
    )
    return {"completed": True, "surveyed": survey is not None}
