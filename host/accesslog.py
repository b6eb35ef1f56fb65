"""What the host says while it serves: one line per HTTP request, one per run start and end.

``RequestLog`` logs ``METHOD /path STATUS N ms`` on ``host.http`` when a response ends
(``--quiet`` leaves it out); the dashboard's own polling (``/_platform/api/``) is not logged, so
an open dashboard does not drown the requests a user makes. ``RunLog`` follows the worker's
``workflow.run.<status>`` stream events: a line when a run is created and one when it ends,
with its status and how long it took (on the platform's clock, so skipped dev time counts).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from platform_shim.runtime import Worker
    from platform_shim.services.stream import StreamEvent

__all__ = ["RequestLog", "RunLog"]

http_log = logging.getLogger("host.http")
run_log = logging.getLogger("host.runs")

_QUIET_PREFIXES = ("/_platform/api/",)
_ENDED = {"completed", "failed", "cancelled"}


class RequestLog:
    """One log line per HTTP request: method, path, status, milliseconds."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(_QUIET_PREFIXES):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            took = (time.perf_counter() - started) * 1000
            http_log.info("%s %s %d %.1f ms", scope.get("method", "?"), path, status, took)


class RunLog:
    """Logs each run's start and end from the status events the worker relays."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._stream = worker.platform.stream
        self._stream.add_listener(self._on_event)

    def close(self) -> None:
        self._stream.remove_listener(self._on_event)

    def _on_event(self, event: StreamEvent) -> None:
        if event.r != "workflow" or not event.t.startswith("workflow.run.") or event.k is None:
            return
        status = event.t.removeprefix("workflow.run.")
        run = self._worker.engine.snapshot(event.k)  # a finished one is read from the archive
        if status == "queued":
            # The event's own attempt: the relay writes in batches, and by the time this event
            # is written the run may have failed that attempt and be queued for the next.
            if event.to_dict().get("data", {}).get("attempt", 1) == 1:
                run_log.info("run started: %s %s", event.ns, event.k)
        elif status in _ENDED:
            took = ""
            if run is not None and run.completed_at is not None:
                took = f" in {_duration(run.completed_at - run.created_at)}"
            run_log.info("run %s: %s %s%s", status, event.ns, event.k, took)


def _duration(ms: int) -> str:
    if ms < 1000:
        return f"{ms} ms"
    if ms < 120_000:
        return f"{ms / 1000:.1f} s"
    if ms < 2 * 3600_000:
        return f"{ms / 60_000:.1f} min"
    if ms < 2 * 86_400_000:
        return f"{ms / 3600_000:.1f} h"
    return f"{ms / 86_400_000:.1f} d"
