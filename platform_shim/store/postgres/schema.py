"""The PostgreSQL store's schema and the runner that migrates a database to it.

Invariant: a database's schema is at exactly the version its ``schema_version`` table says, and
it only ever moves forward, whole migrations at a time. ``migrate`` takes a transaction-scoped
advisory lock before it reads the version, applies every pending migration and records each in
that same transaction, so hosts starting at once serialize on the lock: the first applies, the
others then find nothing pending. A failing migration rolls everything back (PostgreSQL's DDL is
transactional). A database whose version is newer than the code's latest is refused before
anything is touched (``SchemaTooNew`` names both versions). ``schema_status`` only reads.

Everything lives in the PostgreSQL schema ``platform``, beside whatever else the database holds.
Times are epoch milliseconds (``bigint``) from the engine's injectable clock, never ``now()``:
tests skip time with a fake clock, and every host must agree with the records it reads. JSON
values are ``jsonb``. Version 1's tables (a first cut; later migrations may revise them):

``hosts``            one row per live host: its id, start time and heartbeat; a run whose owner's
                     heartbeat is stale is taken over by another host.
``runs``             one row per workflow run: status, input/output/error, attempt, parent, the
                     host executing it (``owner``) and its timeout deadline. Partial indexes keep
                     the scans for unfinished runs and for one host's runs small.
``steps``            the ledger: one row per step of a run, keyed (run, position), unique per step
                     name, written once (a second insert of the same step is a conflict, never an
                     overwrite): that is "step results are recorded exactly once".
``signals``          events sent to waiting runs (``send_event``), in id order per type.
``timers``           every pending timer (sleep, wait timeout, invoke timeout, run timeout, retry
                     backoff) keyed by (run, kind, step); a host claims a due one by deleting it,
                     so each fires once across the cluster.
``cron_ticks``       one row per (trigger, tick): the primary key lets one host start the tick's run.
``kv``               KV entries per namespace, with an optional expiry.
``documents``        the database service's documents per collection; ``document_indexes`` the
                     indexes declared on them (each backed by a real index created later).
``objects``          storage objects: bytes inline (``bytea``) or, past a size, in a large object.
``queue_messages``   queued messages: due time, attempts, the consumer holding one (claimed with
                     ``FOR UPDATE SKIP LOCKED``) and the dead letter mark.
``handler_cursors``  per event handler, the id of the last stream event it handled, and the host
                     holding it (so a handler never runs on two hosts at once).
``events``           the platform event stream, ids from a ``bigserial``. Writers take the
                     ``EVENTS_LOCK`` advisory lock in their transaction before inserting, so ids
                     commit in increasing order and a reader paging by ``id > last`` misses none.

Version 2 holds the storage contract (``store/protocol.py``) as ``PostgresStore`` maps it; the
version 1 tables above stay unused until a service keeps its state in rows of its own:

``logs``             one row per log: its name and current generation. A commit cycle locks the
                     row (``FOR UPDATE``), so writers of one log take turns and its sequence
                     numbers commit in order; a compaction bumps the generation.
``log_lines``        the records: (log, generation, seq) -> the JSON line, as bytes.
``snapshots``        a whole snapshot per name (lines joined by newlines).
``blobs``            content-addressed bytes (sha256 hex) with the time they were last put.
``archive``          finished records by (archive, key): order, ``at``, head and body (JSON bytes);
                     ``archive_tags`` pages them by tag, highest order first.
``secrets``          random secrets shared by every host (the auth signing key), made once.
``worker``           the one worker's row (pid, host, the backend holding the worker's advisory
                     lock, its advert); it counts only while that backend holds the lock.

Version 3 (``docschema.py``) replaces version 1's unused ``documents`` and ``document_indexes``
with the document database's rows, kept by a trigger on the ``events`` log's lines.
Version 4 (``kvschema.py``) replaces version 1's unused ``kv`` with the KV store's rows
(``kv_entries``), kept the same way.
Version 5 (``docrules.py``) makes that trigger enforce the document database's rules (a unique
``_id`` and unique indexes, through ``document_keys``; an update or delete planned from a stale
read), so a host validates no document write in memory.

Size (over 400 lines, on purpose): most of it is the SQL of the migrations, which reads best
beside the runner that applies them and the table list above.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from platform_shim.store.postgres.docrules import V5, V6
from platform_shim.store.postgres.docschema import V3
from platform_shim.store.postgres.errors import MigrationFailed, SchemaTooNew
from platform_shim.store.postgres.kvschema import V4

if TYPE_CHECKING:
    import asyncpg

__all__ = [
    "EVENTS_LOCK",
    "LATEST_VERSION",
    "MIGRATIONS",
    "MIGRATION_LOCK",
    "SCHEMA",
    "Migration",
    "MigrationReport",
    "SchemaStatus",
    "check_migrations",
    "migrate",
    "schema_status",
]

SCHEMA = "platform"
MIGRATION_LOCK = 0x706C_6174_5F6D_6967
"""The advisory lock key every host takes around a migration ("plat_mig" in ASCII)."""
EVENTS_LOCK = 0x706C_6174_5F65_7673
"""The advisory lock key a transaction takes before inserting into ``events`` ("plat_evs")."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema's history; ``sql`` runs inside the migration's transaction."""

    version: int
    description: str
    sql: str


