"""define_workflow: both forms, descriptor validation, the registry's duplicate rule."""

from __future__ import annotations

from typing import Any

import pytest

from platform_shim.errors import DefinitionError
from platform_shim.workflows import EventTrigger, ScheduleTrigger, WorkflowRegistry, define_workflow


async def handler(input: Any, step: Any, ctx: Any) -> Any:
    return input


def test_call_and_decorator_forms() -> None:
    called = define_workflow({"id": "a", "options": {"retries": 5, "timeoutSecs": 86400}}, handler)
    assert called.id == "a" and called.retries == 5 and called.timeout_secs == 86400
    assert (
        called.handler is handler and called.file.endswith("test_definition.py") and called.line > 0
    )

    @define_workflow({"id": "b"})
    async def decorated(input: Any, step: Any, ctx: Any) -> Any:
        return None

    assert decorated.id == "b" and decorated.retries == 3 and decorated.timeout_secs is None


def test_triggers() -> None:
    cron = define_workflow(
        {"id": "c", "trigger": {"kind": "schedule", "cron": "0 0 3 * * *"}}, handler
    )
    assert isinstance(cron.trigger, ScheduleTrigger) and cron.trigger.cron == "0 0 3 * * *"
    event = define_workflow(
        {"id": "e", "trigger": {"kind": "event", "t": "auth.user.registered", "r": "auth"}}, handler
    )
    assert event.trigger == EventTrigger("auth.user.registered", "auth", None)
    assert event.trigger.matches("auth.user.registered", "auth", "x")
    assert not event.trigger.matches("auth.user.registered", "other", None)


@pytest.mark.parametrize(
    ("descriptor", "message"),
    [
        ({"id": ""}, "'id'"),
        ({"name": "x"}, "'id'"),
        ({"id": "x", "retries": 3}, "unknown descriptor key"),
        ({"id": "x", "options": {"retry": 3}}, "unknown option"),
        ({"id": "x", "options": {"retries": -1}}, "options.retries"),
        ({"id": "x", "options": {"retries": True}}, "options.retries"),
        ({"id": "x", "options": {"timeoutSecs": 0}}, "timeoutSecs"),
        ({"id": "x", "trigger": {"kind": "schedule", "cron": "61 * * * * *"}}, "61 * * * * *"),
        ({"id": "x", "trigger": {"kind": "schedule", "cron": "* * *"}}, "* * *"),
        ({"id": "x", "trigger": {"kind": "schedule"}}, "cron"),
        ({"id": "x", "trigger": {"kind": "event"}}, "'t'"),
        ({"id": "x", "trigger": {"kind": "event", "t": "a", "x": 1}}, "unknown event trigger key"),
        ({"id": "x", "trigger": {"kind": "webhook"}}, "'schedule' or 'event'"),
        # Its own completions would start it again, without end.
        ({"id": "x", "trigger": {"kind": "event", "t": "workflow.run.completed"}}, "own"),
        (
            {"id": "x", "trigger": {"kind": "event", "t": "workflow.run.failed", "ns": "x"}},
            "own",
        ),
    ],
)
def test_bad_descriptors_fail_at_load_naming_the_problem(
    descriptor: dict[str, Any], message: str
) -> None:
    with pytest.raises(DefinitionError) as caught:
        define_workflow(descriptor)
    assert message in str(caught.value)
    if descriptor.get("id"):
        assert repr(descriptor["id"]) in str(caught.value)


def test_a_trigger_on_another_workflows_runs_is_fine() -> None:
    async def handler(input: Any, step: Any, ctx: Any) -> None:
        return None

    follower = define_workflow(
        {"id": "f", "trigger": {"kind": "event", "t": "workflow.run.completed", "ns": "g"}},
        handler,
    )
    assert isinstance(follower.trigger, EventTrigger)


def test_the_handler_must_be_async() -> None:
    def sync_handler(input: Any, step: Any, ctx: Any) -> None:
        return None

    with pytest.raises(DefinitionError, match="async def"):
        define_workflow({"id": "s"}, sync_handler)  # type: ignore[arg-type]


def test_duplicate_ids_name_both_files() -> None:
    first = define_workflow({"id": "same"}, handler)

    async def other(input: Any, step: Any, ctx: Any) -> Any:
        return None

    second = define_workflow({"id": "same"}, other)
    registry = WorkflowRegistry([first])
    with pytest.raises(DefinitionError) as caught:
        registry.add(second)
    assert first.where in str(caught.value) and second.where in str(caught.value)


def test_replacing_a_module_swaps_its_workflows() -> None:
    registry = WorkflowRegistry()
    old = define_workflow({"id": "w"}, handler)
    registry.add(old, "mod.py")
    new = define_workflow({"id": "w"}, handler)
    registry.replace_source("mod.py", [new])
    assert registry.get("w") is new
    registry.replace_source("mod.py", [])
    assert registry.get("w") is None and registry.ids() == []
