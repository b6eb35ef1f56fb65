"""Waits and signals against a reference model (``tests/support/signal_model.py``).

A hypothesis state machine starts runs of random programs (run / sleep / wait steps, read by one
interpreter workflow), sends random events, moves a fake clock and restarts the worker; after
every rule it lets the worker settle and compares each run's status, output and history with
the model. Where the engine may legitimately take either of two orders (an event sent right
after ``start()``, before the new run reached its wait; events sent together), the returned
counts are checked against the bound the contract gives and the model keeps every state the
engine could be in, until the observed state tells them apart.

Bounded for CI; ``SIGNAL_MODEL_EXAMPLES=500 SIGNAL_MODEL_STEPS=60`` runs it longer.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Coroutine
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from platform_shim.platform import Platform
from platform_shim.runtime import open_platform
from platform_shim.testing import FakeClock
from platform_shim.workflows import define_workflow
from platform_shim.workflows.records import RunStatus, StepStatus
from tests.support.signal_model import (
    ModelStep,
    Program,
    Run,
    SignalModel,
    Sleep,
    Wait,
    encode_program,
    matches,
)

from .conftest import Opener

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# The workflow: one definition interprets its input as the program to run.


@define_workflow({"id": "program"})
async def program_workflow(input: Any, step: Any, ctx: Any) -> Any:
    results: list[Any] = []
    for index, spec in enumerate(input):
        name = f"s{index}"
        if spec["kind"] == "run":
            results.append(await step.run(name, lambda value=spec["value"]: value))
        elif spec["kind"] == "sleep":
            await step.sleep(name, spec["ms"])
            results.append(None)
        else:
            results.append(
                await step.wait_for_event(
                    name, type=spec["type"], match=spec["match"], timeout=spec["timeout"]
                )
            )
    return results


# ---------------------------------------------------------------------------------------------
# What to generate: a tiny space, so that waits and events collide often.

TYPES = st.sampled_from(["a", "b"])
# `true` next to 1, also nested: matching is JSON equality, never Python's 1 == True.
VALUES = st.sampled_from([1, 2, True, [1], [True]])
MATCHES = st.none() | st.fixed_dictionaries({}, optional={"u": VALUES, "w": VALUES})
_OBJECTS = st.fixed_dictionaries({"u": VALUES}, optional={"w": VALUES})
PAYLOADS: st.SearchStrategy[Any] = st.one_of(
    st.sampled_from([None, {}]), _OBJECTS, _OBJECTS, _OBJECTS
)  # mostly objects
# A few round durations make timers come due together; any other duration can still be drawn.
# No zero timeout: a wait that times out the instant it is reached races with an event sent at
# that same instant, and either outcome is right; every other outcome here is decided.
_MS = st.sampled_from([500, 1000, 1500]) | st.integers(1, 3000)
WAITS = st.builds(Wait, TYPES, MATCHES, st.none() | _MS)
STEPS: st.SearchStrategy[Run | Sleep | Wait] = st.one_of(  # waits twice as often as the others
    WAITS, st.builds(Run, st.integers(0, 9)), st.builds(Sleep, st.just(0) | _MS), WAITS
)
# Two like waits in a row (the same type and match) compete for the same events.
_CHUNKS = st.one_of(STEPS.map(lambda step: (step,)), WAITS.map(lambda wait: (wait, wait)))
PROGRAMS: st.SearchStrategy[Program] = st.lists(_CHUNKS, min_size=1, max_size=4).map(
    lambda chunks: tuple(step for chunk in chunks for step in chunk)
)
MAX_RUNS = 6
# Restarting costs more than any other rule (it opens a worker); after one rule in five.
SOMETIMES = st.sampled_from([False, False, False, False, True])
MAX_MODELS = 16  # states the engine may be in after racy rules, before observation prunes them


# Opening and closing a worker syncs its files, about 35 ms on this machine's disk against 5 ms in
# memory; the semantics under test do not depend on the disk, and restarts still read the files.
_MEMORY_FOLDER = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def _observed_step(record: Any) -> ModelStep:
    return ModelStep(
        record.name,
        record.kind.value,
        record.status.value,
        record.output,
        wake_at=record.wake_at,
        timeout_at=record.timeout_at,
    )


RunView = tuple[str, Any, list[ModelStep]]  # status, output, history


def _expected(model: SignalModel) -> list[RunView]:
    return [(run.status, run.output, list(run.history)) for run in model.runs]


def _json(value: object) -> str:
    """Compared as JSON text, not with Python's ``==``, for which ``true`` equals ``1``."""
    if isinstance(value, ModelStep):
        value = dataclasses.astuple(value)
    elif isinstance(value, tuple):
        status, output, history = value
        value = [status, output, [dataclasses.astuple(step) for step in history]]
    return json.dumps(value, sort_keys=True)


