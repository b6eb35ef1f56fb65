"""The host's Starlette application: the HTTP API, user routes, and one lifespan.

The lifespan takes the data folder (worker lock, logs), imports the user's code with
``get_platform()`` already answering, then starts the engine, dispatcher, scheduler and watcher,
and in ``dev`` the code reloader; it stops them in the opposite order. A small ASGI middleware
in front of everything checks the bearer token (when one is configured), bounds request bodies,
and makes ``get_platform()`` return the host's platform inside user routes; in front of it,
``host.security`` keeps other web pages from driving the host.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote_plus

from starlette.applications import Starlette
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from host.api import api_routes
from host.api.dev import routes as dev_routes
from host.config import HostConfig
from host.dashboard import dashboard_routes
from host.devclock import SkippableClock
from host.errors import ApiError, error_response, exception_handlers
from host.loader import Loader
from host.openapi import routes as openapi_routes
from host.security import JsonBodyMiddleware, SameOriginMiddleware, TrustedHostMiddleware
from platform_shim.platform import Platform, current_platform
from platform_shim.runtime import Worker, WorkerOptions

__all__ = ["HostState", "create_app"]

log = logging.getLogger("host")


class HostState:
    """What the running host holds: config, loader, worker, reloader."""

    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.loader = Loader(config.project_dir)
        self.worker: Worker | None = None
        self.reloader: Any = None
        self.app: Starlette | None = None
        self.startup_error: BaseException | None = None  # why the lifespan could not start

    @property
    def platform(self) -> Platform:
        assert self.worker is not None
        return self.worker.platform

    def install_routes(self) -> None:
        """Put the API, the dashboard and the user's routes on the app (again after a reload)."""
        assert self.app is not None
        user = self.loader.routes()
        dev = dev_routes if self.config.dev else []
        self.app.router.routes[:] = [
            *api_routes(),
            *dev,
            *openapi_routes,
            *dashboard_routes(),
            *user,
        ]

    def describe(self) -> None:
        loader = self.loader
        workflows = loader.workflows()
        triggers = [
            f"{wf.id} ({wf.trigger.to_dict()['kind']})" for _, _, wf in workflows if wf.trigger
        ]
        log.info(
            "loaded %d workflow(s): %s",
            len(workflows),
            ", ".join(wf.id for _, _, wf in workflows) or "none",
        )
        log.info(
            "loaded %d handler(s): %s",
            len(loader.handlers()),
            ", ".join(h.id for h in loader.handlers()) or "none",
        )
        log.info("triggers: %s", ", ".join(triggers) or "none")
        log.info("user routes: %s", ", ".join(_route_path(r) for r in loader.routes()) or "none")


def _route_path(route: BaseRoute) -> str:
    return str(getattr(route, "path", route))


class HostMiddleware:
    """Token check, body limit, and ``get_platform()`` for every request."""

    def __init__(self, app: ASGIApp, state: HostState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        config = self.state.config
        path: str = scope["path"]
        if (
            config.token
            and (path.startswith("/api") or path.startswith("/_platform"))
            and not self._authorized(scope)
        ):
            await error_response(
                401,
                "missing or wrong 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > config.max_body):
            status, detail = (
                (413, f"the body is over the {config.max_body}-byte limit")
                if length.isdigit()
                else (400, "bad Content-Length")
            )
            await error_response(status, detail)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > config.max_body:
                    raise ApiError(413, f"the body is over the {config.max_body}-byte limit")
            return message

        worker = self.state.worker
        token = (
            current_platform.set(worker.platform)
            if worker is not None and worker.store is not None
            else None
        )
        try:
            await self.app(scope, limited_receive, send)
        finally:
            if token is not None:
                current_platform.reset(token)

    def _authorized(self, scope: Scope) -> bool:
        expected = self.state.config.token or ""
        given = _header(scope, b"authorization") or ""
        if given.startswith("Bearer "):
            return hmac.compare_digest(given[7:].encode(), expected.encode())
        # EventSource cannot send headers: the SSE stream and the dashboard take ?token= too
        # (only those: a token in a URL ends up in logs and histories).
        path: str = scope["path"]
        if not (path == "/api/events/stream" or path.startswith("/_platform")):
            return False
        query = scope.get("query_string", b"").decode("latin-1")
        for part in query.split("&"):
            if part.startswith("token="):
                given = unquote_plus(part[6:])
                return hmac.compare_digest(given.encode(), expected.encode())
        return False


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def create_app(
    config: HostConfig, *, worker_options: WorkerOptions | None = None, clock: Any = None
) -> Starlette:
    """The host application for ``config`` (its lifespan runs the worker)."""
    state = HostState(config)
    if clock is None and config.dev:
        clock = SkippableClock()  # POST /api/dev/clock {"advance": "24h"} skips ahead

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        options = worker_options or WorkerOptions(durability=config.durability)
        worker = Worker(
            config.data_dir or "data", registry=state.loader.registry, clock=clock, options=options
        )
        try:
            worker.open()
        except BaseException as exc:
            state.startup_error = exc
            raise
        state.worker = worker
        app.state.platform = worker.platform
        app.state.worker = worker
        try:
            token = current_platform.set(worker.platform)
            try:
                state.loader.load_all(strict=not config.dev)
            except BaseException as exc:
                state.startup_error = exc
                raise
            finally:
                current_platform.reset(token)
            worker.handlers = state.loader.handlers()
            state.install_routes()
            state.describe()
            await worker.begin()
            if config.dev:
                from host.reload import Reloader

                state.reloader = Reloader(state)
                state.reloader.start()
            yield
        finally:
            if state.reloader is not None:
                await state.reloader.stop()
            await worker.stop()
            state.worker = None

    app = Starlette(lifespan=lifespan, exception_handlers=exception_handlers)
    app.state.host = state
    app.state.clock = clock
    state.app = app
    state.install_routes()
    app.add_middleware(HostMiddleware, state=state)
    # Outermost last: the Host check, then the origin check, then the body type.
    browser_guard = config.token is None  # with a token, no page can send the bearer
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(SameOriginMiddleware, enabled=browser_guard)
    app.add_middleware(TrustedHostMiddleware, allowed=config.allowed_hosts, enabled=browser_guard)
    return app
