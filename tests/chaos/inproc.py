"""The host's Starlette app in this process, with its lifespan run, for fast HTTP-level tests.

``inprocess_host(project, data)`` runs ``host.app.create_app`` exactly as ``python -m host serve``
does (the lifespan takes the data folder, loads the project, starts the worker) and yields
``(app, client)``: ``client`` is an ``httpx.AsyncClient`` on ``httpx.ASGITransport``. ``raw_request``
calls the ASGI app with a hand-made scope (any method, raw path, header bytes and body chunks),
the way Hypercorn would after parsing a request, for input no HTTP client would send.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import asyncpg
import httpx
from starlette.applications import Starlette

from host.app import create_app
from host.config import HostConfig
from platform_shim.runtime import WorkerOptions


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Run the ASGI lifespan protocol around the block (startup, then shutdown)."""
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def receive() -> dict[str, Any]:
        return await inbox.get()

    async def send(message: dict[str, Any]) -> None:
        await outbox.put(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.get_running_loop().create_task(app(scope, receive, send))  # type: ignore[arg-type]
    await inbox.put({"type": "lifespan.startup"})
    message = await outbox.get()
    if message["type"] != "lifespan.startup.complete":
        await task
        raise RuntimeError(f"the host did not start: {message}")
    try:
        yield
    finally:
        await inbox.put({"type": "lifespan.shutdown"})
        message = await outbox.get()
        await task
        assert message["type"] == "lifespan.shutdown.complete", message


@contextlib.asynccontextmanager
async def inprocess_host(
    project: Path,
    data: Path | str,
    *,
    token: str = "",
    max_body: int | None = None,
    worker_options: WorkerOptions | None = None,
    clock: Any = None,
) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    if isinstance(data, str) and "://" in data:  # a store URL (PostgreSQL)
        config = HostConfig(project_dir=project, store=data, token=token)
    else:
        config = HostConfig(project_dir=project, data_dir=Path(data), token=token)
    if max_body is not None:
        config.max_body = max_body
    options = worker_options or WorkerOptions(retry_backoff=_fast)
    app = create_app(config, worker_options=options, clock=clock)
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield app, client


def _fast(attempt: int) -> int:
    return 20


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


async def raw_request(
    app: Starlette,
    method: str,
    raw_path: bytes,
    *,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    chunks: list[bytes] | None = None,
) -> RawResponse:
    """Call the app as Hypercorn would for this request line, headers and body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.1"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(raw_path.decode("ascii")),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": headers or [],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 3001),
        "state": {},
        "extensions": {},
    }
    pending = list(chunks or [b""])
    status = 0
    out_headers: list[tuple[bytes, bytes]] = []
    body = bytearray()
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending)}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, out_headers
        if message["type"] == "http.response.start":
            status = message["status"]
            out_headers = list(message.get("headers", []))
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))
            if not message.get("more_body", False) or body:
                # The whole answer, or the first bytes of a stream (then the client leaves).
                done.set()

    try:
        await app(scope, receive, send)  # type: ignore[arg-type]
    except Exception as exc:  # what Hypercorn would turn into a bare 500
        if status == 0:
            return RawResponse(500, [], f"<app raised {type(exc).__name__}: {exc}>".encode())
        raise
    return RawResponse(status, out_headers, bytes(body))


def data_state(data: Path | str) -> dict[str, str]:
    """A digest of the store's durable state: every data file of a folder (logs, snapshots,
    blobs), or every row of a PostgreSQL store's tables."""
    if isinstance(data, str) and "://" in data:
        return asyncio.run(_database_state(data))
    data = Path(data)
    state = {}
    for path in sorted(data.rglob("*")):
        if not path.is_file() or ".locks" in path.parts or ".doorbell" in path.parts:
            continue
        state[str(path.relative_to(data))] = hashlib.blake2b(path.read_bytes()).hexdigest()
    return state


_TABLES = ("log_lines", "logs", "snapshots", "blobs", "archive", "archive_tags", "secrets")


async def _database_state(url: str) -> dict[str, str]:
    conn = await asyncpg.connect(url)
    try:
        state = {}
        for table in _TABLES:
            rows = await conn.fetch(f"SELECT * FROM platform.{table}")
            digest = hashlib.blake2b()
            for row in sorted(repr(tuple(row)) for row in rows):
                digest.update(row.encode())
            state[table] = digest.hexdigest()
        return state
    finally:
        await conn.close()
