"""Other web pages cannot drive the host: each attack a page can make, refused, nothing changed.

In the default mode (127.0.0.1, no token) any page the user opens may send requests to the
host, and a rebinding domain may even read the answers. Every attack below was answered (and
carried out) before ``host.security``: a ``text/plain`` POST from another origin cancelled runs,
sent events, started and reran runs, published events, updated documents and moved the dev
clock 10 years; ``Host: evil.example`` read data. Each is now a 403 or 415 and the state is
unchanged, while the same-origin dashboard, the npm client (no ``Origin``) and curl still work.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from host.app import create_app
from host.config import HostConfig
from host.security import JsonBodyMiddleware, SameOriginMiddleware, TrustedHostMiddleware
from tests.chaos.inproc import lifespan

WORKFLOWS = """
from platform_shim.workflows import define_workflow


@define_workflow({"id": "napper", "options": {"retries": 0}})
async def napper(input, step, ctx):
    await step.run("first", lambda: 1)
    await step.sleep("nap", "24h")
    return await step.wait_for_event("reply", type="attack.reply", timeout="7d")
"""

ROUTES = """
from starlette.responses import JSONResponse
from starlette.routing import Route


async def hello(request):
    return JSONResponse({"hello": "world"})


routes = [Route("/hello", hello, methods=["GET", "POST"])]
"""

EVIL = "http://evil.example"
HERE = "http://127.0.0.1:3001"
WS_HERE = "ws://127.0.0.1:3001"


@pytest.fixture
async def dev_host(tmp_path: Path) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """A ``dev`` host (its clock can be moved) in this process, reached as 127.0.0.1:3001."""
    project = tmp_path / "project"
    (project / "workflows").mkdir(parents=True)
    (project / "workflows" / "napper.py").write_text(textwrap.dedent(WORKFLOWS))
    (project / "routes.py").write_text(textwrap.dedent(ROUTES))
    app = create_app(HostConfig(project_dir=project, data_dir=tmp_path / "data", dev=True))
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=HERE) as client:
            yield app, client


async def snapshot(client: httpx.AsyncClient) -> dict[str, Any]:
    """Everything an attack could change, read the way a user would."""
    runs = (await client.get("/api/workflows/runs?limit=100")).json()
    events = (await client.get("/api/events?limit=1000")).json()
    docs = (await client.post("/api/db/users", json={})).json()
    clock = (await client.get("/api/dev/clock")).json()
    return {
        "runs": sorted((r["runId"], r["status"]) for r in runs),
        "events": [e["id"] for e in events],
        "docs": docs,
        "clock_offset": clock["offsetMs"],
    }


async def sleeping_run(client: httpx.AsyncClient) -> str:
    run_id: str = (await client.post("/api/workflows/napper/start", json={})).json()["runId"]
    for _ in range(200):
        if (await client.get(f"/api/workflows/runs/{run_id}")).json()["status"] == "sleeping":
            return run_id
        await asyncio.sleep(0.01)
    raise AssertionError("the run never parked")


def attacks(run_id: str) -> list[tuple[str, str, str]]:
    """(method, path, text/plain body) of every state-changing request a page would send."""
    return [
        ("POST", f"/api/workflows/runs/{run_id}/cancel", ""),
        ("POST", "/api/workflows/signal", '{"eventType": "attack.reply", "payload": {}}'),
        ("POST", "/api/workflows/napper/start", "{}"),
        ("POST", f"/api/workflows/runs/{run_id}/rerun", '{"fromStep": "first"}'),
        ("POST", "/api/events", '{"t": "auth.user.registered", "data": {}}'),
        ("POST", "/api/db/users/update", '{"filter": {}, "update": {"$set": {"admin": true}}}'),
        ("PUT", "/api/db/users", '{"_id": "mallory", "admin": true}'),
        ("DELETE", "/api/db/users/delete", "{}"),
        ("PUT", "/api/kv/config/flag", "true"),
        ("POST", "/api/dev/clock", '{"advance": "3650d"}'),
    ]


async def test_cross_site_requests_are_refused_and_change_nothing(
    dev_host: tuple[Starlette, httpx.AsyncClient],
) -> None:
    app, client = dev_host
    await client.put("/api/db/users", json={"_id": "u1", "admin": False})
    run_id = await sleeping_run(client)
    await app.state.platform.settle()  # the status relay batches: its events are written now
    before = await snapshot(client)
    assert before["runs"] == [(run_id, "sleeping")]
    forms = [
        # A page on another site: the browser sends its Origin.
        ({"Origin": EVIL}, 403),
        ({"Origin": "null"}, 403),  # a sandboxed frame or a file:// page
        ({"Origin": "http://127.0.0.1:8080"}, 403),  # another local dev server
        ({"Origin": "https://127.0.0.1:3001"}, 403),  # another scheme
        # A browser that left Origin out but said where the request came from.
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Sec-Fetch-Site": "same-site"}, 403),
        # No Origin, no Sec-Fetch-Site (an old browser): a form or text body cannot reach JSON.
        ({}, 415),
    ]
    for method, path, body in attacks(run_id):
        for headers, status in forms:
            for content_type in ("text/plain", "application/x-www-form-urlencoded"):
                answer = await client.request(
                    method,
                    path,
                    content=body.encode(),
                    headers={**headers, "Content-Type": content_type},
                )
                assert answer.status_code == status, (method, path, headers, answer.text)
                assert answer.json()["error"] in ("forbidden", "unsupported_media_type")
            # Also a multipart form and, for the origin checks, no body type at all.
            answer = await client.request(
                method,
                path,
                content=b"--x--\r\n",
                headers={**headers, "Content-Type": "multipart/form-data; boundary=x"},
            )
            assert answer.status_code == status, (method, path, headers)
            if status == 403:
                answer = await client.request(method, path, content=body.encode(), headers=headers)
                assert answer.status_code == 403, (method, path, headers)
    await app.state.platform.settle()  # anything a refused request had started is done now
    assert await snapshot(client) == before


async def test_a_rebinding_host_name_reads_nothing(
    dev_host: tuple[Starlette, httpx.AsyncClient],
) -> None:
    _, client = dev_host
    await client.put("/api/kv/secrets/k", json="the value")
    for path in (
        "/api/kv/secrets/k",
        "/api/workflows/runs",
        "/api/events",
        "/api/events/stream",
        "/_platform/",
        "/_platform/api/overview",
        "/openapi.json",
        "/hello",  # the user's own routes too
    ):
        for host in ("evil.example", "evil.example:3001", "127.0.0.1.evil.example", "0.0.0.0:3001"):
            answer = await client.get(path, headers={"Host": host})
            assert answer.status_code == 403, (path, host)
            assert b"the value" not in answer.content
            assert answer.json()["error"] == "forbidden"
    answer = await client.put("/api/kv/secrets/k", json="evil", headers={"Host": "evil.example"})
    assert answer.status_code == 403
    assert (await client.get("/api/kv/secrets/k")).json() == "the value"


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1:3001", "127.0.0.1", "127.9.8.7:80", "localhost:3001", "LOCALHOST", "[::1]:3001"],
)
async def test_loopback_names_are_answered(
    dev_host: tuple[Starlette, httpx.AsyncClient], host: str
) -> None:
    _, client = dev_host
    answer = await client.get("/api/workflows/runs", headers={"Host": host})
    assert answer.status_code == 200, answer.text


async def test_the_dashboard_the_npm_client_and_curl_keep_working(
    dev_host: tuple[Starlette, httpx.AsyncClient],
) -> None:
    _, client = dev_host
    run_id = await sleeping_run(client)
    # The dashboard: same origin, JSON body (or none), as Chromium sends it.
    dashboard = {"Origin": HERE, "Sec-Fetch-Site": "same-origin", "Referer": f"{HERE}/_platform/"}
    answer = await client.post(
        "/api/workflows/signal",
        json={"eventType": "nothing.waits", "payload": {}},
        headers=dashboard,
    )
    assert answer.status_code == 200 and answer.json() == {"count": 0}
    answer = await client.post(f"/api/workflows/runs/{run_id}/cancel", headers=dashboard)
    assert answer.status_code == 200 and answer.json() == {"cancelled": True}
    # The npm client: Node's fetch sends no Origin; its bodies are application/json.
    node = {"Content-Type": "application/json", "Sec-Fetch-Mode": "cors", "X-Tenant-Id": "dev"}
    answer = await client.put("/api/kv/ns/k", content=b'{"a": 1}', headers=node)
    assert answer.status_code == 200
    # curl --json, and curl with no body type at all.
    answer = await client.post(
        "/api/db/users/update",
        content=b'{"filter": {}, "update": {"$set": {"x": 1}}}',
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    assert answer.status_code == 200
    answer = await client.post("/api/events", content=b'{"t": "hello"}')
    assert answer.status_code == 200
    # Object bytes keep their own type, and the user's routes choose their own policy.
    answer = await client.put(
        "/api/storage/notes/a.txt", content=b"plain", headers={"Content-Type": "text/plain"}
    )
    assert answer.status_code == 200
    assert (await client.post("/hello", content=b"x", headers={"Origin": EVIL})).status_code == 200


async def test_configured_names_are_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLATFORM_ALLOWED_HOSTS", "myapp.test, other.test")
    config = HostConfig(
        project_dir=tmp_path, data_dir=tmp_path / "data", allowed_hosts=("dev.box",)
    )
    app = create_app(config)
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://myapp.test:3001") as c:
            assert (await c.get("/api/workflows/runs")).status_code == 200
            for host in ("other.test", "dev.box:3001"):
                assert (
                    await c.get("/api/workflows/runs", headers={"Host": host})
                ).status_code == 200
            assert (
                await c.get("/api/workflows/runs", headers={"Host": "evil.test"})
            ).status_code == 403
            # The page served under the configured name is same-origin with it.
            answer = await c.post(
                "/api/events", json={"t": "x"}, headers={"Origin": "http://myapp.test:3001"}
            )
            assert answer.status_code == 200
            answer = await c.post(
                "/api/events", json={"t": "x"}, headers={"Origin": "http://evil.test"}
            )
            assert answer.status_code == 403


async def test_with_a_token_the_bearer_guards_instead(tmp_path: Path) -> None:
    config = HostConfig(
        project_dir=tmp_path, data_dir=tmp_path / "data", host="0.0.0.0", token="t0k"
    )
    app = create_app(config)
    async with lifespan(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://10.1.2.3:3001") as c:
            bearer = {"Authorization": "Bearer t0k"}
            assert (await c.get("/api/workflows/runs", headers=bearer)).status_code == 200
            assert (await c.get("/api/workflows/runs")).status_code == 401
            # Form bodies are still not JSON.
            answer = await c.post(
                "/api/events", content=b"t=x", headers={**bearer, "Content-Type": "text/plain"}
            )
            assert answer.status_code == 415


# ------------------------------------------------------------------ WebSockets, one concern each


async def _echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hi")
    await websocket.close()


async def _ok(request: Any) -> PlainTextResponse:
    return PlainTextResponse("ok")


def _guarded_app() -> Any:
    inner = Starlette(
        routes=[WebSocketRoute("/_rt/ws", _echo), WebSocketRoute("/ws", _echo), Route("/", _ok)]
    )
    return TrustedHostMiddleware(SameOriginMiddleware(JsonBodyMiddleware(inner)))


async def _handshake(path: str, host: str, origin: str | None = None) -> dict[str, Any]:
    """Open a WebSocket on the guarded app over ASGI; the first message it sends back."""
    headers = [(b"host", host.encode())]
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": headers,
        "subprotocols": [],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 3001),
    }
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "websocket.connect"}]

    async def receive() -> dict[str, Any]:
        if incoming:
            return incoming.pop(0)
        return {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await _guarded_app()(scope, receive, send)
    return sent[0]


async def test_websocket_handshakes_from_other_hosts_and_origins_are_refused() -> None:
    for path in ("/_rt/ws", "/ws"):
        assert (await _handshake(path, "127.0.0.1:3001", HERE))["type"] == "websocket.accept"
        refused = await _handshake(path, "evil.example")
        assert refused["type"] == "websocket.close" and refused["code"] == 1008
    # Another origin may not open the platform's socket (the user's own chooses for itself).
    refused = await _handshake("/_rt/ws", "127.0.0.1:3001", EVIL)
    assert refused["type"] == "websocket.close" and refused["code"] == 1008
    assert (await _handshake("/ws", "127.0.0.1:3001", EVIL))["type"] == "websocket.accept"
