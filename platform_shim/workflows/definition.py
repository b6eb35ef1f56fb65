"""Declaring workflows: ``define_workflow`` and the registry the host fills.

A descriptor is checked when the module is imported, so a typo (an unknown key, a bad cron
expression, a trigger without its event type) fails the load with a message naming the
workflow, the key and the file, not a run days later.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, overload

from platform_shim.errors import DefinitionError
from platform_shim.signatures import signature_problem
from platform_shim.workflows.cron import CronSchedule
from platform_shim.workflows.records import RunStatus

__all__ = [
    "EventTrigger",
    "ScheduleTrigger",
    "Workflow",
    "WorkflowHandler",
    "WorkflowRegistry",
    "define_workflow",
]

WorkflowHandler = Callable[[Any, Any, Any], Awaitable[Any]]

_DESCRIPTOR_KEYS = {"id", "options", "trigger"}
_OPTION_KEYS = {"retries", "timeoutSecs"}
_SCHEDULE_KEYS = {"kind", "cron"}
_EVENT_KEYS = {"kind", "t", "r", "ns"}


@dataclass(frozen=True)
class ScheduleTrigger:
    """Start a run on every tick of a cron schedule (6 fields, seconds first, UTC)."""

    schedule: CronSchedule

    @property
    def cron(self) -> str:
        return self.schedule.expr

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "schedule", "cron": self.cron}


@dataclass(frozen=True)
class EventTrigger:
    """Start a run for every stream event matching ``t`` (and ``r``, ``ns`` when given)."""

    t: str
    r: str | None = None
    ns: str | None = None

    def matches(self, t: str, r: str, ns: str | None) -> bool:
        return (
            t == self.t and (self.r is None or r == self.r) and (self.ns is None or ns == self.ns)
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "event", "t": self.t}
        if self.r is not None:
            out["r"] = self.r
        if self.ns is not None:
            out["ns"] = self.ns
        return out


@dataclass(frozen=True, eq=False)
class Workflow:
    """A registered workflow: its id, handler, options and trigger, and where it was defined."""

    id: str
    handler: WorkflowHandler
    retries: int = 3
    timeout_secs: float | None = None
    trigger: ScheduleTrigger | EventTrigger | None = None
    file: str = "?"
    line: int = 0
    descriptor: Mapping[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def options(self) -> dict[str, Any]:
        out: dict[str, Any] = {"retries": self.retries}
        if self.timeout_secs is not None:
            out["timeoutSecs"] = self.timeout_secs
        return out

    def __call__(self, *args: Any) -> Awaitable[Any]:
        """Call the handler directly (for unit tests of the function itself)."""
        return self.handler(*args)


def _fail(workflow_id: object, message: str) -> DefinitionError:
    return DefinitionError(f"workflow {workflow_id!r}: {message}")


def _parse_descriptor(
    descriptor: Mapping[str, Any],
) -> tuple[str, int, float | None, ScheduleTrigger | EventTrigger | None]:
    if not isinstance(descriptor, Mapping):
        raise DefinitionError(
            f"a workflow descriptor must be a dict like {{'id': ...}}, not {descriptor!r}"
        )
    workflow_id = descriptor.get("id")
    if not isinstance(workflow_id, str) or not workflow_id.strip():
        raise DefinitionError(
            f"a workflow descriptor needs an 'id' that is a non-empty string, not {workflow_id!r}"
        )
    unknown = set(descriptor) - _DESCRIPTOR_KEYS
    if unknown:
        raise _fail(
            workflow_id,
            f"unknown descriptor key(s) {sorted(unknown)}; known keys: {sorted(_DESCRIPTOR_KEYS)}",
        )
    options = descriptor.get("options") or {}
    if not isinstance(options, Mapping):
        raise _fail(workflow_id, f"'options' must be a dict, not {options!r}")
    unknown = set(options) - _OPTION_KEYS
    if unknown:
        raise _fail(
            workflow_id,
            f"unknown option(s) {sorted(unknown)}; known options: {sorted(_OPTION_KEYS)}",
        )
    retries = options.get("retries", 3)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise _fail(workflow_id, f"options.retries must be a non-negative integer, not {retries!r}")
    timeout = options.get("timeoutSecs")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
    ):
        raise _fail(
            workflow_id,
            f"options.timeoutSecs must be a positive number of seconds, not {timeout!r}",
        )
    return workflow_id, retries, timeout, _parse_trigger(workflow_id, descriptor.get("trigger"))


def _parse_trigger(workflow_id: str, trigger: Any) -> ScheduleTrigger | EventTrigger | None:
    if trigger is None:
        return None
    if not isinstance(trigger, Mapping):
        raise _fail(workflow_id, f"'trigger' must be a dict, not {trigger!r}")
    kind = trigger.get("kind")
    if kind == "schedule":
        unknown = set(trigger) - _SCHEDULE_KEYS
        if unknown:
            raise _fail(workflow_id, f"unknown schedule trigger key(s) {sorted(unknown)}")
        cron = trigger.get("cron")
        if not isinstance(cron, str):
            raise _fail(workflow_id, f"a schedule trigger needs 'cron' as a string, not {cron!r}")
        try:
            return ScheduleTrigger(CronSchedule.parse(cron))
        except DefinitionError as exc:
            raise _fail(workflow_id, str(exc)) from None
    if kind == "event":
        unknown = set(trigger) - _EVENT_KEYS
        if unknown:
            raise _fail(workflow_id, f"unknown event trigger key(s) {sorted(unknown)}")
        t = trigger.get("t")
        if not isinstance(t, str) or not t:
            raise _fail(
                workflow_id, f"an event trigger needs 't' (the event type) as a string, not {t!r}"
            )
        for key in ("r", "ns"):
            value = trigger.get(key)
            if value is not None and not isinstance(value, str):
                raise _fail(workflow_id, f"event trigger '{key}' must be a string, not {value!r}")
        event_trigger = EventTrigger(t, trigger.get("r"), trigger.get("ns"))
        own = [
            status.value
            for status in RunStatus
            if event_trigger.matches(f"workflow.run.{status.value}", "workflow", workflow_id)
        ]
        if own:
            # Each of its runs would start another run of it, without end.
            raise _fail(
                workflow_id,
                f"event trigger {t!r} matches this workflow's own workflow.run.{own[0]} events, "
                "so every run would start another; set 'ns' to the workflow it should follow",
            )
        return event_trigger
    raise _fail(workflow_id, f"trigger 'kind' must be 'schedule' or 'event', not {kind!r}")


def _where(handler: Callable[..., Any]) -> tuple[str, int]:
    try:
        file = inspect.getsourcefile(handler) or "?"
        line = handler.__code__.co_firstlineno
    except (TypeError, AttributeError):
        return "?", 0
    return file, line


def _build(descriptor: Mapping[str, Any], handler: WorkflowHandler) -> Workflow:
    workflow_id, retries, timeout, trigger = _parse_descriptor(descriptor)
    if not callable(handler):
        raise _fail(workflow_id, f"the handler must be an async function, not {handler!r}")
    if not inspect.iscoroutinefunction(handler) and not inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - an object with an async __call__
    ):
        raise _fail(
            workflow_id, "the handler must be an 'async def' function taking (input, step, ctx)"
        )
    file, line = _where(handler)
    problem = signature_problem(handler, ("input", "step", "ctx"))
    if problem is not None:
        raise _fail(workflow_id, f"the handler at {file}:{line} {problem}")
    return Workflow(workflow_id, handler, retries, timeout, trigger, file, line, dict(descriptor))


@overload
def define_workflow(descriptor: Mapping[str, Any]) -> Callable[[WorkflowHandler], Workflow]: ...


@overload
def define_workflow(descriptor: Mapping[str, Any], handler: WorkflowHandler) -> Workflow: ...


def define_workflow(
    descriptor: Mapping[str, Any], handler: WorkflowHandler | None = None
) -> Workflow | Callable[[WorkflowHandler], Workflow]:
    """Declare a workflow: ``define_workflow({"id": ...}, handler)`` or as a decorator.

    Descriptor keys: ``id`` (required, the stable identity), ``options`` (``retries``, default 3;
    ``timeoutSecs``), ``trigger`` (``{"kind": "schedule", "cron": ...}`` or
    ``{"kind": "event", "t": ..., "r": ..., "ns": ...}``).
    """
    if handler is not None:
        return _build(descriptor, handler)
    _parse_descriptor(descriptor)  # fail at the decorator line, before the function exists

    def decorate(fn: WorkflowHandler) -> Workflow:
        return _build(descriptor, fn)

    return decorate


class WorkflowRegistry:
    """The workflows a worker knows, by id; the loader replaces a module's set on reload."""

    def __init__(self, workflows: Iterable[Workflow] = ()) -> None:
        self._by_id: dict[str, Workflow] = {}
        self._by_source: dict[str, list[str]] = {}
        for workflow in workflows:
            self.add(workflow)

    def add(self, workflow: Workflow, source: str | None = None) -> None:
        existing = self._by_id.get(workflow.id)
        if existing is not None and existing is not workflow:
            raise DefinitionError(
                f"workflow id {workflow.id!r} is defined twice: in {existing.where} and in {workflow.where}"
            )
        self._by_id[workflow.id] = workflow
        self._by_source.setdefault(source or workflow.file, []).append(workflow.id)

    def replace_source(self, source: str, workflows: Iterable[Workflow]) -> None:
        """Swap the workflows that came from ``source`` (a reloaded module) for new ones."""
        new = list(workflows)
        old_ids = self._by_source.get(source, [])
        for workflow in new:
            existing = self._by_id.get(workflow.id)
            if existing is not None and workflow.id not in old_ids:
                raise DefinitionError(
                    f"workflow id {workflow.id!r} is defined twice: in {existing.where} and in {workflow.where}"
                )
        for workflow_id in old_ids:
            self._by_id.pop(workflow_id, None)
        self._by_source[source] = []
        for workflow in new:
            self.add(workflow, source)

    def get(self, workflow_id: str) -> Workflow | None:
        return self._by_id.get(workflow_id)

    def ids(self) -> list[str]:
        return sorted(self._by_id)

    def __iter__(self) -> Any:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, workflow_id: object) -> bool:
        return workflow_id in self._by_id
