"""Golden ledgers: hand-written ``runs.jsonl`` files (``tests/fixtures/ledgers/``, described in
the README there), each opened by a worker running the workflow code below on a fake clock.

They pin what a restart does with a ledger a crashed worker left behind: which step bodies run
again (and which must not), what the runs return, what their histories say, and which records
get appended. The fixture is copied first; the committed file is never written.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from platform_shim.errors import NonDeterminismError
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow
from platform_shim.workflows.records import RunStatus, StepKind, StepRecord, StepStatus

from .conftest import Opener

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ledgers"
T0 = (
    1_767_225_600_000  # 2026-01-01T00:00:00Z, the FakeClock's default start; fixtures count from it
)

calls: Counter[str] = Counter()
attempts: dict[str, list[int]] = {}


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    calls.clear()
    attempts.clear()


def body(name: str, value: Callable[[], Any]) -> Callable[[], Any]:
    """A step body that counts its calls."""

    def run() -> Any:
        calls[name] += 1
        return value()

    return run


# ------------------------------------------------------------------------- the workflow code


@define_workflow({"id": "golden-sleep"})
async def golden_sleep(input: Any, step: Any, ctx: Any) -> Any:
    profile = await step.run("fetch", body("fetch", lambda: {"user": input["user"], "plan": "?"}))
    await step.sleep("grace", "30s")
    notice = await step.run(
        "notify", body("notify", lambda: f"notified {profile['user']} ({profile['plan']})")
    )
    return {"profile": profile, "notice": notice}


@define_workflow({"id": "golden-approval"})
async def golden_approval(input: Any, step: Any, ctx: Any) -> Any:
    expense = input["expenseId"]
    await step.run("submit", body("submit", lambda: f"submitted {expense}"))
    decision = await step.wait_for_event(
        "approval", type="expense.decided", match={"expenseId": expense}, timeout="1h"
    )
    booked = await step.run("book", body("book", lambda: f"booked {expense} by {decision['by']}"))
    return {"decision": decision, "booked": booked}


@define_workflow({"id": "golden-charge"})
async def golden_charge(input: Any, step: Any, ctx: Any) -> Any:
    attempts.setdefault(ctx.run_id, []).append(ctx.attempt)
    order = input["order"]
    reservation = await step.run("reserve", body("reserve", lambda: {"reservation": "new"}))
    charge = await step.run(
        "charge", body("charge", lambda: f"charged {input['amount']} for {order}")
    )
    receipt = await step.run("receipt", body("receipt", lambda: f"receipt for {order}"))
    return [reservation, charge, receipt]


@define_workflow({"id": "golden-changed", "options": {"retries": 3}})
async def golden_changed(input: Any, step: Any, ctx: Any) -> Any:
    # The recorded run slept in step "x"; this version of the code runs a step there.
    first = await step.run("first", body("first", lambda: 1))
    return [first, await step.run("x", body("x", lambda: 2))]


@define_workflow({"id": "golden-pair"})
async def golden_pair(input: Any, step: Any, ctx: Any) -> Any:
    one = await step.run("one", body(f"{input}-one", lambda: f"{input}-one (new)"))
    two = await step.run("two", body(f"{input}-two", lambda: f"{input}-two (new)"))
    return [one, two]


@define_workflow({"id": "golden-invoice"})
async def golden_invoice(input: Any, step: Any, ctx: Any) -> Any:
    return await step.run(
        "build",
        body("build", lambda: {"invoice": f"inv-{input['order']}", "total": input["total"]}),
    )


@define_workflow({"id": "golden-invoker", "options": {"retries": 0}})
async def golden_invoker(input: Any, step: Any, ctx: Any) -> Any:
    total = await step.run("price", body("price", lambda: 0))
    child_input = {"order": input["order"], "total": total}
    return await step.invoke("invoice", "golden-invoice", child_input, timeout="1h")


# ---------------------------------------------------------------------------------- helpers


def install(fixture: str, data_dir: Path) -> int:
    """Copy a golden ledger into the data folder; returns its number of bytes."""
    data_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURES / fixture, data_dir / "runs.jsonl")
    return (data_dir / "runs.jsonl").stat().st_size


def appended(data_dir: Path, offset: int) -> list[dict[str, Any]]:
    """The records the worker wrote after the fixture's bytes."""
    return [
        orjson.loads(line)
        for line in (data_dir / "runs.jsonl").read_bytes()[offset:].splitlines()
        if line
    ]


def shape(history: list[StepRecord]) -> list[tuple[str, str, str, Any]]:
    return [(s.name, s.kind.value, s.status.value, s.output) for s in history]


# ------------------------------------------------------------------------------------ tests