_V1 = """
CREATE TABLE platform.hosts (
    host_id      text PRIMARY KEY,
    started_at   bigint NOT NULL,
    heartbeat_at bigint NOT NULL,
    info         jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE platform.runs (
    run_id        text PRIMARY KEY,
    workflow_id   text NOT NULL,
    status        text NOT NULL CHECK (status IN ('queued', 'running', 'sleeping',
                      'waiting_event', 'completed', 'failed', 'cancelled')),
    input         jsonb,
    output        jsonb,
    error         jsonb,
    attempt       integer NOT NULL DEFAULT 1,
    parent_run_id text REFERENCES platform.runs (run_id) ON DELETE SET NULL,
    owner         text,
    deadline_at   bigint,
    created_at    bigint NOT NULL,
    updated_at    bigint NOT NULL,
    completed_at  bigint
);
CREATE INDEX runs_by_workflow ON platform.runs (workflow_id, created_at DESC, run_id DESC);
CREATE INDEX runs_by_created ON platform.runs (created_at DESC, run_id DESC);
CREATE INDEX runs_unfinished ON platform.runs (status)
    WHERE status NOT IN ('completed', 'failed', 'cancelled');
CREATE INDEX runs_by_owner ON platform.runs (owner)
    WHERE status NOT IN ('completed', 'failed', 'cancelled');
CREATE INDEX runs_by_parent ON platform.runs (parent_run_id) WHERE parent_run_id IS NOT NULL;

CREATE TABLE platform.steps (
    run_id       text NOT NULL REFERENCES platform.runs (run_id) ON DELETE CASCADE,
    position     integer NOT NULL CHECK (position >= 0),
    name         text NOT NULL,
    kind         text NOT NULL CHECK (kind IN ('run', 'sleep', 'wait_event', 'invoke')),
    status       text NOT NULL CHECK (status IN ('pending', 'completed', 'failed')),
    attempt      integer NOT NULL DEFAULT 1,
    output       jsonb,
    error        jsonb,
    started_at   bigint NOT NULL,
    completed_at bigint,
    wake_at      bigint,
    event_type   text,
    match        jsonb,
    timeout_at   bigint,
    child_run_id text,
    PRIMARY KEY (run_id, position),
    UNIQUE (run_id, name)
);

CREATE TABLE platform.signals (
    id         bigserial PRIMARY KEY,
    event_type text NOT NULL,
    payload    jsonb,
    sent_at    bigint NOT NULL
);
CREATE INDEX signals_by_type ON platform.signals (event_type, id);

CREATE TABLE platform.timers (
    run_id  text NOT NULL REFERENCES platform.runs (run_id) ON DELETE CASCADE,
    kind    text NOT NULL CHECK (kind IN ('sleep', 'wait_timeout', 'invoke_timeout',
                'run_timeout', 'retry')),
    step    text NOT NULL DEFAULT '',
    fire_at bigint NOT NULL,
    PRIMARY KEY (run_id, kind, step)
);
CREATE INDEX timers_due ON platform.timers (fire_at);

CREATE TABLE platform.cron_ticks (
    trigger_id text NOT NULL,
    tick_at    bigint NOT NULL,
    run_id     text,
    PRIMARY KEY (trigger_id, tick_at)
);

CREATE TABLE platform.kv (
    ns         text NOT NULL,
    key        text NOT NULL,
    value      jsonb NOT NULL,
    expires_at bigint,
    updated_at bigint NOT NULL,
    PRIMARY KEY (ns, key)
);
CREATE INDEX kv_expiring ON platform.kv (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE platform.documents (
    collection text NOT NULL,
    id         text NOT NULL,
    doc        jsonb NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (collection, id)
);

CREATE TABLE platform.document_indexes (
    collection text NOT NULL,
    name       text NOT NULL,
    spec       jsonb NOT NULL,
    is_unique  boolean NOT NULL DEFAULT false,
    PRIMARY KEY (collection, name)
);

CREATE TABLE platform.objects (
    key          text PRIMARY KEY,
    content_type text,
    size         bigint NOT NULL CHECK (size >= 0),
    sha256       text NOT NULL,
    metadata     jsonb NOT NULL DEFAULT '{}',
    data         bytea,
    large_object oid,
    created_at   bigint NOT NULL,
    updated_at   bigint NOT NULL,
    CHECK ((data IS NULL) <> (large_object IS NULL))
);

CREATE TABLE platform.queue_messages (
    id            text PRIMARY KEY,
    queue         text NOT NULL,
    payload       jsonb,
    enqueued_at   bigint NOT NULL,
    deliver_at    bigint NOT NULL,
    attempts      integer NOT NULL DEFAULT 0,
    claimed_by    text,
    claimed_until bigint,
    last_error    jsonb,
    dead_at       bigint
);
CREATE INDEX queue_due ON platform.queue_messages (queue, deliver_at, id) WHERE dead_at IS NULL;
CREATE INDEX queue_dead ON platform.queue_messages (queue, dead_at) WHERE dead_at IS NOT NULL;

CREATE TABLE platform.handler_cursors (
    handler_id    text PRIMARY KEY,
    last_event_id bigint NOT NULL DEFAULT 0,
    held_by       text,
    held_until    bigint,
    updated_at    bigint NOT NULL
);

CREATE TABLE platform.events (
    id       bigserial PRIMARY KEY,
    type     text NOT NULL,
    resource text NOT NULL,
    ns       text,
    key      text,
    data     jsonb,
    ts       bigint NOT NULL
);
CREATE INDEX events_by_resource ON platform.events (resource, ns, id);
"""

