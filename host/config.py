"""The host's settings, from the command line and the environment.

Where the state lives follows ``platform_shim.locations``' one rule: ``store`` or ``data_dir``
as given, else ``$PLATFORM_STORE``, else ``$PLATFORM_DATA_DIR``, else ``PROJECT/data``; after
construction exactly one of ``store`` (a URL) and ``data_dir`` (a folder) is set.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from platform_shim.locations import describe, resolve_location
from platform_shim.store.protocol import Durability

__all__ = ["DEFAULT_MAX_BODY", "HostConfig", "is_loopback"]

DEFAULT_MAX_BODY = 10 * 1024 * 1024
"""Largest request body accepted (bytes): 10 MiB, or ``--max-body`` / ``PLATFORM_MAX_BODY``."""


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class HostConfig:
    """Where the project and its data are, where to listen, and how strictly."""

    project_dir: Path = field(default_factory=lambda: Path("."))
    data_dir: Path | None = None
    """The data folder; None when ``store`` is a URL."""
    store: str | None = None
    """Where state lives, as ``--store`` names it: a URL (``postgresql://…``, ``memory:``) or a
    folder (which then becomes ``data_dir``). Left out with ``data_dir``: ``$PLATFORM_STORE``,
    else ``$PLATFORM_DATA_DIR``, else ``PROJECT/data`` (``platform_shim.locations``)."""
    host: str = "127.0.0.1"
    port: int = 3001
    dev: bool = False
    quiet: bool = False  # no line per request
    token: str | None = None
    max_body: int = DEFAULT_MAX_BODY
    durability: Durability = "fsync"
    allowed_hosts: tuple[str, ...] = ()
    """Names besides loopback ones that the ``Host`` header may carry (``host.security``);
    ``PLATFORM_ALLOWED_HOSTS`` (comma-separated) adds to them, ``*`` allows any."""
    poll_interval: float | None = None
    """Seconds between the worker's catch-ups with the store in case a wake-up was missed (the
    store wakes it after every write another process makes); None: the engine's default.
    ``$PLATFORM_POLL_INTERVAL`` sets it."""
    standby: bool | None = None
    """On a store another process is the worker of: serve as its standby and take over when it
    dies (True), or fail with ``DataDirLocked`` (False); None: ``serve`` stands by, ``dev`` fails."""

    def __post_init__(self) -> None:
        self.project_dir = Path(self.project_dir).resolve()
        location = resolve_location(
            store=self.store, data=self.data_dir, default=self.project_dir / "data"
        )
        if isinstance(location, Path):
            self.data_dir, self.store = location, None
        else:
            self.data_dir, self.store = None, location
        if self.token is None:
            self.token = os.environ.get("PLATFORM_TOKEN") or None
        env_hosts = os.environ.get("PLATFORM_ALLOWED_HOSTS", "")
        self.allowed_hosts = (
            *self.allowed_hosts,
            *(name.strip() for name in env_hosts.split(",") if name.strip()),
        )
        env_body = os.environ.get("PLATFORM_MAX_BODY")
        if env_body and self.max_body == DEFAULT_MAX_BODY:
            self.max_body = int(env_body)
        env_poll = os.environ.get("PLATFORM_POLL_INTERVAL")
        if env_poll and self.poll_interval is None:
            try:
                self.poll_interval = float(env_poll)
            except ValueError:
                raise ValueError(
                    f"PLATFORM_POLL_INTERVAL must be a number of seconds, not {env_poll!r}"
                ) from None

    @property
    def location(self) -> str | Path:
        """The store's URL, or the data folder."""
        location = self.store or self.data_dir
        assert location is not None  # __post_init__ sets one of them
        return location

    @property
    def where(self) -> str:
        """The location for messages and logs (a URL without its password)."""
        return describe(self.location)

    def check(self) -> None:
        """Refuse settings that would expose the host: another address without a token."""
        if not is_loopback(self.host) and not self.token:
            raise SystemExit(
                f"refusing to listen on {self.host}: set PLATFORM_TOKEN to bind a non-loopback address"
                " (every request must then carry 'Authorization: Bearer <token>')"
            )