def _fingerprint(model: SignalModel) -> object:
    return (
        model.now,
        [(s.seq, s.type, repr(s.payload)) for s in model.signals],
        [(repr(r.results), repr(r.history), sorted(r.taken), r.due) for r in model.runs],
    )


class SignalMachine(RuleBasedStateMachine):
    """The real engine (a worker on a fake clock) beside the model, driven by the same rules."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="signal-model-", dir=_MEMORY_FOLDER))
        self.clock = FakeClock()
        self.loop = asyncio.new_event_loop()
        # One context for every call: open_platform sets a context variable on entry and
        # resets it on exit, which must happen in the same context.
        self.context = contextvars.copy_context()
        self.models = [SignalModel(self.clock.now_ms())]
        self.run_ids: list[str] = []
        self.worker: AbstractAsyncContextManager[Platform] | None = None
        self.platform = self._open()

    # -------------------------------------------------------------------------- plumbing

    def _do(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(self.loop.create_task(coro, context=self.context))

    def _open(self) -> Platform:
        self.worker = open_platform(
            self.folder / "data",
            workflows=[program_workflow],
            clock=self.clock,
            durability="flush",
            watch=False,
            retry_backoff=lambda attempt: 0,
        )
        return self._do(self.worker.__aenter__())

    def _close(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            self._do(worker.__aexit__(None, None, None))

    def teardown(self) -> None:
        try:
            self._close()
        finally:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()
            shutil.rmtree(self.folder, ignore_errors=True)

    def _branch(self, outcomes: list[SignalModel], what: str, allowed: list[Any]) -> None:
        """Keep the model states still possible (deduplicated), at least one."""
        assert outcomes, f"{what}, but the model allows {allowed} (runs: {self._programs()})"
        unique: dict[str, SignalModel] = {}
        for model in outcomes:
            unique.setdefault(repr(_fingerprint(model)), model)
        self.models = list(unique.values())[:MAX_MODELS]

    # ----------------------------------------------------------------------------- rules

    @precondition(lambda self: len(self.run_ids) < MAX_RUNS)
    @rule(program=PROGRAMS)
    def start(self, program: Program) -> None:
        handle = self._do(self.platform.workflows.start("program", encode_program(program)))
        self.run_ids.append(handle.run_id)
        for model in self.models:
            model.start(program)

    @precondition(lambda self: len(self.run_ids) < MAX_RUNS)
    @rule(program=PROGRAMS, type=TYPES, payload=PAYLOADS)
    def start_and_send_at_once(self, program: Program, type: str, payload: Any) -> None:
        """An event sent right after ``start()``: the new run takes it whether or not it had
        reached its wait (the no-race rule); only the count tells which."""

        async def both() -> tuple[str, int]:
            handle = await self.platform.workflows.start("program", encode_program(program))
            return handle.run_id, await self.platform.workflows.send_event(type, payload)

        run_id, count = self._do(both())
        self.run_ids.append(run_id)
        outcomes, allowed = [], []
        for model in self.models:
            reached = copy.deepcopy(model)  # the run parked on its wait before the event came
            reached.start(program)
            allowed.append(reached.send_event(type, payload))
            if allowed[-1] == count:
                outcomes.append(reached)
            late = copy.deepcopy(model)  # the event came before the run got going
            run = late.start(program, proceed=False)
            allowed.append(late.send_event(type, payload))
            if allowed[-1] == count:
                late.proceed(run)
                outcomes.append(late)
        what = f"send_event({type!r}, {payload!r}) right after start returned {count}"
        self._branch(outcomes, what, sorted(set(allowed)))

    @rule(type=TYPES, payload=PAYLOADS, restart_at_once=SOMETIMES)
    def send_event(self, type: str, payload: Any, restart_at_once: bool) -> None:
        """Every run is parked or done, so the count is exact. Restarting at once stops the
        runs it resumed in the middle of their activations."""
        count = self._do(self.platform.workflows.send_event(type, payload))
        allowed = [model.send_event(type, payload) for model in self.models]
        outcomes = [
            m for m, expected in zip(self.models, allowed, strict=True) if expected == count
        ]
        self._branch(outcomes, f"send_event({type!r}, {payload!r}) returned {count}", allowed)
        if restart_at_once:
            self._close()
            self.platform = self._open()

    @rule(events=st.lists(st.tuples(TYPES, PAYLOADS), min_size=2, max_size=4))
    def send_events_together(self, events: list[tuple[str, Any]]) -> None:
        """Events sent concurrently. A run resumed by one may still be replaying when the next
        comes, so that one counts it only if its wait was already registered: each count is at
        most the model's (the first is exact), and the runs end up the same."""

        async def send_all() -> list[int]:
            sends = (self.platform.workflows.send_event(t, p) for t, p in events)
            return list(await asyncio.gather(*sends))

        counts = self._do(send_all())
        outcomes, allowed = [], []
        for model in self.models:
            expected = [model.send_event(t, p) for t, p in events]
            allowed.append(f"{expected[:1]} then at most {expected[1:]}")
            if counts[0] == expected[0] and all(
                c <= e for c, e in zip(counts, expected, strict=True)
            ):
                outcomes.append(model)
        self._branch(outcomes, f"send_event of {events} together returned {counts}", allowed)

    @rule(ms=st.integers(1, 4000), restart_at_once=SOMETIMES)
    def advance_clock(self, ms: int, restart_at_once: bool) -> None:
        """One jump: every timer due by then fires; the runs go on at the new time."""
        self._advance_to(self.clock.now_ms() + ms, restart_at_once)

    @precondition(lambda self: self.models[0].next_due() is not None)
    @rule(restart_at_once=SOMETIMES)
    def advance_to_next_timer(self, restart_at_once: bool) -> None:
        """Exactly to the next sleep's end or wait's timeout (time moves as a real clock would)."""
        when = self.models[0].next_due()
        assert when is not None
        self._advance_to(when, restart_at_once)

    def _advance_to(self, when: int, restart_at_once: bool) -> None:
        """Restarting at once stops the runs the timers woke before they went on."""

        async def advance() -> None:  # timers fire inside the loop, as they would in a host
            self.clock.advance_to(when)

        self._do(advance())
        for model in self.models:
            model.advance_to(when)
        if restart_at_once:
            self._close()
            self.platform = self._open()

    @rule(compact=st.booleans())
    def restart(self, compact: bool) -> None:
        """Stop the worker and open the folder again (after a compaction, which must keep
        every signal a live run could still take)."""
        if compact:
            assert self.platform.worker is not None
            self._do(self.platform.worker.compact())
        self._close()
        self.platform = self._open()

    # ------------------------------------------------------------------------ invariant

    @invariant()
    def every_run_is_as_the_model_says(self) -> None:
        self._do(self.platform.settle(timeout=60))
        observed = self._do(self._observe())
        seen = [_json(view) for view in observed]
        possible = [m for m in self.models if [_json(v) for v in _expected(m)] == seen]
        if not possible:
            self._explain(observed)
        self.models = possible

    def _programs(self) -> list[str]:
        return [f"#{run.index} {run.program}" for run in self.models[0].runs]

    async def _observe(self) -> list[RunView]:
        observed = []
        for run_id in self.run_ids:
            handle = self.platform.workflows.handle(run_id)
            status = await handle.status()
            assert status is not None, f"run {run_id} is gone"
            history = [_observed_step(record) for record in await handle.history()]
            observed.append((status.status.value, status.output, history))
        return observed

    def _explain(self, observed: list[RunView]) -> None:
        model = self.models[0]
        lines = [f"the engine differs from the model (now={self.clock.now_ms()}):"]
        for run, seen in zip(model.runs, observed, strict=True):
            want = (run.status, run.output, run.history)
            if _json(want) != _json(seen):
                lines.append(f"run #{run.index} program={run.program}")
                lines.append(f"  model:  status={want[0]} output={want[1]}")
                lines.append(f"  engine: status={seen[0]} output={seen[1]}")
                for a, b in zip(want[2] + [None] * 9, seen[2] + [None] * 9, strict=False):
                    if _json(a) != _json(b):
                        lines.append(f"  step model={a}\n       engine={b}")
                        break
        raise AssertionError("\n".join(lines))


