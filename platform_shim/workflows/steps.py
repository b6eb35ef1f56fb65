"""The step API a workflow handler receives: ``run``, ``sleep``, ``sleep_until``,
``wait_for_event`` and ``invoke``.

Each call looks its step up by name in the run's recorded steps (a dict: O(1), so replaying a
history of n steps costs n lookups). A completed step returns its recorded value and nothing
runs. A new step either runs (``run``), or records that the run now waits and *parks* it: it
raises a private ``BaseException`` that unwinds the handler, so the run holds no task and no
thread while it waits, and a user's ``except Exception`` cannot swallow it. The engine resumes
the run later by calling the handler again from the top; everything before the parked step
replays from the ledger.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
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
from platform_shim.workflows.records import StepKind, StepStatus
from platform_shim.workflows.state import RunState, StepState

if TYPE_CHECKING:
    from platform_shim.workflows.engine import Engine

__all__ = ["Park", "Step", "Stop"]

_WAIT_OPTION_KEYS = {"type", "match", "timeout"}
_DEFAULT_INVOKE_TIMEOUT = "1h"


class Park(BaseException):
    """Unwinds a handler whose run now waits (sleep, event, child). Never reaches user code's
    ``except Exception``; the engine catches it and ends the activation."""


class Stop(BaseException):
    """Unwinds a handler whose run was cancelled or timed out while it ran."""


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


def describe_error(exc: BaseException, step: str | None = None) -> dict[str, Any]:
    """An exception as the JSON error a run or step records (type, message, step)."""
    if isinstance(exc, StepFailed):
        error: dict[str, Any] = {"type": exc.error_type, "message": exc.message}
    else:
        error = {"type": type(exc).__name__, "message": str(exc)}
    if step is not None:
        error["step"] = step
    return error


_P = ParamSpec("_P")
_T = TypeVar("_T")


def _ends_step(
    method: Callable[Concatenate[Step, _P], Awaitable[_T]],
) -> Callable[Concatenate[Step, _P], Awaitable[_T]]:
    """A step call that returned is over: an error raised after it, outside any step, names none."""

    @functools.wraps(method)
    async def call(self: Step, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        result = await method(self, *args, **kwargs)
        self.current = None
        return result

    return call


class Step:
    """The ``step`` argument of a workflow handler: one replay pass over one run."""

    __slots__ = ("_engine", "_run", "_seen", "current")

    def __init__(self, engine: Engine, run: RunState) -> None:
        self._engine = engine
        self._run = run
        self._seen: set[str] = set()
        self.current: str | None = None  # the step being executed, named in failures

    def _enter(self, name: str, kind: StepKind) -> StepState | None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a step name must be a non-empty string, not {name!r}")
        self.current = name
        run = self._run
        if run.ending or run.status.terminal:
            raise Stop
        if name in self._seen:
            raise DuplicateStepName(run.run_id, name)
        self._seen.add(name)
        step = run.steps.get(name)
        if step is not None and step.kind is not kind:
            raise NonDeterminismError(run.run_id, name, step.kind.value, kind.value)
        return step

    # -------------------------------------------------------------------------------- run

    @_ends_step
    async def run(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` once and record its JSON result; on replay return the record instead.

        ``fn`` may be sync or async; if it returns an awaitable, that is awaited. A sync ``fn``
        runs on the event loop: wrap blocking work in ``asyncio.to_thread`` inside an async fn.
        """
        step = self._enter(name, StepKind.RUN)
        run = self._run
        engine = self._engine
        if step is not None:
            if step.status is StepStatus.COMPLETED:
                return loads(step.output) if step.output is not None else None
            if step.status is StepStatus.FAILED and step.attempt == run.attempt:
                # A failure the handler caught before it parked: replay it the same way.
                error = step.error or {}
                raise StepFailed(
                    name, str(error.get("type", "Error")), str(error.get("message", ""))
                )
        if not callable(fn):
            raise TypeError(f"step {name!r}: step.run needs a function, not {fn!r}")
        await engine.barrier(run)
        started = engine.clock.now_ms()
        try:
            result = fn()
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            engine.record_step(
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
            raise StepFailed(name, type(exc).__name__, str(exc)) from exc
        output = dumps(result, f"output of step {name!r} in run {run.run_id!r}")
        if len(output) > engine.output_limit:
            raise StepOutputTooLarge(name, len(output), engine.output_limit)
        engine.record_step(
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

    # ------------------------------------------------------------------------------ sleep

    @_ends_step
    async def sleep(self, name: str, duration: int | float | str | timedelta) -> None:
        """Park the run for ``duration`` (ms, ``timedelta``, or ``"500ms"``/``"30s"``/``"5m"``/
        ``"1h"``/``"7d"``), also across restarts."""
        step = self._enter(name, StepKind.SLEEP)
        if step is None:
            delay = parse_duration_ms(duration, f"step {name!r}")
            await self._sleep_new(name, self._engine.clock.now_ms() + delay)
        else:
            self._sleep_recorded(step)

    @_ends_step
    async def sleep_until(self, name: str, when: int | float | datetime) -> None:
        """Park the run until ``when`` (epoch ms or an aware datetime); a past time returns at once."""
        step = self._enter(name, StepKind.SLEEP)
        if step is None:
            await self._sleep_new(name, _epoch_ms(when, name))
        else:
            self._sleep_recorded(step)

    async def _sleep_new(self, name: str, wake_at: int) -> None:
        engine, run = self._engine, self._run
        now = engine.clock.now_ms()
        if wake_at <= now:
            engine.record_step(
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
        engine.record_step(run, step)
        raise engine.waiting.park_sleep(run, step)

    def _sleep_recorded(self, step: StepState) -> None:
        if step.status is StepStatus.COMPLETED:
            return
        assert step.wake_at is not None
        engine, run = self._engine, self._run
        if engine.clock.now_ms() >= step.wake_at:
            engine.complete_step(run, step)
            return
        raise engine.waiting.park_sleep(run, step)

    # ----------------------------------------------------------------------------- events

    @_ends_step
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
            taken = engine.waiting.take_waiting_signal(run, step)
            if taken is not None:
                return taken
            raise engine.waiting.park_wait(run, step)
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
            engine.record_step(
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
        engine.record_step(run, step)
        raise engine.waiting.park_wait(run, step)

    # ----------------------------------------------------------------------------- invoke

    @_ends_step
    async def invoke(
        self,
        name: str,
        workflow_id: str,
        input: Any = None,
        timeout: int | float | str | timedelta = _DEFAULT_INVOKE_TIMEOUT,
        *,
        options: Mapping[str, Any] | None = None,
    ) -> Any:
        """Start child workflow ``workflow_id`` once, park until it ends, return its output.

        A child that fails or is cancelled raises ``WorkflowFailed``/``WorkflowCancelled`` here;
        one that outlives ``timeout`` (default 1 hour) raises ``StepTimeout``. The seed's
        ``options={"timeout": ...}`` form works too.
        """
        if options is not None:
            if not isinstance(options, Mapping) or set(options) - {"timeout"}:
                raise ValueError(
                    f"invoke options for step {name!r} may only hold 'timeout', not {options!r}"
                )
            timeout = options.get("timeout", timeout)
        step = self._enter(name, StepKind.INVOKE)
        engine, run = self._engine, self._run
        if step is not None:
            if step.status is StepStatus.COMPLETED:
                return loads(step.output) if step.output is not None else None
            if step.status is StepStatus.FAILED and step.attempt == run.attempt:
                raise engine.waiting.child_error(step)
            if step.status is StepStatus.PENDING:
                settled = engine.waiting.settle_invoke(run, step)
                if settled is not None:
                    return self._invoke_outcome(settled)
                raise engine.waiting.park_invoke(run, step)
        if not isinstance(workflow_id, str) or engine.registry.get(workflow_id) is None:
            raise UnknownWorkflow(str(workflow_id), engine.registry.ids())
        input_bytes = dumps(input, f"input of step {name!r} (workflow {workflow_id!r})")
        wait = parse_duration_ms(timeout, f"timeout of step {name!r}")
        await engine.barrier(run)
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
        )
        # The child first: if we die between the two writes, the replay finds the child by its
        # derived id and records the pending step then.
        engine.start_child(run, step, workflow_id, input_bytes)
        engine.record_step(run, step)
        # The child may exist and have ended already: a crash lost this step's record after the
        # child was created, and this replay found it by its derived id.
        settled = engine.waiting.settle_invoke(run, step)
        if settled is not None:
            return self._invoke_outcome(settled)
        raise engine.waiting.park_invoke(run, step)

    def _invoke_outcome(self, step: StepState) -> Any:
        if step.status is StepStatus.COMPLETED:
            return loads(step.output) if step.output is not None else None
        raise self._engine.waiting.child_error(step)
