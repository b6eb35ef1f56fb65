"""Cron and event triggers: one run per tick or event, never two, caught up after downtime."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow
from platform_shim.workflows.records import RunStatus

from .conftest import Opener

fired: list[Any] = []


@define_workflow({"id": "nightly", "trigger": {"kind": "schedule", "cron": "0 0 3 * * *"}})
async def nightly(input: Any, step: Any, ctx: Any) -> Any:
    fired.append(input)
    return input


@define_workflow({"id": "every-15s", "trigger": {"kind": "schedule", "cron": "*/15 * * * * *"}})
async def every_15s(input: Any, step: Any, ctx: Any) -> Any:
    return input["scheduledAt"]


@define_workflow({"id": "on-signup", "trigger": {"kind": "event", "t": "auth.user.registered"}})
async def on_signup(event: Any, step: Any, ctx: Any) -> Any:
    return await step.run("greet", lambda: event["data"]["email"])


def at(*args: int) -> int:
    return int(datetime(*args, tzinfo=UTC).timestamp() * 1000)


async def test_seconds_first_cron_fires_at_three_every_day(
    open_worker: Opener, data_dir: Any
) -> None:
    fired.clear()
    clock = FakeClock(at(2026, 1, 1, 2, 59, 0))
    from platform_shim.runtime import open_platform

    async with open_platform(data_dir, workflows=[nightly], clock=clock, watch=False) as platform:
        await platform.settle()
        assert fired == []
        clock.advance("1m")
        await platform.settle()
        assert [f["scheduledAt"] for f in fired] == [at(2026, 1, 1, 3, 0, 0)]
        assert "missedTicks" not in fired[0]
        clock.advance("1d")
        await platform.settle()
        assert [f["scheduledAt"] for f in fired] == [at(2026, 1, 1, 3), at(2026, 1, 2, 3)]
        runs = await platform.workflows.list(workflow_id="nightly")
        assert sorted(r.run_id for r in runs) == sorted(
            [f"nightly.cron{at(2026, 1, 1, 3)}", f"nightly.cron{at(2026, 1, 2, 3)}"]
        )
        schedule = platform.worker.scheduler.schedules()  # type: ignore[union-attr]
        assert schedule == [
            {
                "workflowId": "nightly",
                "cron": "0 0 3 * * *",
                "nextAt": at(2026, 1, 3, 3),
                "lastAt": at(2026, 1, 2, 3),
            }
        ]


async def test_missed_ticks_are_caught_up_once(data_dir: Any) -> None:
    from platform_shim.runtime import open_platform

    clock = FakeClock(at(2026, 1, 1, 0, 0, 1))
    async with open_platform(data_dir, workflows=[every_15s], clock=clock, watch=False) as platform:
        clock.advance("14s")
        await platform.settle()
        assert len(await platform.workflows.list()) == 1  # the 00:00:15 tick
    clock.advance("1m")  # down for 60 s: ticks at :30, :45, 1:00, 1:15 missed
    async with open_platform(data_dir, workflows=[every_15s], clock=clock, watch=False) as platform:
        await platform.settle()
        runs = await platform.workflows.list()
        assert len(runs) == 2
        latest = runs[0]
        assert latest.input == {
            "scheduledAt": at(2026, 1, 1, 0, 1, 15),
            "firedAt": clock.now_ms(),
            "missedTicks": 4,
        }
    # A restart with nothing missed fires nothing again.
    async with open_platform(data_dir, workflows=[every_15s], clock=clock, watch=False) as platform:
        await platform.settle()
        assert len(await platform.workflows.list()) == 2


async def test_a_workflow_seen_for_the_first_time_does_not_catch_up_its_past(data_dir: Any) -> None:
    from platform_shim.runtime import open_platform

    clock = FakeClock(at(2026, 6, 1, 12, 0, 0))
    async with open_platform(data_dir, workflows=[every_15s], clock=clock, watch=False) as platform:
        await platform.settle()
        assert await platform.workflows.list() == []


async def test_event_trigger_starts_one_run_per_event(open_worker: Opener) -> None:
    async with open_worker([on_signup]) as platform:
        first = await platform.events.publish("auth.user.registered", {"email": "a@x.io"}, r="auth")
        await platform.events.publish("auth.user.deleted", {"email": "b@x.io"}, r="auth")
        second = await platform.events.publish(
            "auth.user.registered", {"email": "c@x.io"}, r="auth"
        )
        await platform.settle()
        runs = await platform.workflows.list(workflow_id="on-signup")
        assert sorted(r.run_id for r in runs) == sorted(
            [f"on-signup.evt{first}", f"on-signup.evt{second}"]
        )
        for run in runs:
            assert run.status is RunStatus.COMPLETED
            assert run.input["t"] == "auth.user.registered" and run.input["r"] == "auth"
        assert sorted(r.output for r in runs) == ["a@x.io", "c@x.io"]


async def test_event_trigger_across_a_restart_starts_nothing_twice(open_worker: Opener) -> None:
    async with open_worker([on_signup]) as platform:
        await platform.events.publish("auth.user.registered", {"email": "a@x.io"})
        await platform.settle()
    async with open_worker([on_signup]) as platform:
        await platform.events.publish("auth.user.registered", {"email": "b@x.io"})
        await platform.settle()
        assert len(await platform.workflows.list(workflow_id="on-signup")) == 2


async def test_a_cron_tick_that_fails_to_fire_does_not_end_the_schedule(
    data_dir: Any, monkeypatch: Any
) -> None:
    from platform_shim.runtime import open_platform

    clock = FakeClock(at(2026, 1, 1, 0, 0, 1))
    async with open_platform(data_dir, workflows=[every_15s], clock=clock, watch=False) as platform:
        scheduler = platform.worker.scheduler  # type: ignore[union-attr]
        real_fire = scheduler._fire
        failures: list[int] = []

        def fire(workflow: Any, tick: int, missed: int) -> None:
            if not failures:  # fault injection: the first tick's firing raises
                failures.append(tick)
                raise RuntimeError("injected")
            real_fire(workflow, tick, missed)

        monkeypatch.setattr(scheduler, "_fire", fire)
        clock.advance("14s")  # 00:00:15: fails
        await platform.settle()
        clock.advance("15s")  # 00:00:30: still scheduled
        await platform.settle()
        runs = await platform.workflows.list()
        assert failures == [at(2026, 1, 1, 0, 0, 15)]
        assert [r.run_id for r in runs] == [f"every-15s.cron{at(2026, 1, 1, 0, 0, 30)}"]
