"""``/openapi.json`` against the app itself: every route it serves, the status enums of the code,
and the refusals of the middleware stack it runs.

The app is built in-process (``create_app`` under ``dev``, so the dev-only routes are there too)
and not started: the route table and the middleware exist before the lifespan runs, and the
document and the refusals need no worker.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

from host.app import create_app
from host.config import HostConfig
from host.middleware import Refusal
from host.openapi import REFUSING
from platform_shim.workflows import RunStatus, StepKind, StepStatus
from tests.chaos.inproc import raw_request

_PARAM = re.compile(r"\{[^}]+\}")


def _app(tmp_path: Path, **config: Any) -> Starlette:
    (tmp_path / "project").mkdir(exist_ok=True)
    options = {"project_dir": tmp_path / "project", "data_dir": tmp_path / "data", "dev": True}
    return create_app(HostConfig(**{**options, **config}))


@pytest.fixture
def document(tmp_path: Path) -> dict[str, Any]:
    """The document as the app serves it."""

    async def fetch() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=_app(tmp_path))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            answer = await client.get("/openapi.json")
        assert answer.status_code == 200
        served: dict[str, Any] = answer.json()
        return served

    return asyncio.run(fetch())


def _walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, set[str]]]:
    """``(path template, methods)`` of every route, mounted sub-apps' included; a WebSocket is
    its handshake, a ``GET``; ``HEAD`` is left out (Starlette adds it to every ``GET`` route)."""
    for route in routes:
        if isinstance(route, Mount):
            yield from _walk(list(route.routes), prefix + route.path)
        elif isinstance(route, WebSocketRoute):
            yield prefix + route.path, {"get"}
        elif isinstance(route, Route):
            methods = {m.lower() for m in route.methods or ["GET"]} - {"head"}
            yield prefix + route.path, methods
        else:
            raise AssertionError(f"a route of a kind this test does not know: {route!r}")


def _shape(template: str) -> str:
    """A path template without its parameter names (the document says ``{runId}`` where the
    route says ``{run_id:str}``)."""
    return _PARAM.sub("{}", template)


def test_every_route_the_app_serves_is_in_the_document_with_its_methods(
    tmp_path: Path, document: dict[str, Any]
) -> None:
    app = _app(tmp_path)
    served = {_shape(path): ops for path, ops in document["paths"].items()}
    routes = list(_walk(app.routes))
    assert len(routes) > 60  # the API, the dashboard, the dev routes, the WebSocket
    missing = [
        f"{method.upper()} {path}"
        for path, methods in routes
        for method in sorted(methods)
        if method not in served.get(_shape(path), {})
    ]
    assert not missing, f"served but not in /openapi.json: {missing}"
    # And the other way: nothing documented that no route serves (``{key:path}`` routes serve
    # more than one documented path: ``/api/storage/{key}/metadata``).
    regexes = [r.path_regex for r in app.routes if isinstance(r, Route | WebSocketRoute)]
    stale = sorted(
        path
        for path in document["paths"]
        if not any(regex.match(_PARAM.sub("x", path)) for regex in regexes)
    )
    assert not stale, f"in /openapi.json but served by no route: {stale}"


def test_every_reference_in_the_document_resolves(document: dict[str, Any]) -> None:
    def refs(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    found = set(refs(document))
    assert len(found) > 20
    for reference in sorted(found):
        _, section, kind, name = reference.split("/")
        assert name in document[section][kind], reference


def test_the_websocket_is_documented_as_a_handshake(document: dict[str, Any]) -> None:
    socket = document["paths"]["/_rt/ws"]["get"]
    assert socket["x-websocket"] is True
    assert "101" in socket["responses"]
    assert "403" in socket["responses"]  # the browser guards refuse other origins' handshakes


def test_status_enums_are_the_enums_of_the_code(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert schemas["RunStatus"]["enum"] == [status.value for status in RunStatus]
    assert schemas["Step"]["properties"]["kind"]["enum"] == [kind.value for kind in StepKind]
    assert schemas["Step"]["properties"]["status"]["enum"] == [s.value for s in StepStatus]
    assert schemas["Run"]["properties"]["status"] == {"$ref": "#/components/schemas/RunStatus"}
    # Every run-status filter of the API and the dashboard refers to that one schema.
    filters = [
        (path, parameter["schema"])
        for path, operations in document["paths"].items()
        for operation in operations.values()
        for parameter in operation.get("parameters", [])
        if parameter["name"] == "status"
    ]
    assert {path for path, _ in filters} >= {
        "/api/workflows/runs",
        "/_platform/api/runs",
        "/_platform/api/runs/search",
    }
    for path, schema in filters:
        assert schema == {"$ref": "#/components/schemas/RunStatus"}, path


def _refusing_classes(app: Starlette) -> set[type]:
    return {m.cls for m in app.user_middleware if hasattr(m.cls, "refusals")}  # type: ignore[misc]


def test_the_document_lists_the_refusals_of_the_apps_middleware(
    tmp_path: Path, document: dict[str, Any]
) -> None:
    # The document is derived from REFUSING: it must be exactly the app's refusing middleware,
    # with a token too (where the browser guards stand aside, but are still in the list).
    assert _refusing_classes(_app(tmp_path)) == set(REFUSING)
    assert _refusing_classes(_app(tmp_path, token="t")) == set(REFUSING)
    refusals: list[Refusal] = [r for cls in REFUSING for r in cls.refusals]
    assert {r.status for r in refusals} == {400, 401, 403, 413, 415}
    responses = document["components"]["responses"]
    for refusal in refusals:
        assert refusal.description in responses[str(refusal.status)]["description"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            kind = "websocket" if operation.get("x-websocket") else "http"
            for refusal in refusals:
                if refusal.guards(kind, method.upper(), path):
                    assert str(refusal.status) in operation["responses"], (method, path, refusal)
    kv_put = document["paths"]["/api/kv/{ns}/{key}"]["put"]["responses"]
    assert {"400", "401", "403", "413", "415"} <= set(kv_put)
    storage_put = document["paths"]["/api/storage/{key}"]["put"]["responses"]
    assert "415" not in storage_put  # object bytes may be of any type
    assert "401" not in document["paths"]["/openapi.json"]["get"]["responses"]


# Requests each middleware refuses, with the status it answers: what the document says the code
# does, checked against what the code does.
REFUSED: list[tuple[dict[str, Any], str, str, list[tuple[bytes, bytes]], int]] = [
    ({}, "PUT", "/api/kv/ns/k", [(b"host", b"evil.example")], 403),
    ({}, "POST", "/api/kv/ns", [(b"host", b"127.0.0.1"), (b"origin", b"http://evil.example")], 403),
    ({}, "POST", "/api/kv/ns", [(b"host", b"127.0.0.1"), (b"content-type", b"text/plain")], 415),
    ({"token": "t"}, "GET", "/api/workflows/runs", [(b"host", b"127.0.0.1")], 401),
    ({"max_body": 10}, "PUT", "/api/kv/ns/k", [(b"content-length", b"11")], 413),
    ({}, "PUT", "/api/kv/ns/k", [(b"content-length", b"ten")], 400),
]


@pytest.mark.parametrize(("config", "method", "path", "headers", "status"), REFUSED)
def test_each_refusal_is_answered_as_documented(
    tmp_path: Path,
    document: dict[str, Any],
    config: dict[str, Any],
    method: str,
    path: str,
    headers: list[tuple[bytes, bytes]],
    status: int,
) -> None:
    app = _app(tmp_path, **config)
    answer = asyncio.run(raw_request(app, method, path.encode(), headers=headers))
    assert answer.status == status, answer.body
    template = "/api/kv/{ns}/{key}" if path.startswith("/api/kv/ns/") else path
    template = "/api/kv/{ns}" if path == "/api/kv/ns" else template
    assert str(status) in document["paths"][template][method.lower()]["responses"]