_V2 = """
CREATE TABLE platform.logs (
    name       text PRIMARY KEY,
    generation integer NOT NULL DEFAULT 1
);

CREATE TABLE platform.log_lines (
    log        text NOT NULL,
    generation integer NOT NULL,
    seq        bigint NOT NULL,
    line       bytea NOT NULL,
    PRIMARY KEY (log, generation, seq)
);

-- A commit cycle's first round trip: wait for the log's advisory lock (session-level: held
-- until the cycle's last statement releases it, after its COMMIT), then, in a statement of its
-- own (so its snapshot sees the previous holder's commit), the lines past p_after; every line
-- when p_generation is not the current one. One row with a NULL seq when there is none.
CREATE FUNCTION platform.log_enter(p_log text, p_key bigint, p_after bigint, p_generation integer)
RETURNS TABLE (g integer, s bigint, l bytea) LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    current integer;
BEGIN
    PERFORM pg_advisory_lock(p_key);
    SELECT lg.generation INTO current FROM platform.logs lg WHERE lg.name = p_log;
    IF current IS DISTINCT FROM p_generation THEN
        p_after := 0;
    END IF;
    RETURN QUERY SELECT current, ll.seq, ll.line FROM platform.log_lines ll
        WHERE ll.log = p_log AND ll.generation = current AND ll.seq > p_after ORDER BY ll.seq;
    IF NOT FOUND THEN
        RETURN QUERY SELECT current, NULL::bigint, NULL::bytea;
    END IF;
END $$;

CREATE TABLE platform.snapshots (
    name  text PRIMARY KEY,
    lines bytea NOT NULL
);

CREATE TABLE platform.blobs (
    digest     text PRIMARY KEY CHECK (digest ~ '^[0-9a-f]{64}$'),
    data       bytea NOT NULL,
    touched_at double precision NOT NULL
);

CREATE TABLE platform.archive (
    archive text NOT NULL,
    key     text NOT NULL,
    ord     bigint NOT NULL,
    at      bigint NOT NULL,
    head    bytea NOT NULL,
    body    bytea NOT NULL,
    PRIMARY KEY (archive, key)
);
CREATE INDEX archive_by_at ON platform.archive (archive, at);

CREATE TABLE platform.archive_tags (
    archive text NOT NULL,
    tag     text NOT NULL,
    ord     bigint NOT NULL,
    key     text NOT NULL,
    PRIMARY KEY (archive, tag, ord, key)
);
CREATE INDEX archive_tags_by_key ON platform.archive_tags (archive, key);

CREATE TABLE platform.secrets (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE platform.worker (
    id          integer PRIMARY KEY CHECK (id = 1),
    pid         integer NOT NULL,
    hostname    text NOT NULL,
    backend_pid integer NOT NULL,
    advert      bytea
);
"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "hosts, runs, steps, signals, timers, cron ticks, kv, documents, objects, queue,"
        " handler cursors, events",
        _V1,
    ),
    Migration(2, "the store contract: logs, snapshots, blobs, archive, worker", _V2),
    Migration(3, "documents and their indexes as rows, kept by a trigger on the events log", V3),
    Migration(4, "KV entries as rows, kept by a trigger on the events log", V4),
    Migration(5, "document writes checked by the database: ids, unique keys, stale plans", V5),
    Migration(6, "unique keys checked when a commit ends, not after each document", V6),
)


def check_migrations(migrations: tuple[Migration, ...]) -> int:
    """The latest version of ``migrations``, which must be numbered 1, 2, 3... in order."""
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise ValueError(
                f"migration {migration.description!r} has version {migration.version};"
                f" expected {expected} (versions are 1, 2, 3... in order)"
            )
    return len(migrations)


LATEST_VERSION = check_migrations(MIGRATIONS)


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Where a database stands: its version (0: never migrated) against the code's latest."""

    current: int
    latest: int
    pending: tuple[Migration, ...]

    @property
    def too_new(self) -> bool:
        return self.current > self.latest

    def to_dict(self) -> dict[str, Any]:
        return {
            "current": self.current,
            "latest": self.latest,
            "pending": [{"version": m.version, "description": m.description} for m in self.pending],
        }


