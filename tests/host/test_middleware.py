"""The host's middleware one class at a time (``host/middleware.py``, ``host/security.py``).

Each wraps a tiny inner app that records whether it was reached; requests are hand-made ASGI
scopes (``raw_request``), so header bytes no HTTP client would send get through.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest
from starlette.types import Receive, Scope, Send

from host.app import create_app
from host.config import HostConfig
from host.middleware import (
    BearerTokenMiddleware,
    BodyLimitMiddleware,
    PlatformContextMiddleware,
)
from host.openapi import REFUSING
from host.security import JsonBodyMiddleware, SameOriginMiddleware, TrustedHostMiddleware
from tests.chaos.inproc import raw_request


class Inner:
    """The app behind a middleware: answers 204 and counts the scopes that reached it."""

    def __init__(self) -> None:
        self.reached: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.reached.append(scope["type"])
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})


def _each_middleware(inner: Inner) -> list[Any]:
    return [
        TrustedHostMiddleware(inner),
        SameOriginMiddleware(inner),
        JsonBodyMiddleware(inner),
        BearerTokenMiddleware(inner, token="t"),
        BodyLimitMiddleware(inner, max_body=10),
        PlatformContextMiddleware(inner, platform=lambda: contextlib.nullcontext(None)),
    ]


def test_every_refusal_is_named_in_its_class_docstring() -> None:
    for cls in REFUSING:
        for refusal in cls.refusals:
            assert str(refusal.status) in (cls.__doc__ or ""), (cls.__name__, refusal.status)


def test_lifespan_and_other_scopes_pass_through_every_middleware() -> None:
    """A scope without a path or headers (the lifespan's) must reach the app: a middleware
    that reads ``scope["path"]`` first stops the host from ever starting."""

    async def lifespan_through(middleware: Any) -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "lifespan.startup"}

        async def send(message: Any) -> None:
            raise AssertionError(f"{type(middleware).__name__} answered a lifespan: {message}")

        await middleware({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)

    inner = Inner()
    for middleware in _each_middleware(inner):
        asyncio.run(lifespan_through(middleware))
    assert inner.reached == ["lifespan"] * 6


@pytest.mark.parametrize("length", ["²", "1³", "¹", "1_0", " 5", "-1", "0x5", "5.0", ""])
def test_a_content_length_that_is_not_ascii_digits_is_a_400(tmp_path: Path, length: str) -> None:
    """Header bytes are read as latin-1, where "²", "³" and "¹" are digits to ``str.isdigit``
    but not to ``int``: a 400 naming the header, never a 500 (through the whole app)."""
    app = create_app(HostConfig(project_dir=tmp_path, data_dir=tmp_path / "data"))
    headers = [(b"host", b"127.0.0.1"), (b"content-length", length.encode("latin-1"))]
    answer = asyncio.run(raw_request(app, "PUT", b"/api/kv/ns/k", headers=headers, chunks=[b"1"]))
    assert answer.status == 400, answer.body
    assert b"Content-Length" in answer.body


def test_the_body_limit_counts_a_body_without_a_length(tmp_path: Path) -> None:
    """A chunked body (no Content-Length) is counted as it arrives: a 413 from the read that
    passes the limit, through the whole app."""
    config = HostConfig(project_dir=tmp_path, data_dir=tmp_path / "data", max_body=10)
    app = create_app(config)
    headers = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]
    over = asyncio.run(
        raw_request(app, "PUT", b"/api/kv/ns/k", headers=headers, chunks=[b'"1234', b'567890"'])
    )
    assert over.status == 413, over.body
    assert b"10-byte limit" in over.body


def test_the_token_is_read_from_the_header_or_where_allowed_the_first_query_value() -> None:
    inner = Inner()
    app: Any = BearerTokenMiddleware(inner, token="right")

    def status(path: str, query: bytes = b"", auth: bytes | None = None) -> int:
        headers = [(b"authorization", auth)] if auth is not None else []
        return asyncio.run(
            raw_request(app, "GET", path.encode(), query=query, headers=headers)
        ).status

    assert status("/api/kv/ns/k") == 401
    assert status("/api/kv/ns/k", auth=b"Bearer right") == 204
    assert status("/api/kv/ns/k", auth=b"Bearer wrong") == 401
    assert status("/api/kv/ns/k", auth=b"bearer right") == 401  # the scheme as RFC 6750 spells it
    assert status("/api/kv/ns/k", query=b"token=right") == 401  # not where a URL token is allowed
    assert status("/api/events/stream", query=b"token=right") == 204
    assert status("/_platform/", query=b"a=1&token=r%69ght") == 204  # percent-decoded
    assert status("/_platform/", query=b"token=right&token=wrong") == 204  # the first one
    assert status("/_platform/", query=b"token=wrong&token=right") == 401
    assert status("/_platform/", query=b"token") == 401
    assert status("/routes/of/the/app") == 204  # the user's routes are the app's public face


def test_the_dashboard_echoes_the_token_the_host_checked(tmp_path: Path) -> None:
    app = create_app(HostConfig(project_dir=tmp_path, data_dir=tmp_path / "data", token="a b+c"))

    def page(query: bytes) -> tuple[int, bytes]:
        answer = asyncio.run(
            raw_request(app, "GET", b"/_platform/", query=query, headers=[(b"host", b"x")])
        )
        return answer.status, answer.body

    status, body = page(b"token=a+b%2Bc&token=nope")
    assert status == 200
    assert b'src="/_platform/static/common.js?token=a%20b%2Bc"' in body
    assert page(b"token=nope&token=a+b%2Bc")[0] == 401
