"""What can go wrong between the platform and its PostgreSQL database, one class each.

Every message names the database (its URL with the password hidden) and, for a schema
mismatch, both versions, so an operator can act on the one line the CLI prints.
"""

from __future__ import annotations

from typing import Any

import orjson

from platform_shim.errors import DuplicateKey, PlatformError, StaleWrite

__all__ = [
    "BadStoreUrl",
    "DriverMissing",
    "MigrationFailed",
    "PostgresStoreError",
    "SchemaTooNew",
    "StoreUnreachable",
    "refusal",
    "session_ended",
]


class PostgresStoreError(PlatformError):
    """Base class of the PostgreSQL store's errors."""


class BadStoreUrl(PostgresStoreError, ValueError):
    """The store URL is not a ``postgresql://`` URL the driver can use."""


class DriverMissing(PostgresStoreError):
    """The optional driver is not installed (``pip install 'platform-shim[postgres]'``)."""


class StoreUnreachable(PostgresStoreError, OSError):
    """The database could not be reached or refused us (down, wrong host, password, database)."""


class SchemaTooNew(PostgresStoreError):
    """The database was migrated by a newer platform than this one: nothing is touched."""

    def __init__(self, where: str, database_version: int, known_version: int) -> None:
        super().__init__(
            f"the schema of {where} is at version {database_version}, newer than the latest"
            f" this platform knows ({known_version}): upgrade platform-shim on this host, or"
            " point it at another database"
        )
        self.database_version = database_version
        self.known_version = known_version


class MigrationFailed(PostgresStoreError):
    """A migration's SQL failed; the whole migration transaction was rolled back."""


REFUSALS = ("PD001", "PD002", "PD003")
"""The SQLSTATEs of the document rules' refusals (``docrules.py``)."""


def refusal(exc: BaseException) -> Exception | None:
    """The service's error for a commit the document rules refused, or None for any other
    failure: ``DuplicateKey`` (PD001), ``StaleWrite`` (PD002), ``ValueError`` (PD003)."""
    code = getattr(exc, "sqlstate", None)
    if code not in REFUSALS:
        return None
    try:
        detail: Any = orjson.loads(getattr(exc, "detail", None) or b"null")
    except orjson.JSONDecodeError:
        detail = None
    if not isinstance(detail, dict):
        return None
    collection = str(detail.get("collection"))
    if code == "PD001":
        return DuplicateKey(collection, str(detail.get("index")), detail.get("value"))
    if code == "PD002":
        return StaleWrite(collection, str(detail.get("id")))
    return ValueError(
        f"collection {collection!r} already has an index named {detail.get('index')!r} "
        f"with another definition: {detail.get('descriptor')}"
    )


def session_ended(exc: BaseException) -> bool:
    """Whether ``exc`` says the session is gone (closed under us, ended by the server or an
    administrator), rather than that a statement failed in a live one."""
    import asyncpg

    if isinstance(exc, asyncpg.ConnectionDoesNotExistError):
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        return "closed" in str(exc)  # "connection is closed"; others are misuse, not an end
    code = getattr(exc, "sqlstate", None)
    return isinstance(code, str) and (code.startswith("08") or code.startswith("57P"))
