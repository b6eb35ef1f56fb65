"""The SSE endpoint registers a stream listener only while a body is being sent: a client that
goes away before the body starts, or while it streams, leaves nothing registered."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from platform_shim.platform import Platform
from tests.chaos.inproc import inprocess_host


def sse_scope() -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.1"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/events/stream",
        "raw_path": b"/api/events/stream",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:3001"), (b"accept", b"text/event-stream")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 3001),
        "state": {},
        "extensions": {},
    }


def listeners(platform: Platform) -> int:
    return len(platform.stream._listeners)  # what a leaked connection would leave behind


async def test_a_client_gone_before_the_body_starts_leaves_no_listener(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "workflows").mkdir(parents=True)
    async with inprocess_host(project, tmp_path / "data") as (app, _):
        platform: Platform = app.state.platform
        baseline = listeners(platform)
        sent: list[dict[str, Any]] = []

        async def gone() -> dict[str, Any]:
            return {"type": "http.disconnect"}  # the client aborted at once

        async def closed(message: dict[str, Any]) -> None:
            # ASGI 2.4: sending on a closed connection raises OSError; the body never starts.
            sent.append(message)
            raise OSError("the client closed the connection")

        for spec in ("2.1", "2.4"):
            for _ in range(3):
                scope = sse_scope()
                scope["asgi"]["spec_version"] = spec
                with contextlib.suppress(Exception):  # how the app reports it is not the point
                    await app(scope, gone, closed)  # type: ignore[arg-type]
        await asyncio.sleep(0)
        assert sent and all(m["type"] == "http.response.start" for m in sent)
        assert listeners(platform) == baseline
        sent.clear()

        # A client that reads the start of the stream and then leaves: nothing is left either.
        started = asyncio.Event()

        async def leaves_after_first_bytes() -> dict[str, Any]:
            await started.wait()
            return {"type": "http.disconnect"}

        async def reads(message: dict[str, Any]) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and message.get("body"):
                started.set()

        await app(sse_scope(), leaves_after_first_bytes, reads)  # type: ignore[arg-type]
        await asyncio.sleep(0)
        assert any(m.get("status") == 200 for m in sent)  # the endpoint did answer
        assert listeners(platform) == baseline
