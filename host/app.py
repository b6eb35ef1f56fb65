"""The host's Starlette application: the HTTP API, user routes, and one lifespan.

``HostState.start`` takes the data folder (worker lock, logs), imports the user's code with
``get_platform()`` already answering, then starts the engine, dispatcher, scheduler and watcher,
and in ``dev`` the code reloader; ``stop`` stops them in the opposite order. When another
process holds the worker lock (and ``config.standby`` allows it), the host serves through a
client platform instead and becomes the worker when that process is gone (``host.standby``):
the app always serves through ``HostState.platform``, switched only once the engine has
recovered every run. A worker whose lock is lost (the database ended the session holding it:
a restart, a failover) steps down the same way: it stops its engine, serves as a standby, and
is the worker again once nobody else is. The lifespan runs
them, unless the server already did (it starts the host before it announces it is serving).
``create_app`` lists the middleware in one place, one class per concern: the browser guards of
``host.security``, then the token check, the body limit and ``get_platform()`` of
``host.middleware``. In ``dev``, ``/`` leads to the dashboard when the app has no route there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from host.accesslog import RequestLog, RunLog
from host.api import api_routes
from host.api.dev import routes as dev_routes
from host.config import HostConfig
from host.dashboard import dashboard_routes
from host.devclock import SkippableClock
from host.errors import exception_handlers
from host.loader import Loader
from host.middleware import BearerTokenMiddleware, BodyLimitMiddleware, PlatformContextMiddleware
from host.openapi import routes as openapi_routes
from host.project_config import ProjectConfig, load_project_config
from host.realtime_ws import RealtimeHub
from host.realtime_ws import routes as realtime_ws_routes
from host.security import JsonBodyMiddleware, SameOriginMiddleware, TrustedHostMiddleware
from host.standby import DEFAULT_POLL_S, Standby
from platform_shim.clock import read_offset, write_offset
from platform_shim.errors import DataDirLocked
from platform_shim.platform import Platform, current_platform, open_client
from platform_shim.runtime import Worker, WorkerOptions
from platform_shim.store.protocol import Store

__all__ = ["HostState", "create_app"]

log = logging.getLogger("host")


class HostState:
    """What the running host holds: config, loader, worker, reloader."""

    def __init__(self, config: HostConfig) -> None:
        self.config = config
        self.loader = Loader(config.project_dir)
        self.worker: Worker | None = None
        self.reloader: Any = None
        self.realtime_hub: RealtimeHub | None = None  # the WebSocket fan-out, once started
        self.app: Starlette | None = None
        self.startup_error: BaseException | None = None  # why the lifespan could not start
        self.clock: Any = None
        self.worker_options: WorkerOptions | None = None
        self.run_log: RunLog | None = None
        self.standby: Standby | None = None  # while another process is the store's worker
        self._lock_watch: asyncio.Task[None] | None = None  # the worker's: is the lock still ours?
        self._stepping_down = False
        self._stopping = False
        self.project: ProjectConfig | None = None

    @property
    def platform(self) -> Platform:
        """The platform the host serves through: the worker's, or a standby's client."""
        if self.worker is not None:
            return self.worker.platform
        assert self.standby is not None, "the host is not started"
        return self.standby.platform

    @contextlib.contextmanager
    def serving(self) -> Iterator[Platform | None]:
        """The platform for one request (None before the host started), held to its end: a
        standby's client outlives a takeover until the requests that began on it are done."""
        if self.worker is not None and self.worker.store is not None:
            yield self.worker.platform
        elif self.standby is not None:
            with self.standby.serving() as platform:
                yield platform
        else:
            yield None

    def install_routes(self) -> None:
        """Put the API, the dashboard and the user's routes on the app (again after a reload)."""
        assert self.app is not None
        user = self.loader.routes()
        dev = dev_routes if self.config.dev else []
        self.app.router.routes[:] = [
            *api_routes(),
            *realtime_ws_routes,
            *dev,
            *openapi_routes,
            *dashboard_routes(),
            *user,
            # Last, so only when the app itself has no route at /: a newcomer opening the dev
            # server's address lands on the dashboard instead of a 404.
            *([dashboard_redirect] if self.config.dev else []),
        ]

    async def start(self) -> None:
        """Open the data folder, import the user's code, start the worker (and the reloader);
        or, when another process is the folder's worker and ``config.standby`` allows it,
        serve as its standby (``host.standby``) until this process can take over.

        Raises what stopped it (``DataDirLocked``, ``LoadError``, ``DefinitionError``) with
        nothing left open."""
        config = self.config
        self._stopping = False
        options = self.worker_options or WorkerOptions(durability=config.durability)
        self.project = project = load_project_config(config.project_dir)
        options.realtime_history = project.history
        self.worker_options = options
        worker = self._new_worker()
        try:
            worker.open()
        except DataDirLocked as exc:
            if not (config.standby if config.standby is not None else not config.dev):
                raise
            await self._start_standby(exc.pid)
            return
        try:
            self._load_code(worker.platform)
            await self._become_worker(worker)
            if config.dev:
                from host.reload import Reloader

                self.reloader = Reloader(self)
                self.reloader.start()
        except BaseException:
            if self.worker is None:
                await worker.stop()
            await self.stop()
            raise

    def _new_worker(self) -> Worker:
        return Worker(
            self.config.location,
            registry=self.loader.registry,
            clock=self.clock,
            options=self.worker_options,
        )

    def _load_code(self, platform: Platform) -> None:
        """Import the project with ``get_platform()`` answering ``platform``; put its routes up."""
        assert self.app is not None
        self.app.state.platform = platform
        token = current_platform.set(platform)
        try:
            # A project that does not load does not start, under dev too: one clear error
            # naming the file and line beats a host serving half the code.
            self.loader.load_all(strict=True)
        finally:
            current_platform.reset(token)
        self.install_routes()
        self.describe()

    async def _become_worker(self, worker: Worker) -> None:
        """Run the engine of an opened ``worker`` and serve through its platform from then on."""
        assert self.app is not None
        project = self.project
        assert project is not None
        if not self.config.dev and read_offset(worker.data_dir):
            # A dev host skipped this folder's clock ahead; a served one runs on the wall clock.
            log.info("the data folder's dev clock offset is cleared: serving on the wall clock")
            write_offset(worker.data_dir, 0)
        worker.handlers = self.loader.handlers()
        await worker.begin()
        # Only now: a request never reaches an engine that has not recovered its runs.
        self.worker = worker
        self.app.state.platform = worker.platform
        self.app.state.worker = worker
        if self.realtime_hub is None:
            self.realtime_hub = RealtimeHub(
                worker.platform.realtime,
                worker.clock,
                grace_ms=project.presence_grace_ms,
                outbox=project.outbox,
            )
        else:
            self.realtime_hub.rebind(worker.platform.realtime)
        self.run_log = RunLog(worker)
        self._lock_watch = asyncio.get_running_loop().create_task(self._watch_lock(worker))

    async def _watch_lock(self, worker: Worker) -> None:
        """While ``worker`` is the host's: step down if its store loses the worker lock."""
        while self.worker is worker and not self._stopping:
            store = worker.store
            if store is not None and store.lock_lost:
                self._stepping_down = True
                try:
                    await self._step_down(worker)
                finally:
                    self._stepping_down = False
                return
            await asyncio.sleep(DEFAULT_POLL_S)

    async def _step_down(self, worker: Worker) -> None:
        """``worker``'s lock is lost (its store already writes nothing): serve as a standby
        from now on, which takes the lock again once nobody holds it, and stop the engine."""
        config = self.config
        assert self.app is not None
        log.warning(
            "lost the worker lock on %s: this host stops its engine and serves as a standby"
            " until it can be the worker again",
            worker.location,
        )
        client: Platform | None = None
        while client is None and not self._stopping:
            try:
                client = open_client(
                    config.location, durability=config.durability, clock=self.clock
                )
            except Exception as exc:  # a database still restarting refuses connections
                log.warning("standby: %s cannot be reached yet (%s)", worker.location, exc)
                await asyncio.sleep(DEFAULT_POLL_S)
        if client is not None:
            previous, self.standby = self.standby, Standby(client, config.location, self._take_over)
            self.worker = None
            self.app.state.worker = None
            self.app.state.platform = client
            if self.realtime_hub is not None:
                self.realtime_hub.rebind(client.realtime)
            if self.run_log is not None:
                self.run_log.close()
                self.run_log = None
            self.standby.start(None)
            if previous is not None:
                await previous.close()  # retired at the takeover that made ``worker`` ours
        else:
            self.worker = None  # the host stops: ``stop`` finds nothing more to stop here
        try:
            await worker.stop()
        except Exception:
            log.exception("stopping the engine that lost the worker lock failed")

    async def _start_standby(self, holder: int | None) -> None:
        """Serve through a client platform while ``holder`` is the worker."""
        assert self.app is not None
        config, project = self.config, self.project
        assert project is not None
        client = open_client(config.location, durability=config.durability, clock=self.clock)
        standby = self.standby = Standby(client, config.location, self._take_over)
        self.app.state.worker = None
        try:
            self._load_code(client)
            self.realtime_hub = RealtimeHub(
                client.realtime,
                client.clock,
                grace_ms=project.presence_grace_ms,
                outbox=project.outbox,
            )
            standby.start(holder)
            if config.dev:
                from host.reload import Reloader

                self.reloader = Reloader(self)
                self.reloader.start()
        except BaseException:
            await self.stop()
            raise

    async def _take_over(self, store: Store) -> bool:
        """The standby won the worker lock on ``store``: become the worker (True). If the
        engine does not start, the lock is let go and the error raised: the standby logs it and
        polls on, still serving as a client."""
        worker = self._new_worker()
        worker.open(store)
        try:
            await self._become_worker(worker)
        except BaseException:
            await worker.stop()
            raise
        log.info("took over as the worker on %s", worker.store.location if worker.store else "?")
        return True

    async def stop(self) -> None:
        self._stopping = True
        watch, self._lock_watch = self._lock_watch, None
        if watch is not None:
            if not self._stepping_down:
                watch.cancel()  # a step-down under way ends by itself, its engine stopped
            with contextlib.suppress(asyncio.CancelledError):
                await watch
        if self.reloader is not None:
            await self.reloader.stop()
            self.reloader = None
        if self.standby is not None:
            await self.standby.close()
            self.standby = None
        if self.run_log is not None:
            self.run_log.close()
            self.run_log = None
        if self.realtime_hub is not None:
            self.realtime_hub.close()
            self.realtime_hub = None
        if self.worker is not None:
            await self.worker.stop()
            self.worker = None

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


