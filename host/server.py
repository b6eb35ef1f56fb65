"""Serving the app with Hypercorn; SIGTERM and SIGINT shut down gracefully.

Start-up happens in an order that lets every failure be one clear line: bind the listening
socket first (a busy port fails before anything is opened), then open the data folder and import
the project (a locked folder or a broken module fails with the port released), and only then
announce the address and serve. Each failure raises ``StartupError`` (or the platform's own
error) for the CLI to print; Hypercorn never sees a lifespan that could fail.

On a signal Hypercorn stops accepting connections, lets in-flight requests finish (up to the
graceful timeout); then the host stops: activations are cancelled (they resume from the ledger
next time), every pending record is fsync'd, and the worker lock is released.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
import socket
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config

from host.app import HostState, create_app
from host.config import HostConfig
from platform_shim.runtime import WorkerOptions

__all__ = ["StartupError", "listen", "run_server"]

log = logging.getLogger("host")


class StartupError(Exception):
    """The host could not start; the message says why in one line."""


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``, or ``StartupError`` saying why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {_address(host, port)}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError as exc:
        sock.close()
        why = "the port is in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise StartupError(f"cannot listen on {_address(host, port)}: {why}") from None
    return sock


async def run_server(config: HostConfig, **app_options: Any) -> None:
    """Bind, start the host, announce it, serve until SIGTERM/SIGINT, stop."""
    config.check()
    # This process is the host's: it may freeze the collector over the state it loads.
    options = WorkerOptions(durability=config.durability, freeze_gc=True)
    if config.poll_interval is not None:
        options.poll_interval = config.poll_interval
    app_options.setdefault("worker_options", options)
    sock = listen(config.host, config.port)
    port = int(sock.getsockname()[1])  # the real one when --port 0 asked for any free port
    app = create_app(config, **app_options)
    state: HostState = app.state.host
    try:
        await state.start()
    except BaseException:
        sock.close()
        raise
    url = f"http://{_address(config.host, port)}"
    hyper = Config()
    hyper.bind = [f"fd://{sock.detach()}"]  # Hypercorn owns (and closes) the socket from here
    hyper.accesslog = None
    hyper.graceful_timeout = 5.0
    hyper.loglevel = "WARNING"
    stop = asyncio.Event()
    app.state.shutting_down = stop  # open SSE streams end at once instead of holding shutdown
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info(
        "%s on %s (data: %s)",
        "dev server (hot reload)" if config.dev else "serving",
        url,
        config.where,
    )
    log.info("dashboard: %s/_platform/", url)
    try:
        await serve(app, hyper, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await state.stop()
    log.info("stopped")
