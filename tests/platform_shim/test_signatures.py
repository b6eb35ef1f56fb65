"""Signatures are checked when a workflow or handler is declared, naming the file and line."""

from __future__ import annotations

from typing import Any

import pytest

from platform_shim.errors import DefinitionError
from platform_shim.events import define_event, on_queue
from platform_shim.workflows import define_workflow

HERE = __file__


def test_a_workflow_must_take_input_step_and_ctx() -> None:
    async def two(input: Any, step: Any) -> None: ...

    with pytest.raises(DefinitionError) as caught:
        define_workflow({"id": "two"}, two)
    line = two.__code__.co_firstlineno
    assert str(caught.value) == (
        f"workflow 'two': the handler at {HERE}:{line} takes (input, step)"
        " but is called with (input, step, ctx)"
    )

    # Defaults, *args and keyword-only extras are fine: the call would work.
    async def flexible(input: Any, step: Any, ctx: Any = None, *, extra: int = 1) -> None: ...

    async def star(*args: Any) -> None: ...

    assert define_workflow({"id": "flexible"}, flexible).id == "flexible"
    assert define_workflow({"id": "star"}, star).id == "star"


def test_a_handler_takes_event_and_ctx_and_a_consumer_messages_and_ctx() -> None:
    async def only_event(event: Any) -> None: ...

    with pytest.raises(DefinitionError, match=r"takes \(event\) but is called with \(event, ctx\)"):
        define_event({"t": "x"}, only_event)

    async def needs_more(messages: Any, ctx: Any, extra: Any) -> None: ...

    with pytest.raises(DefinitionError) as caught:
        on_queue("q", None, needs_more)
    assert f"queue handler 'needs_more' at {HERE}:" in str(caught.value)
    assert "but is called with (messages, ctx)" in str(caught.value)