async def _to_dashboard(request: Request) -> Response:
    return RedirectResponse("/_platform/", status_code=307)


dashboard_redirect = Route("/", _to_dashboard, methods=["GET", "HEAD"])


def _route_path(route: BaseRoute) -> str:
    return str(getattr(route, "path", route))


def create_app(
    config: HostConfig, *, worker_options: WorkerOptions | None = None, clock: Any = None
) -> Starlette:
    """The host application for ``config`` (its lifespan runs the worker)."""
    state = HostState(config)
    if clock is None and config.dev:
        # POST /api/dev/clock {"advance": "24h"} skips ahead; the offset is kept in the data
        # folder, so the CLI and scripts on the folder see the same time (on a store that is
        # no folder, data_dir is None: the offset is this host's alone).
        clock = SkippableClock(config.data_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if state.worker is not None or state.standby is not None:
            # Started before serving (``run_server`` binds and opens first): it stops it too.
            yield
            return
        try:
            await state.start()
        except BaseException as exc:
            state.startup_error = exc
            raise
        try:
            yield
        finally:
            await state.stop()

    # Outermost first. Each middleware refuses one kind of request (its docstring says which,
    # with what status); refused requests are logged too. The browser guards only guard the
    # default mode: with a token no page can send the bearer.
    browser_guard = config.token is None
    middleware = [
        *([] if config.quiet else [Middleware(RequestLog)]),
        Middleware(TrustedHostMiddleware, allowed=config.allowed_hosts, enabled=browser_guard),
        Middleware(SameOriginMiddleware, enabled=browser_guard),
        Middleware(JsonBodyMiddleware),
        Middleware(BearerTokenMiddleware, token=config.token),
        Middleware(BodyLimitMiddleware, max_body=config.max_body),
        Middleware(PlatformContextMiddleware, platform=state.serving),
    ]
    app = Starlette(lifespan=lifespan, exception_handlers=exception_handlers, middleware=middleware)
    app.state.host = state
    app.state.clock = clock
    state.app = app
    state.clock = clock
    state.worker_options = worker_options
    state.install_routes()
    return app