@dataclass(frozen=True, slots=True)
class MigrationReport:
    """What ``migrate`` did: the version before and after, and the migrations it applied."""

    before: int
    after: int
    applied: tuple[Migration, ...]


_BOOTSTRAP = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_version (
    version     integer PRIMARY KEY CHECK (version > 0),
    description text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);
"""


async def _current_version(conn: asyncpg.Connection) -> int:
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{SCHEMA}.schema_version")
    if not exists:
        return 0
    version = await conn.fetchval(f"SELECT max(version) FROM {SCHEMA}.schema_version")
    return int(version or 0)


async def schema_status(
    conn: asyncpg.Connection, migrations: tuple[Migration, ...] = MIGRATIONS
) -> SchemaStatus:
    """The database's version against ``migrations``; reads only, takes no lock."""
    latest = check_migrations(migrations)
    current = await _current_version(conn)
    return SchemaStatus(current, latest, migrations[current:])


async def migrate(
    conn: asyncpg.Connection,
    migrations: tuple[Migration, ...] = MIGRATIONS,
    *,
    where: str = "the database",
) -> MigrationReport:
    """Bring the database to the latest version of ``migrations`` in one transaction.

    Safe to call from many hosts at once and any number of times (see the module docstring).
    Raises ``SchemaTooNew`` (``where`` names the database in its message) or ``MigrationFailed``.
    """
    latest = check_migrations(migrations)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        before = await _current_version(conn)
        if before > latest:
            raise SchemaTooNew(where, before, latest)
        pending = migrations[before:]
        if not pending:
            return MigrationReport(before, before, ())
        await conn.execute(_BOOTSTRAP)
        for migration in pending:
            await _apply(conn, migration)
    return MigrationReport(before, latest, pending)


async def _apply(conn: asyncpg.Connection, migration: Migration) -> None:
    import asyncpg

    try:
        await conn.execute(migration.sql)
    except asyncpg.PostgresError as exc:
        raise MigrationFailed(
            f"migration {migration.version} ({migration.description}) failed and was rolled"
            f" back: {exc}"
        ) from exc
    await conn.execute(
        f"INSERT INTO {SCHEMA}.schema_version (version, description) VALUES ($1, $2)",
        migration.version,
        migration.description,
    )
