"""The standby tests' project (``tests/host/test_standby.py``, ``bench/failover.py``), written into
a tmp folder.

``write_standby_project(root)`` writes ``root/project`` with:

- ``quick``: one ``step.run``; returns its token;
- ``napper``: ``step.run`` -> ``step.sleep("nap", input["nap"])`` -> ``step.run``;
- ``waiter``: ``step.run`` -> ``step.wait_for_event("go", type="standby.go", match key)`` ->
  ``step.run``; returns the tokens and the event;
- ``busy``: ``step.run`` -> a ``step.run`` whose body takes ``input["slow"]`` seconds (so a
  host killed meanwhile leaves the run ``running``) -> ``step.run``.

Every ``step.run`` body draws a fresh token, appends ``{run, step, token, pid}`` to
``root/effects.jsonl`` (``O_APPEND``, one ``write``, ``fsync``) and only then returns it: the
file is the ground truth of which bodies ran, on which host, against which history is checked.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

__all__ = ["EVENT_TYPE", "write_standby_project"]

EVENT_TYPE = "standby.go"

_WORKFLOWS = """
import asyncio
import os
import uuid

import orjson

from platform_shim.workflows import define_workflow

EFFECTS = {effects!r}


def append(record):
    fd = os.open(EFFECTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, orjson.dumps(record) + b"\\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def effect(ctx, name, slow=0.0):
    async def body():
        if slow:
            await asyncio.sleep(slow)
        token = uuid.uuid4().hex
        record = {{"run": ctx.run_id, "step": name, "token": token, "pid": os.getpid()}}
        await asyncio.to_thread(append, record)
        return token

    return body


@define_workflow({{"id": "quick"}})
async def quick(input, step, ctx):
    return {{"tokens": [await step.run("q", effect(ctx, "q"))]}}


@define_workflow({{"id": "napper"}})
async def napper(input, step, ctx):
    a = await step.run("a", effect(ctx, "a"))
    await step.sleep("nap", input["nap"])
    b = await step.run("b", effect(ctx, "b"))
    return {{"tokens": [a, b]}}


@define_workflow({{"id": "waiter"}})
async def waiter(input, step, ctx):
    a = await step.run("a", effect(ctx, "a"))
    got = await step.wait_for_event("go", type={event_type!r}, match={{"key": input["key"]}})
    b = await step.run("b", effect(ctx, "b"))
    return {{"tokens": [a, b], "event": got}}


@define_workflow({{"id": "busy"}})
async def busy(input, step, ctx):
    a = await step.run("a", effect(ctx, "a"))
    s = await step.run("slow", effect(ctx, "slow", input["slow"]))
    b = await step.run("b", effect(ctx, "b"))
    return {{"tokens": [a, s, b]}}
"""


def write_standby_project(root: Path) -> Path:
    """Write the project under ``root/project``; its effects go to ``root/effects.jsonl``."""
    project = root / "project"
    (project / "workflows").mkdir(parents=True, exist_ok=True)
    fill = {"effects": str(root / "effects.jsonl"), "event_type": EVENT_TYPE}
    (project / "workflows" / "standby.py").write_text(textwrap.dedent(_WORKFLOWS).format(**fill))
    return project
