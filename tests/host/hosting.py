"""The HTTP tests' host: ``python -m host serve <project> --port <free> --data <tmp>`` on a test project.

Every test here talks HTTP to a Hypercorn server in another process, the way the platform's
JS client (and curl) do; nothing is served in-process. The test project (written into a tmp
folder) holds a few workflows:

- ``echo``: one ``step.run`` that returns its input;
- ``sleepy``: ``step.sleep`` for 200 ms, then returns ``{"slept": true}``;
- ``waiter``: ``wait_for_event("approval", type="order.approved", match={"orderId": input.orderId})``;
- ``failing``: a step that raises ``RuntimeError("boom")`` (no retries);
- ``nightly``: a daily cron trigger (for ``/api/workflows/schedules``).

``host`` is one host per test module (tests use their own namespaces, collections and keys);
``start_host`` starts more, with other options (``--max-body``, ``--host 0.0.0.0``, env). The
process is ``tests/support/hostproc.py``'s: every host is stopped with SIGTERM and must exit 0,
and its log must show no unhandled error (a 500) and no traceback other than the ``failing``
workflow's own.
"""

from __future__ import annotations

import contextlib
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from tests.support import hostproc
from tests.support.hostproc import HostProcess

REPO = Path(__file__).resolve().parents[2]

WORKFLOWS = textwrap.dedent(
    """
    from platform_shim.workflows import define_workflow


    @define_workflow({"id": "echo"})
    async def echo(input, step, ctx):
        return await step.run("echo", lambda: input)


    @define_workflow({"id": "sleepy"})
    async def sleepy(input, step, ctx):
        await step.sleep("nap", "200ms")
        return {"slept": True}


    @define_workflow({"id": "waiter"})
    async def waiter(input, step, ctx):
        got = await step.wait_for_event(
            "approval", type="order.approved", match={"orderId": input["orderId"]}, timeout="60s"
        )
        return {"approved": got}


    @define_workflow({"id": "failing", "options": {"retries": 0}})
    async def failing(input, step, ctx):
        def boom():
            raise RuntimeError("boom")

        await step.run("explode", boom)


    @define_workflow({"id": "nightly", "trigger": {"kind": "schedule", "cron": "0 0 3 * * *"}})
    async def nightly(input, step, ctx):
        return input
    """
)


REALTIME_CONFIG = textwrap.dedent(
    """
    [realtime]
    presence_grace = "60s"
    outbox = 8

    [realtime.history]
    channels = ["chat:*"]
    max_messages = 5
    """
)
"""``platform.toml``: history on ``chat:*`` (5 kept), a small outbox so that a slow WebSocket
client is dropped after a few messages, and a presence grace long enough to reconnect in."""


def write_project(root: Path) -> Path:
    """The small test project; returns its folder."""
    project = root / "project"
    (project / "workflows").mkdir(parents=True, exist_ok=True)
    (project / "workflows" / "flows.py").write_text(WORKFLOWS)
    (project / "platform.toml").write_text(REALTIME_CONFIG)
    return project


def check_tracebacks(log: str) -> None:
    """No traceback other than the ``failing`` workflow's own error."""
    tracebacks = log.count("Traceback (most recent call last)")
    expected = log.count("RuntimeError: boom") and log.count("of 'failing' failed")
    # Each failed ``failing`` run logs one error record with up to two chained tracebacks.
    assert tracebacks <= 2 * expected, log[-6000:]


StartHost = Callable[..., HostProcess]


@contextlib.contextmanager
def running_host(
    root: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    bind: str = "127.0.0.1",
    token: str | None = None,
    command: str = "serve",
    project: Path | None = None,
) -> Iterator[HostProcess]:
    """A host on a fresh project (or ``project``) and data folder under ``root``, bound to
    ``bind``; stopped after, with a clean log (``tests/support/hostproc.py``)."""
    root.mkdir(parents=True, exist_ok=True)
    with hostproc.running_host(
        project or write_project(root),
        root / "data",
        root,
        command=command,
        args=("--host", bind, *extra),
        env=env,
        token=token,
        extra_check=check_tracebacks,
    ) as host:
        yield host


def assert_error(response: httpx.Response, status: int, *needles: str) -> dict[str, Any]:
    """A JSON ``{"error", "detail"}`` answer with ``status``; ``needles`` appear in the detail."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict), body
    assert set(body) == {"error", "detail"}, body
    assert isinstance(body["error"], str), body
    assert body["error"], body
    for needle in needles:
        assert needle in str(body["detail"]), (needle, body)
    return body


QUIET_S = 0.06
"""Longer than the status relay's linger (20 ms): a run's status events land within it."""


def quiet(http: httpx.Client, looks: int = 2) -> None:
    """Wait until the host's newest event stays the same over ``looks`` looks ``QUIET_S``
    apart: what earlier accepted requests set going (a run's status events, batched by the
    relay) is on the stream, so a later change is the next request's."""
    previous = http.get("/api/events", params={"limit": 1}).json()
    same = 0
    for _ in range(200):
        time.sleep(QUIET_S)
        current = http.get("/api/events", params={"limit": 1}).json()
        same = same + 1 if current == previous else 0
        if same >= looks:
            return
        previous = current
    raise AssertionError("the host's event stream never went quiet")
