"""wait_for_event and send_event: matching, counts, timeouts, and the no-race rule."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow
from platform_shim.workflows.records import RunStatus

from .conftest import Opener


@define_workflow({"id": "approval"})
async def approval(input: Any, step: Any, ctx: Any) -> Any:
    return await step.wait_for_event(
        "manager-approval",
        type="expense.approved",
        match={"expenseId": input["expenseId"]},
        timeout="3d",
    )


@define_workflow({"id": "seed-form"})
async def seed_form(input: Any, step: Any, ctx: Any) -> Any:
    return await step.wait_for_event(
        "reply", {"type": "survey.submitted", "match": {"userId": input}, "timeout": "7d"}
    )


async def test_send_event_resumes_matching_parked_runs_and_counts_them(open_worker: Opener) -> None:
    async with open_worker([approval]) as platform:
        a = await platform.workflows.start("approval", {"expenseId": "exp_1"})
        b = await platform.workflows.start("approval", {"expenseId": "exp_2"})
        await platform.settle()
        assert await platform.workflows.send_event("expense.approved", {"expenseId": "exp_9"}) == 0
        assert await platform.workflows.send_event("other.type", {"expenseId": "exp_1"}) == 0
        count = await platform.workflows.send_event(
            "expense.approved", {"expenseId": "exp_1", "approvedBy": "mgr_7"}
        )
        assert count == 1
        assert await a.result(timeout=5) == {"expenseId": "exp_1", "approvedBy": "mgr_7"}
        assert (await b.status()).status is RunStatus.WAITING_EVENT  # type: ignore[union-attr]


async def test_the_seed_options_form_and_a_timeout_returning_none(
    open_worker: Opener, clock: FakeClock
) -> None:
    async with open_worker([seed_form]) as platform:
        handle = await platform.workflows.start("seed-form", "u_1")
        await platform.settle()
        step = (await handle.history())[0]
        assert step.event_type == "survey.submitted" and step.match == {"userId": "u_1"}
        assert step.timeout_at == step.started_at + 7 * 86_400_000
        clock.advance("7d")
        assert await handle.result(timeout=5) is None


async def test_an_event_sent_right_after_start_is_not_lost(open_worker: Opener) -> None:
    async with open_worker([approval]) as platform:
        handle = await platform.workflows.start("approval", {"expenseId": "exp_3"})
        # Whether the run already parked on its wait (resumed now: 1) or has yet to reach it
        # (it will take the event when it does: 0), the event reaches it.
        assert await platform.workflows.send_event("expense.approved", {"expenseId": "exp_3"}) in (
            0,
            1,
        )
        assert await handle.result(timeout=5) == {"expenseId": "exp_3"}

    @define_workflow({"id": "late-waiter"})
    async def late_waiter(input: Any, step: Any, ctx: Any) -> Any:
        await step.run("slow-setup", lambda: asyncio.sleep(0.05))
        return await step.wait_for_event("w", type="go")

    async with open_worker([late_waiter]) as platform:
        handle = await platform.workflows.start("late-waiter")
        assert await platform.workflows.send_event("go", {"n": 1}) == 0  # not parked yet
        assert await handle.result(timeout=5) == {"n": 1}


async def test_an_event_sent_while_the_run_sleeps_is_taken_by_the_later_wait(
    open_worker: Opener, clock: FakeClock
) -> None:
    @define_workflow({"id": "sleep-then-wait"})
    async def sleep_then_wait(input: Any, step: Any, ctx: Any) -> Any:
        await step.sleep("grace-period", "24h")
        return await step.wait_for_event("survey", type="survey.submitted", match={"userId": "u_1"})

    async with open_worker([sleep_then_wait]) as platform:
        handle = await platform.workflows.start("sleep-then-wait")
        await platform.settle()
        await platform.workflows.send_event("survey.submitted", {"userId": "u_1", "score": 9})
        clock.advance("24h")
        assert await handle.result(timeout=5) == {"userId": "u_1", "score": 9}


async def test_events_sent_before_the_run_was_created_are_not_taken(open_worker: Opener) -> None:
    async with open_worker([approval]) as platform:
        await platform.workflows.send_event("expense.approved", {"expenseId": "exp_4"})
        handle = await platform.workflows.start("approval", {"expenseId": "exp_4"})
        await platform.settle()
        assert (await handle.status()).status is RunStatus.WAITING_EVENT  # type: ignore[union-attr]


async def test_each_event_is_taken_once_per_run_oldest_first(open_worker: Opener) -> None:
    @define_workflow({"id": "two-waits"})
    async def two_waits(input: Any, step: Any, ctx: Any) -> Any:
        first = await step.wait_for_event("first", type="tick")
        second = await step.wait_for_event("second", type="tick")
        return [first, second]

    async with open_worker([two_waits]) as platform:
        handle = await platform.workflows.start("two-waits")
        # Both sent before either wait is reached: the first wait takes the oldest.
        await platform.workflows.send_event("tick", {"n": 1})
        await platform.workflows.send_event("tick", {"n": 2})
        assert await handle.result(timeout=5) == [{"n": 1}, {"n": 2}]


async def test_one_event_resumes_every_matching_run(open_worker: Opener) -> None:
    async with open_worker([approval]) as platform:
        handles = [
            await platform.workflows.start("approval", {"expenseId": "shared"}) for _ in range(5)
        ]
        await platform.settle()
        assert await platform.workflows.send_event("expense.approved", {"expenseId": "shared"}) == 5
        results = await asyncio.gather(*(h.result(timeout=5) for h in handles))
        assert results == [{"expenseId": "shared"}] * 5


async def test_match_compares_types_strictly(open_worker: Opener) -> None:
    @define_workflow({"id": "strict"})
    async def strict(input: Any, step: Any, ctx: Any) -> Any:
        return await step.wait_for_event("flag", type="flag", match={"on": True})

    async with open_worker([strict]) as platform:
        handle = await platform.workflows.start("strict")
        await platform.settle()
        assert await platform.workflows.send_event("flag", {"on": 1}) == 0
        assert await platform.workflows.send_event("flag", {"on": True}) == 1
        assert await handle.result(timeout=5) == {"on": True}


async def test_bad_send_event_arguments(open_worker: Opener) -> None:
    async with open_worker([approval]) as platform:
        with pytest.raises(ValueError, match="event type"):
            await platform.workflows.send_event("")
        with pytest.raises(TypeError, match="payload of event 'x'"):
            await platform.workflows.send_event("x", {1, 2})


async def test_many_parked_runs_and_concurrent_senders(open_worker: Opener) -> None:
    async with open_worker([approval]) as platform:
        handles = await asyncio.gather(
            *(platform.workflows.start("approval", {"expenseId": f"e{i}"}) for i in range(300))
        )
        counts = await asyncio.gather(
            *(
                platform.workflows.send_event("expense.approved", {"expenseId": f"e{i}"})
                for i in range(300)
            )
        )
        results = await asyncio.gather(*(h.result(timeout=10) for h in handles))
        assert results == [{"expenseId": f"e{i}"} for i in range(300)]
        # A run counted by a sender was parked; the others took their event by the no-race rule.
        assert all(c in (0, 1) for c in counts)


@define_workflow({"id": "two-replies"})
async def two_replies(input: Any, step: Any, ctx: Any) -> Any:
    await step.sleep("grace", "1500ms")
    first = await step.wait_for_event("r1", type="acc.reply", match={"u": "u1"}, timeout="10s")
    second = await step.wait_for_event("r2", type="acc.reply", match={"u": "u1"}, timeout="1s")
    return [first, second]


async def test_one_event_is_taken_by_one_wait_of_a_run(
    open_worker: Opener, clock: FakeClock
) -> None:
    # Both waits are reached in the same activation, one right after the other: the second
    # must see the signal the first took, before the first's record is even written.
    async with open_worker([two_replies]) as platform:
        handle = await platform.workflows.start("two-replies")
        await platform.settle()
        assert await platform.workflows.send_event("acc.reply", {"u": "u1", "n": 1}) == 0
        clock.advance("1500ms")
        await platform.settle()
        clock.advance("1s")
        assert await handle.result(timeout=5) == [{"u": "u1", "n": 1}, None]
        history = {step.name: step for step in await handle.history()}
        assert history["r2"].output is None


async def test_a_second_event_goes_to_the_second_wait_oldest_first(
    open_worker: Opener, clock: FakeClock
) -> None:
    async with open_worker([two_replies]) as platform:
        handle = await platform.workflows.start("two-replies")
        await platform.settle()
        await platform.workflows.send_event("acc.reply", {"u": "u1", "n": 1})
        await platform.workflows.send_event("acc.reply", {"u": "u1", "n": 2})
        clock.advance("1500ms")
        assert await handle.result(timeout=5) == [{"u": "u1", "n": 1}, {"u": "u1", "n": 2}]


@define_workflow({"id": "null-reply"})
async def null_reply(input: Any, step: Any, ctx: Any) -> Any:
    await step.sleep("nap", "1s")
    got = await step.wait_for_event("w", type="nothing.here", timeout="1h")
    return {"got": got, "after": await step.run("after", lambda: "done")}


async def test_a_null_payload_taken_from_the_recorded_signals_resumes_the_run(
    open_worker: Opener, clock: FakeClock
) -> None:
    # Recovery looks for recorded signals a pending wait may take; a signal whose payload is
    # null is still a signal (it used to read as "none found" and park the run again).
    async with open_worker([null_reply]) as platform:
        handle = await platform.workflows.start("null-reply")
        await platform.settle()
        clock.advance("1s")
        await platform.settle()
        run = await handle.status()
        assert run is not None and run.status is RunStatus.WAITING_EVENT
    # Sent while no worker runs: at the next start, recovery finds it for the pending wait.
    from platform_shim.platform import open_client

    client = open_client(platform.data_dir, clock=clock)
    try:
        await client.workflows.send_event("nothing.here", None)
    finally:
        client.close()
    async with open_worker([null_reply]) as platform:
        handle = platform.workflows.handle(handle.run_id)
        assert await handle.result(timeout=5) == {"got": None, "after": "done"}


@pytest.mark.slow
async def test_signals_no_run_can_take_are_not_held_in_memory(
    open_worker: Opener, clock: FakeClock
) -> None:
    async with open_worker([approval]) as platform:
        for n in range(3000):
            await platform.workflows.send_event("nobody.waits", {"n": n})
        ledger = platform.worker.engine.state  # type: ignore[union-attr]
        held = sum(len(signals) for signals in ledger.signals.values())
        assert held < 2048, held
        assert len(ledger.signal_ids) == held
        # A run created now can still take a signal sent after it.
        handle = await platform.workflows.start("approval", {"expenseId": "late"})
        await platform.workflows.send_event("expense.approved", {"expenseId": "late"})
        assert await handle.result(timeout=5) == {"expenseId": "late"}


def test_match_is_json_equality_at_every_depth() -> None:
    from platform_shim.workflows.state import matches

    assert matches({"a": {"ok": True}}, {"a": {"ok": True}, "b": 1})
    assert not matches({"a": {"ok": True}}, {"a": {"ok": 1}})
    assert not matches({"a": [1, True]}, {"a": [1, 1]})
    assert not matches({"a": 1}, {"a": True})
    assert not matches({"a": {"x": 1}}, {"a": {"x": 1, "y": 2}})  # a whole value, not a subset
    assert matches({"a": [1.0, {"b": None}]}, {"a": [1, {"b": None}]})  # 1 and 1.0: one number
    assert not matches({"a": None}, {})


@define_workflow({"id": "par-waits"})
async def par_waits(input: Any, step: Any, ctx: Any) -> Any:
    _nap, event = await asyncio.gather(
        step.sleep("nap", "1h"), step.wait_for_event("go", type="par.go", timeout="2h")
    )
    return event


async def test_a_client_counts_a_wait_parked_beside_a_sleep(
    open_worker: Opener, clock: FakeClock
) -> None:
    """``send_event`` from another process answers how many waits it resumes, by the worker's
    rule. A run parked on a sleep and a wait at once (parallel steps) reads as sleeping: the
    client used to look at the run's status and first pending step only, and answered 0."""
    from platform_shim.platform import open_client

    async with open_worker([par_waits]) as platform:
        handle = await platform.workflows.start("par-waits")
        await platform.settle()
        client = open_client(platform.data_dir, clock=clock)
        try:
            assert await client.workflows.send_event("par.go", {"n": 1}) == 1
        finally:
            client.close()
        clock.advance("1h")
        assert await handle.result(timeout=5) == {"n": 1}
