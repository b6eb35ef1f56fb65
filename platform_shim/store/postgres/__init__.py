"""The PostgreSQL store's groundwork: connecting with clear errors, and the versioned schema.

Several hosts serving one app share one PostgreSQL database (issue 14). This package holds what
does not depend on the storage contract: ``connect`` (``connect.py``), the schema and its
migration runner (``schema.py``), and their errors (``errors.py``). The store itself comes later.
The driver, asyncpg, is the optional extra ``platform-shim[postgres]``; importing this package
does not need it, opening a connection does (``DriverMissing`` says how to install it).
"""

from platform_shim.store.postgres.connect import check_url, connect, redact
from platform_shim.store.postgres.errors import (
    BadStoreUrl,
    DriverMissing,
    MigrationFailed,
    PostgresStoreError,
    SchemaTooNew,
    StoreUnreachable,
)
from platform_shim.store.postgres.schema import (
    LATEST_VERSION,
    MIGRATIONS,
    SCHEMA,
    Migration,
    MigrationReport,
    SchemaStatus,
    migrate,
    schema_status,
)

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "SCHEMA",
    "BadStoreUrl",
    "DriverMissing",
    "Migration",
    "MigrationFailed",
    "MigrationReport",
    "PostgresStoreError",
    "SchemaStatus",
    "SchemaTooNew",
    "StoreUnreachable",
    "check_url",
    "connect",
    "migrate",
    "redact",
    "schema_status",
]
