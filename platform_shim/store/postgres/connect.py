"""Opening a connection to the store's database, with errors a person can act on.

The URL is checked before the driver sees it (``postgresql://`` or ``postgres://``, a database
name), and every failure to connect becomes ``StoreUnreachable`` naming the URL with its
password hidden: nothing here prints a traceback or a password. The driver, asyncpg, is an
optional extra and is imported only when a connection is opened.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit, urlunsplit

from platform_shim.store.postgres.errors import BadStoreUrl, DriverMissing, StoreUnreachable

if TYPE_CHECKING:
    import asyncpg

__all__ = ["CONNECT_TIMEOUT", "check_url", "connect", "redact"]

CONNECT_TIMEOUT = 10.0
"""Seconds to wait for the server to accept a connection before calling it unreachable."""
SCHEMES = ("postgresql", "postgres")


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)
        user = netloc[0].split(":", 1)[0]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))
    except ValueError:
        return "<unparsable URL>"


def check_url(url: str) -> SplitResult:
    """Parse a store URL, or raise ``BadStoreUrl`` saying what is wrong with it."""
    if not url or not isinstance(url, str):
        raise BadStoreUrl("the store URL is empty: expected postgresql://user@host:port/database")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (parsing the port raises ValueError for a bad one)
    except ValueError as exc:
        raise BadStoreUrl(f"bad store URL {redact(url)!r}: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise BadStoreUrl(
            f"bad store URL {redact(url)!r}: the scheme must be postgresql://, not"
            f" {parts.scheme + '://' if parts.scheme else 'missing'}"
        )
    if not parts.path.strip("/"):
        raise BadStoreUrl(f"bad store URL {redact(url)!r}: it names no database (…/DATABASE)")
    return parts


async def connect(url: str, *, timeout: float = CONNECT_TIMEOUT) -> asyncpg.Connection:
    """One connection to the database at ``url``; ``BadStoreUrl`` or ``StoreUnreachable``."""
    check_url(url)
    try:
        import asyncpg
    except ImportError:
        raise DriverMissing(
            "the PostgreSQL store needs asyncpg: pip install 'platform-shim[postgres]'"
        ) from None
    where = redact(url)
    try:
        return await asyncpg.connect(url, timeout=timeout)
    except TimeoutError:
        raise StoreUnreachable(f"{where} did not answer within {timeout:g} s") from None
    except socket.gaierror as exc:
        raise StoreUnreachable(f"cannot resolve the host of {where}: {exc.strerror}") from None
    except OSError as exc:
        # asyncpg's strerror is "Connect call failed (...)"; the errno says why.
        reason = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
        raise StoreUnreachable(f"cannot connect to {where}: {reason}") from None
    except asyncpg.PostgresError as exc:  # refused by the server: password, database, role
        raise StoreUnreachable(f"{where} refused the connection: {exc}") from None
    except (asyncpg.InterfaceError, ValueError) as exc:  # the driver's own URL parsing
        raise BadStoreUrl(f"bad store URL {where!r}: {exc}") from None