TestSignalModel = SignalMachine.TestCase
TestSignalModel.pytestmark = [pytest.mark.slow]
TestSignalModel.settings = settings(
    max_examples=int(os.environ.get("SIGNAL_MODEL_EXAMPLES", "60")),
    stateful_step_count=int(os.environ.get("SIGNAL_MODEL_STEPS", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


# ---------------------------------------------------------------------------------------------
# The reproduction from issue 10, item 1, as a plain example.


async def test_one_event_is_taken_by_at_most_one_wait_of_a_run(
    open_worker: Opener, clock: FakeClock
) -> None:
    @define_workflow({"id": "replies"})
    async def replies(input: Any, step: Any, ctx: Any) -> Any:
        await step.sleep("grace", "1500ms")
        r1 = await step.wait_for_event("r1", type="acc.reply", match={"u": "u1"}, timeout="10s")
        r2 = await step.wait_for_event("r2", type="acc.reply", match={"u": "u1"}, timeout="1s")
        return [r1, r2]

    async with open_worker([replies]) as platform:
        handle = await platform.workflows.start("replies")
        await platform.settle()
        # Sent during the sleep: no wait is parked yet (0), and the event is kept for r1.
        assert await platform.workflows.send_event("acc.reply", {"u": "u1"}) == 0
        clock.advance("1500ms")
        await platform.settle()
        history = {step.name: step for step in await handle.history()}
        assert history["r1"].status is StepStatus.COMPLETED
        assert history["r1"].output == {"u": "u1"}
        assert history["r2"].status is StepStatus.PENDING, "r2 took the event r1 already took"
        assert (await handle.status()).status is RunStatus.WAITING_EVENT  # type: ignore[union-attr]
        clock.advance("1s")
        await platform.settle()
        run = await handle.status()
        assert run is not None and run.status is RunStatus.COMPLETED
        assert run.output == [{"u": "u1"}, None]


# ---------------------------------------------------------------------------------------------
# The model itself, on cases the contract spells out (an oracle is only as good as its answers).


def test_the_model_answers_the_reproduction_as_the_contract_does() -> None:
    model = SignalModel(0)
    run = model.start(
        (Sleep(1500), Wait("acc.reply", {"u": "u1"}, 10_000), Wait("acc.reply", {"u": "u1"}, 1000))
    )
    assert model.send_event("acc.reply", {"u": "u1"}) == 0
    model.advance_to(1500)
    assert (run.status, run.results, run.due) == ("waiting_event", [None, {"u": "u1"}], 2500)
    model.advance_to(2500)
    assert run.output == [None, {"u": "u1"}, None]


def test_the_model_takes_events_after_creation_oldest_first_once_per_run() -> None:
    model = SignalModel(0)
    model.send_event("a", {"n": 0})  # before the run: never taken
    first = model.start((Sleep(10), Wait("a", None, None), Wait("a", None, None)))
    model.send_event("a", {"n": 1})
    model.send_event("a", {"n": 2})
    second = model.start((Wait("a", None, None),))
    assert second.status == "waiting_event"
    model.advance_to(10)
    assert first.output == [None, {"n": 1}, {"n": 2}]
    assert model.send_event("a", {"n": 3}) == 1  # the second run's wait, parked
    assert second.output == [{"n": 3}]


def test_the_models_matching_is_json_equality() -> None:
    assert matches({"u": 1}, {"u": 1, "w": 2})
    assert not matches({"u": 1}, {"u": True})
    assert not matches({"u": [1]}, {"u": [True]})
    assert not matches({"u": 1}, {"w": 1})
    assert not matches({"u": 1}, None)
    assert matches(None, None) and matches({}, 3)