async def test_a_sleep_whose_wake_time_passed_resumes_without_rerunning_steps(
    open_worker: Opener, data_dir: Path, clock: FakeClock
) -> None:
    size = install("sleep_wake_passed.jsonl", data_dir)
    clock.advance_to(T0 + 60_000)  # the worker was down for a minute; run-slept's wake passed
    async with open_worker([golden_sleep]) as platform:
        await platform.settle()
        slept = platform.workflows.handle("run-slept")
        assert await slept.result(timeout=5) == {
            "profile": {"user": "u1", "plan": "pro"},  # the recorded value, not the body's "?"
            "notice": "notified u1 (pro)",
        }
        assert calls == {"notify": 1}  # "fetch" replayed from the ledger, its body never called
        history = await slept.history()
        assert shape(history) == [
            ("fetch", "run", "completed", {"user": "u1", "plan": "pro"}),
            ("grace", "sleep", "completed", None),
            ("notify", "run", "completed", "notified u1 (pro)"),
        ]
        grace = history[1]
        assert (grace.wake_at, grace.completed_at) == (T0 + 30_005, T0 + 60_000)

        # run-later's wake time has not come: it stays parked (no task), then wakes on time.
        later = platform.workflows.handle("run-later")
        status = await later.status()
        assert status is not None
        assert status.status is RunStatus.SLEEPING
        clock.advance_to(T0 + 119_999)
        await platform.settle()
        status = await later.status()
        assert status is not None
        assert status.status is RunStatus.SLEEPING
        clock.advance_to(T0 + 120_000)
        assert await later.result(timeout=5) == {
            "profile": {"user": "u2", "plan": "free"},
            "notice": "notified u2 (free)",
        }
        # run-done was over before the crash: nothing of it ran again.
        done = await platform.workflows.handle("run-done").status()
        assert done is not None
        assert (done.status, done.completed_at) == (RunStatus.COMPLETED, T0 - 100_000 + 30_006)
    assert calls == {"notify": 2}
    new = appended(data_dir, size)
    assert [r["seq"] for r in new] == sorted(r["seq"] for r in new)
    assert new[0]["seq"] > 15
    steps = [(r["runId"], r["name"], r["status"]) for r in new if r["rec"] == "step"]
    assert steps == [
        ("run-slept", "grace", "completed"),
        ("run-slept", "notify", "completed"),
        ("run-later", "grace", "completed"),
        ("run-later", "notify", "completed"),
    ]  # no completed step recorded twice, nothing for run-done


async def test_a_wait_takes_the_oldest_matching_signal_recorded_while_the_worker_was_down(
    open_worker: Opener, data_dir: Path, clock: FakeClock
) -> None:
    size = install("wait_signal_recorded.jsonl", data_dir)
    clock.advance_to(T0 + 100_000)
    async with open_worker([golden_approval]) as platform:
        await platform.settle()
        waiting = platform.workflows.handle("run-waiting")
        # Not the signal sent before the run existed (no-race rule), not another expense's,
        # not another type's: the oldest matching one after the run's creation.
        assert await waiting.result(timeout=5) == {
            "decision": {"expenseId": "e1", "by": "alice"},
            "booked": "booked e1 by alice",
        }
        assert calls == {"book": 1}
        assert shape(await waiting.history()) == [
            ("submit", "run", "completed", "submitted e1"),
            ("approval", "wait_event", "completed", {"expenseId": "e1", "by": "alice"}),
            ("book", "run", "completed", "booked e1 by alice"),
        ]
        # e2's only signal was sent before run-still-waiting was created: it keeps waiting,
        # registered again by the recovery, and a new event resumes it.
        still = platform.workflows.handle("run-still-waiting")
        status = await still.status()
        assert status is not None
        assert status.status is RunStatus.WAITING_EVENT
        assert (
            await platform.workflows.send_event(
                "expense.decided", {"expenseId": "e2", "by": "erin"}
            )
            == 1
        )
        assert (await still.result(timeout=5))["decision"] == {"expenseId": "e2", "by": "erin"}
    taken = [r for r in appended(data_dir, size) if r["rec"] == "step" and r["name"] == "approval"]
    assert [r["runId"] for r in taken] == ["run-waiting", "run-still-waiting"]
    assert taken[0]["signalId"] == "sig-first"


async def test_a_step_in_flight_at_the_crash_runs_again_and_a_due_retry_resumes(
    open_worker: Opener, data_dir: Path, clock: FakeClock
) -> None:
    size = install("step_in_flight.jsonl", data_dir)
    clock.advance_to(T0 + 60_000)
    async with open_worker([golden_charge]) as platform:
        await platform.settle()
        crashed = platform.workflows.handle("run-crashed")
        assert await crashed.result(timeout=5) == [
            {"reservation": "r-o1"},
            "charged 42 for o1",
            "receipt for o1",
        ]
        retrying = platform.workflows.handle("run-retrying")
        assert await retrying.result(timeout=5) == [
            {"reservation": "r-o2"},
            "charged 7 for o2",
            "receipt for o2",
        ]
        # "reserve" was recorded for both: never called. "charge" had no record (in flight)
        # or a failed one from attempt 1: called once each, like "receipt".
        assert calls == {"charge": 2, "receipt": 2}
        assert attempts == {"run-crashed": [1], "run-retrying": [2]}
        status = await retrying.status()
        assert status is not None
        assert (status.attempt, status.error) == (2, None)
        history = await retrying.history()
        assert [(s.name, s.status.value, s.attempt) for s in history] == [
            ("reserve", "completed", 1),
            ("charge", "completed", 2),
            ("receipt", "completed", 2),
        ]
    steps = [(r["runId"], r["name"]) for r in appended(data_dir, size) if r["rec"] == "step"]
    assert sorted(steps) == sorted(
        [
            ("run-crashed", "charge"),
            ("run-crashed", "receipt"),
            ("run-retrying", "charge"),
            ("run-retrying", "receipt"),
        ]
    )


