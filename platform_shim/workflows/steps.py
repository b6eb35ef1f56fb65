"""The step API a workflow handler receives: ``run``, ``sleep``, ``sleep_until``,
``wait_for_event`` and ``invoke``.

Each call looks its step up by name in the run's recorded steps (a dict: O(1), so replaying a
history of n steps costs n lookups). A completed step returns its recorded value and nothing
runs. A new step either runs (``run``), or records that the run now waits, *parks* it (its
timer armed, its wait indexed) and suspends: the coroutine awaits the step's outcome, so code
around it (``finally``, ``with``, ``async with``) behaves as Python promises. Parallel calls
(``asyncio.gather``, ``TaskGroup``) each park and resume on their own, found by their names.

A suspended run holds its coroutine only while its host is up and the engine's cache of
suspended runs has room; when it is evicted, or the worker stops, the coroutine is unwound
(``Stop``: no ``step.*`` call made while unwinding runs or is recorded), and its next wake-up
replays the handler from the top against the recorded steps, as after a restart.

Size (over 400 lines, on purpose): one class, the public step API; each method is the replay
protocol of one step kind, and they share the activation's bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from platform_shim.durations import parse_duration_ms
from platform_shim.errors import (
    DuplicateStepName,
    NonDeterminismError,
    StepFailed,
    StepOutputTooLarge,
    UnknownWorkflow,
)
from platform_shim.jsonvalue import dumps, loads
from platform_shim.workflows import recovery
from platform_shim.workflows.records import StepKind, StepStatus
from platform_shim.workflows.state import RunState, StepState
from platform_shim.workflows.suspension import Stop
from platform_shim.workflows.traces import describe_error

if TYPE_CHECKING:
    from platform_shim.workflows.engine import Engine

__all__ = ["Step", "Stop", "describe_error"]

P = ParamSpec("P")
T = TypeVar("T")

_WAIT_OPTION_KEYS = {"type", "match", "timeout"}
_INVOKE_OPTION_KEYS = {"timeout", "onParentClose"}
_DEFAULT_INVOKE_TIMEOUT = "1h"


def child_run_id(parent_run_id: str, step_name: str, attempt: int) -> str:
    """The id of the child an ``invoke`` starts: derived, so a replay finds the same child."""
    digest = hashlib.blake2b(
        f"{parent_run_id}\x00{step_name}\x00{attempt}".encode(), digest_size=12
    )
    return f"{parent_run_id[:26]}-{digest.hexdigest()}"


def _epoch_ms(when: object, step: str) -> int:
    if isinstance(when, datetime):
        if when.tzinfo is None:
            raise ValueError(
                f"sleep_until for step {step!r} needs an aware datetime (with a tzinfo), not {when!r}"
            )
        return int(when.timestamp() * 1000)
    if isinstance(when, bool) or not isinstance(when, int | float):
        raise ValueError(
            f"sleep_until for step {step!r} needs epoch milliseconds or a datetime, not {when!r}"
        )
    return int(when)


def _counted(
    method: Callable[Concatenate[Step, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[Step, P], Coroutine[Any, Any, T]]:
    """Count the step call as busy while it runs (not while it is suspended on an outcome):
    ``Engine.parked`` tells a suspended activation from a working one by it."""

    @functools.wraps(method)
    async def counted(self: Step, /, *args: P.args, **kwargs: P.kwargs) -> T:
        self.calls += 1
        try:
            return await method(self, *args, **kwargs)
        except Exception as exc:
            # Whatever a step call raises (a bad duration, a failed body) names that step; an
            # error raised by code between steps names none.
            if getattr(exc, "step", None) is None and args and isinstance(args[0], str):
                with contextlib.suppress(AttributeError):
                    exc.step = args[0]  # type: ignore[attr-defined]
            raise
        finally:
            self.calls -= 1

    return counted


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a step name must be a non-empty string, not {name!r}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (from os.listdir, say) cannot be written to the ledger: refused here,
        # rather than failing the record and re-running the step forever.
        raise ValueError(
            f"step name {name!r} cannot be encoded as UTF-8 (it holds a lone surrogate)"
        ) from None
    return name


class Step:
    """The ``step`` argument of a workflow handler: one activation of one run.

    A step that must wait suspends the activation (its coroutine awaits the step's outcome)
    instead of unwinding it: ``finally`` blocks and ``async with`` exits run when the code
    around them finishes, as in any Python. Several ``step.*`` calls may be awaited at once
    (``asyncio.gather``, ``TaskGroup``); each is found by its name.
    """

    __slots__ = (
        "_engine",
        "_run",
        "_seen",
        "calls",
        "recovering",
        "suspended",
        "unwinding",
        "waits",
    )

    def __init__(self, engine: Engine, run: RunState, *, recovering: bool = False) -> None:
        self._engine = engine
        self._run = run
        self._seen: set[str] = set()
        # True once this activation is being unwound (evicted or stopped): every step.* call
        # then raises Stop, so nothing runs and nothing is recorded.
        self.unwinding = False
        self.suspended = 0  # how many of its step calls await an outcome right now
        self.calls = 0  # step calls doing something (running a body, writing) right now
        self.waits: set[asyncio.Future[StepState]] = set()  # outcomes awaited right now
        # The first activation after a restart of a run that was running: step bodies it
        # starts are marked on disk first, so a body that kills the process is counted.
        self.recovering = recovering

    def _enter(self, name: str, kind: StepKind) -> StepState | None:
        _check_name(name)
        run = self._run
        if run.ending or run.status.terminal or self.unwinding:
            raise Stop
        if name in self._seen:
            raise DuplicateStepName(run.run_id, name)
        self._seen.add(name)
        step = run.steps.get(name)
        if step is not None and step.kind is not kind:
            raise NonDeterminismError(run.run_id, name, step.kind.value, kind.value)
        return step

    def _check_live(self) -> None:
        """After an await: the run may have ended, or its activation be unwinding."""
        run = self._run
        if run.ending or run.status.terminal or self.unwinding:
            raise Stop

    async def _wait(self, pending: StepState) -> StepState:
        """Suspend until ``pending`` (parked) is finished; returns the record that finished it."""
        if pending.done is not None:
            return pending.done  # finished while this activation had not reached it yet
        engine = self._engine
        future: asyncio.Future[StepState] = asyncio.get_running_loop().create_future()
        pending.resume = future
        self.suspended += 1
        self.calls -= 1
        self.waits.add(future)
        # Only a run suspended in its handler's own task (no parallel branch open: a gather or
        # TaskGroup would hold that task) may be evicted; a branch of a parallel section that
        # has not reached its step yet, or awaits plain code, cannot be seen from here, and
        # unwinding would lose it.
        engine.suspended.suspending(self._run, evictable=asyncio.current_task() is self._run.task)
        try:
            done = await future
        finally:
            pending.resume = None
            self.suspended -= 1
            self.calls += 1
            self.waits.discard(future)
            if self.suspended == 0:
                engine.suspended.discard(self._run)
        self._check_live()
        return done

    def _parked(self, pending: StepState) -> None:
        """A recorded pending step reached on replay: make sure what ends it is armed."""
        if pending.done is None:
            self._engine.waiting.park(self._run, pending)

    # -------------------------------------------------------------------------------- run

    @_counted
    async def run(self, name: str, fn: Callable[[], Any], *, inline: bool = False) -> Any:
        """Run ``fn`` once and record its JSON result; on replay return the record instead.

        ``fn`` may be sync or async; if it returns an awaitable, that is awaited on the event
        loop. A sync ``fn`` runs in a worker thread (so ``time.sleep`` or a blocking client
        stalls nothing else), unless ``inline=True`` keeps a trivial one on the loop.
        """
        step = self._enter(name, StepKind.RUN)
        run = self._run
        engine = self._engine
        if step is not None:
            if step.status is StepStatus.COMPLETED:
                return loads(step.output) if step.output is not None else None
            if step.status is StepStatus.FAILED and step.attempt == run.attempt:
                # A failure the handler caught before: replay it the same way.
                error = step.error or {}
                raise StepFailed(
                    name, str(error.get("type", "Error")), str(error.get("message", ""))
                )
        if not callable(fn):
            raise TypeError(f"step {name!r}: step.run needs a function, not {fn!r}")
        await engine.writer.barrier(run)
        self._check_live()
        if self.recovering:
            await recovery.mark_attempting(engine, run, name)
            self._check_live()
        started = engine.clock.now_ms()
        try:
            result = await engine.bodies.call(fn, inline=inline)
        except Exception as exc:
            self._check_live()
            self._record_failure(name, started, exc)
            raise StepFailed(name, type(exc).__name__, str(exc)) from exc
        # The body may have swallowed a cancellation and returned: nothing is recorded for a
        # run that ended or an activation that is unwinding.
        self._check_live()
        try:
            output = dumps(result, f"output of step {name!r} in run {run.run_id!r}")
            if len(output) > engine.output_limit:
                raise StepOutputTooLarge(name, len(output), engine.output_limit)
        except (TypeError, ValueError, StepOutputTooLarge) as exc:
            self._record_failure(name, started, exc)
            raise
        self.recovering = False
        engine.writer.record_step(
            run,
            StepState(
                name,
                StepKind.RUN,
                StepStatus.COMPLETED,
                run.attempt,
                started,
                completed_at=engine.clock.now_ms(),
                output=output,
            ),
        )
        # The parsed record, not `result`: exactly what a replay will return.
        return loads(output)

    def _record_failure(self, name: str, started: int, exc: BaseException) -> None:
        engine, run = self._engine, self._run
        self.recovering = False
        engine.writer.record_step(
            run,
            StepState(
                name,
                StepKind.RUN,
                StepStatus.FAILED,
                run.attempt,
                started,
                completed_at=engine.clock.now_ms(),
                error=describe_error(exc),
            ),
        )

    # ------------------------------------------------------------------------------ sleep

    @_counted
    async def sleep(self, name: str, duration: int | float | str | timedelta) -> None:
        """Park the run for ``duration`` (ms, ``timedelta``, or ``"500ms"``/``"30s"``/``"5m"``/
        ``"1h"``/``"7d"``), also across restarts."""
        step = self._enter(name, StepKind.SLEEP)
        if step is None:
            delay = parse_duration_ms(duration, f"step {name!r}")
            await self._sleep_new(name, self._engine.clock.now_ms() + delay)
        else:
            await self._sleep_recorded(step)

    @_counted
    async def sleep_until(self, name: str, when: int | float | datetime) -> None:
        """Park the run until ``when`` (epoch ms or an aware datetime); a past time returns at once."""
        step = self._enter(name, StepKind.SLEEP)
        if step is None:
            await self._sleep_new(name, _epoch_ms(when, name))
        else:
            await self._sleep_recorded(step)

    async def _sleep_new(self, name: str, wake_at: int) -> None:
        engine, run = self._engine, self._run
        now = engine.clock.now_ms()
        if wake_at <= now:
            engine.writer.record_step(
                run,
                StepState(
                    name,
                    StepKind.SLEEP,
                    StepStatus.COMPLETED,
                    run.attempt,
                    now,
                    completed_at=now,
                    wake_at=wake_at,
                ),
            )
            return
        step = StepState(
            name, StepKind.SLEEP, StepStatus.PENDING, run.attempt, now, wake_at=wake_at
        )
        engine.writer.record_step(run, step)
        engine.waiting.park(run, step)
        await self._wait(step)

    async def _sleep_recorded(self, step: StepState) -> None:
        if step.status is StepStatus.COMPLETED:
            return
        self._parked(step)
        await self._wait(step)

    # ----------------------------------------------------------------------------- events

    @_counted
    async def wait_for_event(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        type: str | None = None,
        match: Mapping[str, Any] | None = None,
        timeout: int | float | str | timedelta | None = None,
    ) -> Any:
        """Park until ``send_event(type, payload)`` with every ``match`` key equal in the
        payload; return the payload, or None if ``timeout`` elapses first. The seed's form
        ``wait_for_event(name, {"type": ..., "match": ..., "timeout": ...})`` works too."""
        if options is not None:
            if not isinstance(options, Mapping):
                raise ValueError(
                    f"wait_for_event options for step {name!r} must be a dict, not {options!r}"
                )
            unknown = set(options) - _WAIT_OPTION_KEYS
            if unknown:
                raise ValueError(
                    f"unknown wait_for_event option(s) {sorted(unknown)} for step {name!r}"
                )
            type = options.get("type", type)
            match = options.get("match", match)
            timeout = options.get("timeout", timeout)
        if not isinstance(type, str) or not type:
            raise ValueError(
                f"wait_for_event for step {name!r} needs type= as a non-empty string, not {type!r}"
            )
        if match is not None and not isinstance(match, Mapping):
            raise ValueError(
                f"wait_for_event match for step {name!r} must be a dict, not {match!r}"
            )
        step = self._enter(name, StepKind.WAIT_EVENT)
        engine, run = self._engine, self._run
        if step is not None:
            if step.status is StepStatus.COMPLETED:
                return loads(step.output) if step.output is not None else None
            if step.done is None:
                taken = engine.waiting.take_waiting_signal(run, step, resume=False)
                if taken is not None:
                    return loads(taken.payload)
            self._parked(step)
            done = await self._wait(step)
            return loads(done.output) if done.output is not None else None
        match_copy = (
            loads(dumps(dict(match), f"match of step {name!r}")) if match is not None else None
        )
        now = engine.clock.now_ms()
        timeout_at = (
            None
            if timeout is None
            else now + parse_duration_ms(timeout, f"timeout of step {name!r}")
        )
        signal = engine.state.oldest_signal(run, type, match_copy)
        if signal is not None or (timeout_at is not None and timeout_at <= now):
            payload = signal.payload if signal is not None else b"null"
            engine.writer.record_step(
                run,
                StepState(
                    name,
                    StepKind.WAIT_EVENT,
                    StepStatus.COMPLETED,
                    run.attempt,
                    now,
                    completed_at=now,
                    output=payload,
                    event_type=type,
                    match=match_copy,
                    timeout_at=timeout_at,
                    signal_id=signal.signal_id if signal is not None else None,
                ),
            )
            return loads(payload)
        step = StepState(
            name,
            StepKind.WAIT_EVENT,
            StepStatus.PENDING,
            run.attempt,
            now,
            event_type=type,
            match=match_copy,
            timeout_at=timeout_at,
        )
        engine.writer.record_step(run, step)
        engine.waiting.park(run, step)
        done = await self._wait(step)
        return loads(done.output) if done.output is not None else None

    # ----------------------------------------------------------------------------- invoke

    @_counted
    async def invoke(
        self,
        name: str,
        workflow_id: str,
        input: Any = None,
        options: Mapping[str, Any] | int | float | str | timedelta | None = None,
        *,
        timeout: int | float | str | timedelta | None = None,
        on_parent_close: str | None = None,
    ) -> Any:
        """Start child workflow ``workflow_id`` once, park until it ends, return its output.

        A child that fails or is cancelled raises ``WorkflowFailed``/``WorkflowCancelled`` here;
        one that outlives ``timeout`` (default 1 hour) raises ``StepTimeout`` and is cancelled.
        When this run ends (failed, timed out, cancelled) a child still running is cancelled
        too, unless ``on_parent_close="abandon"``. The seed's form,
        ``invoke(name, workflow_id, input, {"timeout": "2h"})``, works too (the dict may also
        hold ``"onParentClose"``); so does a duration in that place.
        """
        if options is not None and not isinstance(options, Mapping):
            if timeout is not None:
                raise ValueError(
                    f"invoke for step {name!r} got two timeouts: {options!r} and {timeout!r}"
                )
            options = {"timeout": options}
        if options is not None:
            unknown = set(options) - _INVOKE_OPTION_KEYS
            if unknown:
                raise ValueError(
                    f"unknown invoke option(s) {sorted(unknown)} for step {name!r}; "
                    f"known: {sorted(_INVOKE_OPTION_KEYS)}"
                )
            if "timeout" in options:
                if timeout is not None:
                    raise ValueError(
                        f"invoke for step {name!r} got a timeout both in options and as timeout="
                    )
                timeout = options["timeout"]
            on_parent_close = options.get("onParentClose", on_parent_close)
        if timeout is None:
            timeout = _DEFAULT_INVOKE_TIMEOUT
        if on_parent_close not in (None, "cancel", "abandon"):
            raise ValueError(
                f"invoke on_parent_close for step {name!r} must be 'cancel' or 'abandon', "
                f"not {on_parent_close!r}"
            )
        step = self._enter(name, StepKind.INVOKE)
        engine, run = self._engine, self._run
        if step is not None:
            if step.status is StepStatus.COMPLETED:
                return loads(step.output) if step.output is not None else None
            if step.status is StepStatus.FAILED and step.attempt == run.attempt:
                raise self._child_error(step)
            if step.status is StepStatus.PENDING:
                if step.done is None:
                    if engine.state.workflow_of(step.child_run_id or "") is None:
                        # Its creation was lost (a failed write): start it now, from this call.
                        self._check_child(workflow_id)
                        input_bytes = self._child_input(name, workflow_id, input)
                        engine.start_child(run, step, workflow_id, input_bytes)
                    settled = engine.waiting.settle_invoke(run, step, resume=False)
                    if settled is not None:
                        return self._invoke_outcome(settled)
                self._parked(step)
                return self._invoke_outcome(await self._wait(step))
        self._check_child(workflow_id)
        input_bytes = self._child_input(name, workflow_id, input)
        wait = parse_duration_ms(timeout, f"timeout of step {name!r}")
        await engine.writer.barrier(run)
        self._check_live()
        now = engine.clock.now_ms()
        child_id = child_run_id(run.run_id, name, run.attempt)
        step = StepState(
            name,
            StepKind.INVOKE,
            StepStatus.PENDING,
            run.attempt,
            now,
            timeout_at=now + wait,
            child_run_id=child_id,
            on_parent_close="abandon" if on_parent_close == "abandon" else None,
        )
        # The child first: if we die between the two writes, the replay finds the child by its
        # derived id and records the pending step then.
        engine.start_child(run, step, workflow_id, input_bytes)
        engine.writer.record_step(run, step)
        # The child may exist and have ended already: a crash lost this step's record after the
        # child was created, and this replay found it by its derived id.
        settled = engine.waiting.settle_invoke(run, step, resume=False)
        if settled is not None:
            return self._invoke_outcome(settled)
        engine.waiting.park(run, step)
        return self._invoke_outcome(await self._wait(step))

    def _check_child(self, workflow_id: object) -> None:
        registry = self._engine.registry
        if not isinstance(workflow_id, str) or registry.get(workflow_id) is None:
            raise UnknownWorkflow(str(workflow_id), registry.ids())

    @staticmethod
    def _child_input(name: str, workflow_id: str, input: Any) -> bytes:
        return dumps(input, f"input of step {name!r} (workflow {workflow_id!r})")

    def _child_error(self, step: StepState) -> Exception:
        error = self._engine.waiting.child_error(step)
        error.step = step.name  # type: ignore[attr-defined]
        return error

    def _invoke_outcome(self, step: StepState) -> Any:
        if step.status is StepStatus.COMPLETED:
            return loads(step.output) if step.output is not None else None
        raise self._child_error(step)
