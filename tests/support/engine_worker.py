"""A workflow worker for the engine's crash suite: runs a mix of workflows until killed.

usage: engine_worker.py DATA_DIR MODE SEED [COMPACT_BYTES]

  MODE "run":   start a steady trickle of runs and send the events of the waiting runs whose
                ``sender`` is ``"worker"``, until the parent sends SIGKILL.
  MODE "drain": start nothing; send the events still needed; once every run in the ledger is
                terminal print ``drained`` and stop cleanly (exit 0).

Workflows: ``multi`` (2-5 steps, sleeps of 50-300 ms, one step failing on attempt 1 in some
runs), ``waiter`` (``wait_for_event`` with a match key, a timeout on some, its event sent by
this worker or by ``engine_client.py``, or by nobody when it must time out), ``parent`` (an
``invoke`` of ``child``, a step failing on attempt 1 before or after it in some runs),
``doomed`` (always fails: ``retries=1``), ``overdue`` (``timeoutSecs=0.4``, sleeps 3 s: fails).
COMPACT_BYTES (default 64 MiB) makes the worker compact the ledger when it starts.

Every ``step.run`` body draws a fresh token (uuid4) and appends
``{"run", "step", "token", "pid", "attempt"}`` to ``DATA_DIR/../effects.jsonl`` (``O_APPEND``, one
``os.write``, fsync'd) *before* it returns the token; a body that fails on purpose appends a
line with ``"failed": true`` and raises. Workflows return the tokens they saw.

Stdout, one line each, printed only after the awaited call returned (so the parent knows what
was acknowledged): ``ready``, ``start <json {runId, workflowId, input}>``,
``event <json payload>``, ``drained``. Logs (warnings and errors) go to
``DATA_DIR/../worker-<pid>.log``. SIGUSR1 dumps every thread's stack to stderr.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import random
import signal
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from platform_shim import open_platform
from platform_shim.jsonvalue import loads
from platform_shim.platform import Platform
from platform_shim.workflows import define_workflow

EVENT_TYPE = "crash.go"
EFFECTS: Path | None = None


def say(kind: str, payload: Any = None) -> None:
    line = kind if payload is None else f"{kind} {orjson.dumps(payload).decode()}"
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def effect(ctx: Any, name: str, *, fail: bool = False, linger: bool = False) -> Callable[[], Any]:
    """The body of one ``step.run``: record a fresh token durably, then return it."""

    async def body() -> str:
        token = uuid.uuid4().hex
        line: dict[str, Any] = {
            "run": ctx.run_id,
            "step": name,
            "token": token,
            "pid": os.getpid(),
            "attempt": ctx.attempt,
        }
        if fail:
            line["failed"] = True
        assert EFFECTS is not None
        fd = os.open(EFFECTS, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, orjson.dumps(line) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        if fail:
            raise RuntimeError(f"step {name} fails on attempt {ctx.attempt} by design")
        if linger:
            # Widen the window in which the body ran but its result is not recorded yet.
            await asyncio.sleep(random.uniform(0, 0.01))
        return token

    return body


@define_workflow({"id": "multi", "options": {"retries": 3}})
async def multi(input: Any, step: Any, ctx: Any) -> Any:
    tokens = []
    for i in range(input["steps"]):
        fail = input["flaky"] == i and ctx.attempt < 2
        tokens.append(await step.run(f"s{i}", effect(ctx, f"s{i}", fail=fail, linger=i % 2 == 0)))
        nap = input["naps"].get(str(i))
        if nap is not None:
            await step.sleep(f"nap{i}", nap)
    return {"tokens": tokens}


@define_workflow({"id": "waiter", "options": {"retries": 3}})
async def waiter(input: Any, step: Any, ctx: Any) -> Any:
    tokens = [await step.run("before", effect(ctx, "before", linger=True))]
    payload = await step.wait_for_event(
        "go", type=EVENT_TYPE, match={"key": input["key"]}, timeout=input["timeout"]
    )
    tokens.append(await step.run("after", effect(ctx, "after")))
    return {"tokens": tokens, "event": payload}


@define_workflow({"id": "parent", "options": {"retries": 3}})
async def parent(input: Any, step: Any, ctx: Any) -> Any:
    first = await step.run(
        "prep", effect(ctx, "prep", fail=input["flaky"] == "prep" and ctx.attempt < 2)
    )
    child = await step.invoke("kid", "child", {"nap": input["nap"]}, timeout="60s")
    last = await step.run(
        "post", effect(ctx, "post", fail=input["flaky"] == "post" and ctx.attempt < 2)
    )
    return {"tokens": [first, last], "child": child}


@define_workflow({"id": "child", "options": {"retries": 3}})
async def child(input: Any, step: Any, ctx: Any) -> Any:
    first = await step.run("c1", effect(ctx, "c1", linger=True))
    await step.sleep("cnap", input["nap"])
    last = await step.run("c2", effect(ctx, "c2"))
    return {"tokens": [first, last]}


@define_workflow({"id": "doomed", "options": {"retries": 1}})
async def doomed(input: Any, step: Any, ctx: Any) -> Any:
    await step.run("ok", effect(ctx, "ok"))
    await step.run("boom", effect(ctx, "boom", fail=True))
    return {"tokens": []}  # never reached


@define_workflow({"id": "overdue", "options": {"retries": 3, "timeoutSecs": 0.4}})
async def overdue(input: Any, step: Any, ctx: Any) -> Any:
    await step.run("first", effect(ctx, "first", linger=True))
    await step.sleep("long", "3s")  # past the deadline: the run fails, also while parked
    return {"tokens": []}  # never reached


WORKFLOWS = [multi, waiter, parent, child, doomed, overdue]


def new_input(rng: random.Random, workflow_id: str) -> Any:
    if workflow_id == "multi":
        steps = rng.randint(2, 5)
        naps = {str(i): f"{rng.randint(50, 300)}ms" for i in range(steps - 1) if rng.random() < 0.5}
        flaky = rng.randrange(steps) if rng.random() < 0.4 else -1
        return {"steps": steps, "naps": naps, "flaky": flaky}
    if workflow_id == "waiter":
        timeout = rng.choice([None, None, "2s", "300ms"])
        send = timeout != "300ms" or rng.random() < 0.3
        return {
            "key": uuid.uuid4().hex,
            "sender": rng.choice(["worker", "client"]),
            "send": send,
            "timeout": timeout,
        }
    if workflow_id == "parent":
        return {"nap": f"{rng.randint(50, 300)}ms", "flaky": rng.choice(["", "", "prep", "post"])}
    return {}


def events_needed(platform: Platform, sender: str, sent: set[str]) -> list[dict[str, Any]]:
    """Payloads for the live waiter runs of ``sender`` whose event is not in the ledger yet."""
    state = platform.worker.engine.state  # type: ignore[union-attr]
    have = {loads(signal.payload)["key"] for signal in state.signals.get(EVENT_TYPE, ())}
    out = []
    for run in list(state.runs.values()):
        if run.workflow_id != "waiter" or run.status.terminal:
            continue
        spec = loads(run.input)
        key = spec["key"]
        if spec["sender"] == sender and spec["send"] and key not in have and key not in sent:
            out.append({"key": key, "from": sender, "pid": os.getpid()})
    return out


async def send_events(platform: Platform, rng: random.Random) -> None:
    sent: set[str] = set()
    while True:
        await asyncio.sleep(rng.uniform(0.01, 0.08))
        for payload in events_needed(platform, "worker", sent):
            sent.add(payload["key"])
            await platform.workflows.send_event(EVENT_TYPE, payload)
            say("event", payload)


async def start_runs(platform: Platform, rng: random.Random) -> None:
    weights = {"multi": 4, "waiter": 4, "parent": 2, "doomed": 1, "overdue": 1}
    while True:
        await asyncio.sleep(rng.uniform(0.015, 0.04))
        workflow_id = rng.choices(list(weights), list(weights.values()))[0]
        spec = new_input(rng, workflow_id)
        handle = await platform.workflows.start(workflow_id, spec)
        say("start", {"runId": handle.run_id, "workflowId": workflow_id, "input": spec})


async def main(data_dir: str, mode: str, seed: str, compact_bytes: int) -> None:
    global EFFECTS
    # The suite's files (effects, logs) live beside the data folder, or where it says.
    root = Path(os.environ.get("ENGINE_ROOT") or Path(data_dir).parent)
    EFFECTS = root / "effects.jsonl"
    logging.basicConfig(
        filename=root / f"worker-{os.getpid()}.log",
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    rng = random.Random(f"{seed}/{os.getpid()}")
    async with open_platform(
        data_dir,
        workflows=WORKFLOWS,
        retry_backoff=lambda attempt: 50,
        compact_bytes=compact_bytes,
    ) as platform:
        say("ready")
        tasks = [asyncio.ensure_future(send_events(platform, rng))]
        if mode == "run":
            tasks.append(asyncio.ensure_future(start_runs(platform, rng)))
        state = platform.worker.engine.state  # type: ignore[union-attr]
        try:
            while True:
                await asyncio.sleep(0.05)
                for task in tasks:
                    if task.done():
                        task.result()  # a helper task failed: let the parent see why
                if mode == "drain" and all(run.status.terminal for run in state.runs.values()):
                    await platform.settle()
                    break
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    say("drained")


if __name__ == "__main__":
    faulthandler.register(signal.SIGUSR1)  # the crash suite asks a stuck worker for its stacks
    compact = int(sys.argv[4]) if len(sys.argv) > 4 else 64 * 1024 * 1024
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], compact))