async def test_a_step_recorded_as_another_kind_fails_the_run_without_retry(
    open_worker: Opener, data_dir: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    install("nondeterminism.jsonl", data_dir)
    clock.advance_to(T0 + 60_000)  # the recorded sleep "x" is due: the run replays at once
    with caplog.at_level(logging.ERROR, logger="platform_shim.workflows"):
        async with open_worker([golden_changed]) as platform:
            await platform.settle()
            run = await platform.workflows.handle("run-changed-code").status()
            assert run is not None
            assert run.status is RunStatus.FAILED
            assert run.error is not None
            assert run.error["type"] == NonDeterminismError.__name__
            assert run.error.get("step") == "x"
            assert "recorded as 'sleep' but replay called it as 'run'" in run.error["message"]
            assert run.attempt == 1  # retries=3, yet no second attempt
            history = await platform.workflows.handle("run-changed-code").history()
            assert [(s.name, s.kind) for s in history] == [
                ("first", StepKind.RUN),
                ("x", StepKind.SLEEP),
            ]
            assert history[0].status is StepStatus.COMPLETED
    assert calls == {}  # neither body ran: "first" is replayed, "x" is refused
    assert any("without retry" in m for m in caplog.messages)


async def test_a_torn_last_line_and_a_corrupt_middle_line_are_skipped_and_the_rest_resumes(
    open_worker: Opener, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    install("torn_and_corrupt.jsonl", data_dir)
    with caplog.at_level(logging.WARNING, logger="platform_shim.store"):
        async with open_worker([golden_pair]) as platform:
            await platform.settle()
            a = platform.workflows.handle("run-a")
            b = platform.workflows.handle("run-b")
            # run-a lost its step record to the corrupt line 4: "one" runs again.
            assert await a.result(timeout=5) == ["a-one (new)", "a-two (new)"]
            # run-b kept "one" (line 7); "two" was the torn line 8: it runs again.
            assert await b.result(timeout=5) == ["b-one (recorded)", "b-two (new)"]
    assert calls == {"a-one": 1, "a-two": 1, "b-two": 1}
    messages = caplog.messages
    assert any("runs.jsonl:4: skipped a corrupt line" in m for m in messages), messages
    assert any("runs.jsonl:6: skipped an unreadable record" in m for m in messages), messages
    assert any("runs.jsonl:8: removed a torn line" in m for m in messages), messages

    # The first append cut the torn line off (nobody was told it was written): a reopen finds
    # no trace of it, loads the rest and finds every run finished.
    content = (data_dir / "runs.jsonl").read_bytes()
    assert b'"startedAt":17672256\n' not in content
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="platform_shim.store"):
        async with open_worker([golden_pair]) as platform:
            await platform.settle()
            runs = await platform.workflows.list()
            assert sorted((r.run_id, r.status) for r in runs) == [
                ("run-a", RunStatus.COMPLETED),
                ("run-b", RunStatus.COMPLETED),
            ]
    assert calls == {"a-one": 1, "a-two": 1, "b-two": 1}
    # The damage that is still there is reported again; the removed torn line is gone for good.
    assert any("runs.jsonl:4: skipped a corrupt line" in m for m in caplog.messages), (
        caplog.messages
    )
    assert not any("a torn line" in m for m in caplog.messages), caplog.messages


async def test_an_invoke_whose_child_ended_before_its_record_was_written_takes_the_childs_output(
    open_worker: Opener, data_dir: Path, clock: FakeClock
) -> None:
    install("invoke_child_ended.jsonl", data_dir)
    clock.advance_to(T0 + 60_000)
    async with open_worker([golden_invoker, golden_invoice]) as platform:
        await platform.settle()
        children = await platform.workflows.list(workflow_id="golden-invoice")
        assert [c.run_id for c in children] == ["run-parent-bc1da8c3cb93820795a140fa"]
        assert calls == {}  # neither the recorded "price" nor the child's "build" ran again
        parent = await platform.workflows.handle("run-parent").status()
        assert parent is not None
        # Was: waiting_event for a child that had completed at T0+4, until the invoke's timeout
        # failed the attempt and the retry started a second child.
        assert parent.status is RunStatus.COMPLETED
        assert parent.output == {"invoice": "inv-o9", "total": 99}
