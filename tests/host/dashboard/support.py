"""What the dashboard tests share: the test project, a host on it, and a crafted ledger.

The project's step bodies append their step name to the file named by ``input["log"]``, so a
test counts how many times each step body really ran (a rerun must not run the steps before
the one it starts from).
"""

from __future__ import annotations

import contextlib
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from platform_shim.ids import new_id
from tests.support.hostproc import HostProcess, running_host

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "test-artifacts"

FLOWS = textwrap.dedent(
    """
    from platform_shim.workflows import define_workflow


    def _body(input, name, value):
        def run():
            path = input.get("log") if isinstance(input, dict) else None
            if path:
                with open(path, "a") as log:
                    log.write(name + "\\n")
            return value

        return run


    @define_workflow({"id": "pipeline", "options": {"retries": 0}})
    async def pipeline(input, step, ctx):
        order = await step.run("prepare", _body(input, "prepare", {"items": input.get("items", 3)}))
        await step.sleep("nap", input.get("sleep", "150ms"))
        total = await step.run("transform", _body(input, "transform", order["items"] * 10))
        return await step.run("publish", _body(input, "publish", {"total": total}))


    @define_workflow({"id": "approval", "options": {"retries": 0}})
    async def approval(input, step, ctx):
        await step.run("submit", lambda: {"orderId": input["orderId"]})
        decision = await step.wait_for_event(
            "approval", type="order.approved", match={"orderId": input["orderId"]}, timeout="1h"
        )
        return await step.run("finish", lambda: {"approved": decision})


    @define_workflow({"id": "child"})
    async def child(input, step, ctx):
        return await step.run("work", lambda: {"doubled": input["n"] * 2})


    @define_workflow({"id": "parent"})
    async def parent(input, step, ctx):
        n = await step.run("plan", lambda: input.get("n", 21))
        result = await step.invoke("delegate", "child", {"n": n})
        return await step.run("wrap", lambda: {"child": result})


    @define_workflow({"id": "broken", "options": {"retries": 0}})
    async def broken(input, step, ctx):
        await step.run("fetch", lambda: {"ok": True})

        def explode():
            raise RuntimeError(input.get("message", "boom"))

        await step.run("charge", explode)


    @define_workflow({"id": "nightly", "trigger": {"kind": "schedule", "cron": "0 3 * * *"}})
    async def nightly(input, step, ctx):
        return await step.run("tally", lambda: input)


    @define_workflow({"id": "greeter", "trigger": {"kind": "event", "t": "user.signed_up"}})
    async def greeter(input, step, ctx):
        return await step.run("greet", lambda: {"hello": input})


    def _charge_card(attempt):
        raise ConnectionError("card network down on attempt " + str(attempt))


    @define_workflow({"id": "flaky", "options": {"retries": 1}})
    async def flaky(input, step, ctx):
        await step.run("load", lambda: {"ok": True})
        if ctx.attempt == 1:
            await step.run("charge", lambda: _charge_card(ctx.attempt))
        raise KeyError("missing price")


    @define_workflow({"id": "lookup", "options": {"retries": 0}})
    async def lookup(input, step, ctx):
        order = await step.run("load-order", lambda: None)
        if order is None:
            raise LookupError("no order " + repr(input.get("orderId")))
        return order
    """
)

PIPELINE_STEPS = ["prepare", "nap", "transform", "publish"]


def write_project(root: Path) -> Path:
    project = root / "project"
    (project / "workflows").mkdir(parents=True, exist_ok=True)
    (project / "workflows" / "flows.py").write_text(FLOWS)
    return project


def tally(path: Path) -> Counter[str]:
    """How many times each step body ran, from the project's log file."""
    return Counter(path.read_text().split()) if path.exists() else Counter()


# -------------------------------------------------------------------------------- the host


@contextlib.contextmanager
def running(root: Path, token: str | None = None, command: str = "serve") -> Iterator[HostProcess]:
    """``python -m host serve`` (or ``dev``: a clock that ``POST /api/dev/clock`` moves forward)
    on the test project under ``root``, on 127.0.0.1; stopped after, with a clean log."""
    with running_host(
        write_project(root), root / "data", root, command=command, token=token
    ) as host:
        yield host


# ------------------------------------------------------------------------- crafted ledgers

CRAFTED_RUNS = 2_500
STATUS_CYCLE = ["completed"] * 7 + ["failed", "cancelled", "completed"]


def write_ledger(
    data: Path,
    count: int,
    *,
    workflows: tuple[str, ...] = ("pipeline", "approval"),
    start_ms: int | None = None,
) -> list[dict[str, Any]]:
    """``count`` finished runs written straight into ``runs.jsonl`` (the format of
    ``platform_shim/workflows/ledger.py``), oldest first, one ms apart, ending now; with the
    status relay marked done so the host does not replay them as events. Returns the runs
    (``runId, workflowId, status``) newest first, as the API lists them."""
    data.mkdir(parents=True, exist_ok=True)
    now = int(time.time() * 1000) if start_ms is None else start_ms
    first = now - count
    seq = 0
    runs = []
    with (data / "runs.jsonl").open("wb") as out:
        for i in range(count):
            at = first + i
            run_id = new_id(at)
            workflow_id = workflows[i % len(workflows)]
            status = STATUS_CYCLE[i % len(STATUS_CYCLE)]
            lines: list[dict[str, Any]] = []
            seq += 1
            lines.append(
                {
                    "rec": "run",
                    "seq": seq,
                    "runId": run_id,
                    "workflowId": workflow_id,
                    "input": {"n": i},
                    "createdAt": at,
                    "parentRunId": None,
                    "parentStep": None,
                    "deadline": None,
                    "rerunOf": None,
                }
            )
            seq += 1
            lines.append(
                {
                    "rec": "step",
                    "seq": seq,
                    "runId": run_id,
                    "name": "prepare",
                    "kind": "run",
                    "status": "completed",
                    "attempt": 1,
                    "startedAt": at,
                    "completedAt": at,
                    "output": {"n": i},
                }
            )
            seq += 1
            end: dict[str, Any] = {
                "rec": "status",
                "seq": seq,
                "runId": run_id,
                "status": status,
                "at": at,
                "attempt": 1,
                "completedAt": at,
            }
            if status == "completed":
                end["output"] = {"n": i}
            elif status == "failed":
                end["error"] = {"type": "RuntimeError", "message": f"boom {i}", "step": "prepare"}
            else:
                end["error"] = {"type": "WorkflowCancelled", "message": "cancelled"}
            lines.append(end)
            out.write(b"".join(orjson.dumps(line) + b"\n" for line in lines))
            runs.append({"runId": run_id, "workflowId": workflow_id, "status": status})
    (data / "dispatch.jsonl").write_bytes(orjson.dumps({"rec": "relay", "c": seq}) + b"\n")
    runs.reverse()
    return runs


# ------------------------------------------------------------------------------- browsers


class PageErrors(list[str]):
    """Script errors and console errors a page produced; ``expect`` tolerates known ones."""

    def __init__(self) -> None:
        super().__init__()
        self.expected: list[str] = []

    def expect(self, text: str) -> None:
        self.expected.append(text)

    def unexpected(self) -> list[str]:
        return [e for e in self if not any(x in e for x in self.expected)]


def screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    """Save a screenshot as ``test-artifacts/dashboard-<name>.png`` (git-ignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"dashboard-{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
