"""The README's "Testing your workflows" example, kept true: the block below is the README's."""

from pathlib import Path

# --- README: begin
from platform_shim.testing import FakeClock

DAY = 24 * 3600 * 1000


async def test_a_new_user_is_onboarded(platform, clock: FakeClock):
    # events/users.py starts onboarding for every user inserted with an email.
    await platform.database.insert_one("users", {"_id": "u_1", "email": "jane@example.com"})
    await platform.settle()  # the handler ran, the run parked on its 24 h sleep
    [run] = await platform.workflows.list(workflow_id="onboarding")
    handle = platform.workflows.handle(run.run_id)
    assert [step.name for step in await handle.history()] == [
        "fetch-user",
        "send-welcome",
        "grace-period",
    ]

    clock.advance("24h")  # skip the grace period by hand...
    await platform.settle()
    assert (await handle.status()).status == "waiting_event"
    await platform.workflows.send_event("survey.submitted", {"userId": "u_1", "score": 9})
    assert await handle.result() == {"completed": True, "surveyed": True}


async def test_an_unanswered_survey_times_out_after_a_week(platform, clock: FakeClock):
    clock.auto_advance = True  # ...or let time skip whenever every run is parked
    start = clock.now_ms()
    handle = await platform.workflows.start(
        "onboarding", {"userId": "u_2", "email": "sam@example.com"}
    )
    assert await handle.result() == {"completed": True, "surveyed": False}
    assert clock.now_ms() - start >= 8 * DAY  # 24 h of grace, then 7 days of waiting
    welcome = await platform.kv.list("outbox")  # events/emails.py files each email here
    assert len(welcome["keys"]) == 1


# --- README: end


def test_the_readme_shows_this_test() -> None:
    source = Path(__file__).read_text()
    block = source.split("# --- README: begin\n")[1].split("# --- README: end\n")[0]
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert f"```python\n{block.strip()}\n```" in readme
