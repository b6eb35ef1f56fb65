"""The chaos suite's project: a user app exercising every durable feature, written into a tmp folder.

``write_chaos_project(root)`` writes ``root/project`` with:

- ``mixed`` (retries 3): ``step.run`` -> ``step.sleep`` -> a ``step.run`` that fails on the first
  attempt when ``input.flaky`` (a whole-run retry) -> ``step.wait_for_event("chaos.go", match
  key)`` -> ``step.invoke("kid")`` -> ``step.run``; returns the tokens it saw, the event and the
  child's output;
- ``kid``: ``step.run`` -> ``step.sleep`` -> ``step.run``;
- ``bridge``: one ``step.run``; started by the two handlers below;
- ``ticker``: a cron every second (``* * * * * *``), one ``step.run``; when the host runs with
  ``CHAOS_DRAIN=1`` it has no trigger (the final drain: nothing new starts, the rest finishes);
- ``events/bridges.py``: ``on_kv_change`` (namespace ``chaos``, keys ``k:*``, puts) and
  ``on_db_change`` (collection ``items``, inserts) handlers; each appends the stream event id it
  handles to ``handled.jsonl`` and starts ``bridge`` under a run id derived from that id
  (``bridge.kv<id>`` / ``bridge.db<id>``), so redelivery never starts a second run.

Every ``step.run`` body draws a fresh token, appends ``{run, step, token, attempt, pid}`` to
``effects.jsonl`` (``O_APPEND``, one ``write``, ``fsync``) and only then returns the token: the
file is the ground truth of which bodies ran, against which the ledger is checked.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

__all__ = ["EVENT_TYPE", "write_chaos_project"]

EVENT_TYPE = "chaos.go"

_COMMON = '''
import asyncio
import os
import uuid

import orjson

EFFECTS = {effects!r}
HANDLED = {handled!r}


def append(path, record):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, orjson.dumps(record) + b"\\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def effect(ctx, name, *, fail=False):
    """A step body: record a fresh token durably, then return it (or raise, by design)."""

    async def body():
        token = uuid.uuid4().hex
        record = {{"run": ctx.run_id, "step": name, "token": token, "attempt": ctx.attempt,
                  "pid": os.getpid()}}
        if fail:
            record["failed"] = True
        await asyncio.to_thread(append, EFFECTS, record)
        if fail:
            raise RuntimeError(f"step {{name}} fails on attempt {{ctx.attempt}} by design")
        return token

    return body
'''

_WORKFLOWS = """
from platform_shim.workflows import define_workflow

TICKER = {{"id": "ticker", "options": {{"retries": 3}}}}
if not os.environ.get("CHAOS_DRAIN"):
    TICKER["trigger"] = {{"kind": "schedule", "cron": "* * * * * *"}}


@define_workflow({{"id": "mixed", "options": {{"retries": 3}}}})
async def mixed(input, step, ctx):
    t0 = await step.run("s0", effect(ctx, "s0"))
    await step.sleep("nap", input["nap"])
    t1 = await step.run("s1", effect(ctx, "s1", fail=input["flaky"] and ctx.attempt < 2))
    got = await step.wait_for_event(
        "go", type={event_type!r}, match={{"key": input["key"]}}, timeout="120s"
    )
    kid = await step.invoke("kid", "kid", {{"key": input["key"]}}, timeout="300s")
    t2 = await step.run("s2", effect(ctx, "s2"))
    return {{"tokens": [t0, t1, t2], "event": got, "kid": kid}}


@define_workflow({{"id": "kid", "options": {{"retries": 3}}}})
async def kid(input, step, ctx):
    c1 = await step.run("c1", effect(ctx, "c1"))
    await step.sleep("cnap", 100)
    c2 = await step.run("c2", effect(ctx, "c2"))
    return {{"tokens": [c1, c2]}}


@define_workflow({{"id": "bridge", "options": {{"retries": 3}}}})
async def bridge(input, step, ctx):
    b1 = await step.run("b1", effect(ctx, "b1"))
    return {{"tokens": [b1], "source": input}}


@define_workflow(TICKER)
async def ticker(input, step, ctx):
    t = await step.run("tick", effect(ctx, "tick"))
    return {{"tokens": [t], "scheduledAt": input["scheduledAt"]}}
"""

_EVENTS = """
from platform_shim.events import on_db_change, on_kv_change


@on_kv_change({{"namespace": "chaos", "keyPattern": "k:*", "op": "put"}})
async def kv_bridge(event, ctx):
    await asyncio.to_thread(append, HANDLED, {{"src": "kv", "eventId": event["id"], "key": event["key"]}})
    source = {{"src": "kv", "eventId": event["id"], "key": event["key"], "value": event["value"]}}
    await ctx.workflows.start("bridge", source, run_id=f"bridge.kv{{event['id']}}")


@on_db_change({{"collection": "items", "op": "insert"}})
async def db_bridge(event, ctx):
    await asyncio.to_thread(append, HANDLED, {{"src": "db", "eventId": event["eventId"], "key": event["id"]}})
    source = {{"src": "db", "eventId": event["eventId"], "key": event["id"], "value": event["doc"]}}
    await ctx.workflows.start("bridge", source, run_id=f"bridge.db{{event['eventId']}}")
"""


def write_chaos_project(root: Path) -> Path:
    """Write the project under ``root/project``; effects and handled ids go beside it."""
    project = root / "project"
    (project / "workflows").mkdir(parents=True, exist_ok=True)
    (project / "events").mkdir(parents=True, exist_ok=True)
    fill = {
        "effects": str(root / "effects.jsonl"),
        "handled": str(root / "handled.jsonl"),
        "event_type": EVENT_TYPE,
    }
    common = textwrap.dedent(_COMMON).format(**fill)
    (project / "workflows" / "chaos.py").write_text(
        common + textwrap.dedent(_WORKFLOWS).format(**fill)
    )
    (project / "events" / "bridges.py").write_text(common + textwrap.dedent(_EVENTS).format(**fill))
    return project
