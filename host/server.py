"""Serving the app with Hypercorn; SIGTERM and SIGINT shut down gracefully.

On a signal Hypercorn stops accepting connections, lets in-flight requests finish (up to the
graceful timeout), then runs the lifespan's shutdown: activations are cancelled (they resume
from the ledger next time), every pending record is fsync'd, and the worker lock is released.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import signal
from typing import Any

from hypercorn.asyncio import serve
from hypercorn.config import Config
from hypercorn.utils import LifespanFailureError

from host.app import create_app
from host.config import HostConfig
from platform_shim.runtime import WorkerOptions

__all__ = ["run_server"]

log = logging.getLogger("host")


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def run_server(config: HostConfig, **app_options: Any) -> None:
    """Serve until SIGTERM/SIGINT."""
    config.check()
    # This process is the host's: it may freeze the collector over the state it loads.
    app_options.setdefault(
        "worker_options", WorkerOptions(durability=config.durability, freeze_gc=True)
    )
    app = create_app(config, **app_options)
    hyper = Config()
    hyper.bind = [_bind(config.host, config.port)]
    hyper.accesslog = None
    hyper.graceful_timeout = 5.0
    # Opening a large data folder (and compacting it) may take a while; never give up early.
    hyper.startup_timeout = 3600.0
    hyper.loglevel = "WARNING"
    stop = asyncio.Event()
    app.state.shutting_down = stop  # open SSE streams end at once instead of holding shutdown
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info(
        "%s on http://%s (data: %s)",
        "dev server (hot reload)" if config.dev else "serving",
        _bind(config.host, config.port),
        config.data_dir,
    )
    try:
        await serve(app, hyper, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise SystemExit(
                f"cannot listen on {_bind(config.host, config.port)}: the port is in use"
            ) from None
        raise
    except LifespanFailureError:
        # The lifespan kept the real reason (a module that failed to load, a locked folder):
        # raise that, not Hypercorn's wrapper around Starlette's traceback text.
        error = app.state.host.startup_error
        if error is not None:
            raise error from None
        raise
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
    log.info("stopped")
