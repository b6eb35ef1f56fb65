"""``python -m host store init|status [URL]``: an operator's view of a PostgreSQL store's schema.

``init`` applies the pending migrations (safe while hosts start on the same database: they
serialize on the migration lock) and prints the version; ``status`` only reads. The URL is the
argument, else ``--store`` (the flag every command takes, before or after the subcommand), else
``$PLATFORM_STORE``; ``--data`` names a folder, which has no schema, and is refused. Errors are one line on stderr after ``error: ``, never a
traceback: 2 for a URL that is not a PostgreSQL URL, 1 for a database that cannot be reached,
refuses us, or carries a schema newer than this platform knows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from typing import Any

import orjson

from host.commands import USAGE, CliError

__all__ = ["STORE_VARIABLE", "add_parser", "run"]

STORE_VARIABLE = "PLATFORM_STORE"


def add_parser(
    sub: argparse._SubParsersAction[Any], options: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Add ``store`` and its subcommands to the CLI's subparsers; ``options`` adds the options
    every command takes (``--store``, ``--data``) to each subcommand."""
    p = sub.add_parser(
        "store",
        help="create or inspect a PostgreSQL store's schema",
        description="create or inspect the schema of a PostgreSQL store (several hosts on one"
        f" database). URL: postgresql://USER:PASSWORD@HOST:PORT/DATABASE, else ${STORE_VARIABLE}.",
    )
    store = p.add_subparsers(dest="store_command", required=True, metavar="SUBCOMMAND")
    url_help = f"postgresql://USER:PASSWORD@HOST:PORT/DATABASE (default: ${STORE_VARIABLE})"
    q = store.add_parser(
        "init",
        help="apply the pending migrations and print the schema version",
        description="apply the pending schema migrations (idempotent; safe while hosts start)"
        " and print the schema version",
    )
    q.add_argument("url", nargs="?", help=url_help)
    options(q)
    q = store.add_parser(
        "status",
        help="the schema version, the latest known and the pending migrations",
        description="print the database's schema version, the latest this platform knows and"
        " the migrations init would apply (reads only)",
    )
    q.add_argument("url", nargs="?", help=url_help)
    q.add_argument("--json", action="store_true", help="print JSON")
    options(q)


def run(args: argparse.Namespace) -> int:
    """Run ``store init`` or ``store status``; returns the exit code."""
    from platform_shim.store.postgres import BadStoreUrl, PostgresStoreError

    try:
        url = _url(args)
        if not url:
            raise CliError(f"no store URL: pass one or set ${STORE_VARIABLE}", USAGE)
        if args.store_command == "init":
            return asyncio.run(_init(url))
        return asyncio.run(_status(url, as_json=args.json))
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except BadStoreUrl as exc:
        return _fail(str(exc), USAGE)
    except PostgresStoreError as exc:
        return _fail(str(exc))


def _url(args: argparse.Namespace) -> str:
    from platform_shim.store.postgres import redact

    given, flag = args.url, getattr(args, "store", None)
    if getattr(args, "data", None) is not None:
        raise CliError("store init|status act on a PostgreSQL store; --data names a folder", USAGE)
    if given and flag and given != flag:
        raise CliError(f"two store URLs: {redact(given)} and --store {redact(flag)}", USAGE)
    return str(given or flag or os.environ.get(STORE_VARIABLE, ""))


def _fail(message: str, code: int = 1) -> int:
    sys.stderr.write(f"error: {message}\n")
    return code


async def _init(url: str) -> int:
    from platform_shim.store.postgres import connect, migrate, redact

    conn = await connect(url)
    try:
        report = await migrate(conn, where=redact(url))
    finally:
        await conn.close()
    if report.applied:
        versions = ", ".join(str(m.version) for m in report.applied)
        done = f"migrated from {report.before}; applied {versions}"
    else:
        done = "up to date"
    sys.stdout.write(f"schema version {report.after} ({done})\n")
    return 0


async def _status(url: str, *, as_json: bool) -> int:
    from platform_shim.store.postgres import SchemaTooNew, connect, redact, schema_status

    conn = await connect(url)
    try:
        status = await schema_status(conn)
    finally:
        await conn.close()
    if as_json:
        out = {"database": redact(url), **status.to_dict()}
        sys.stdout.write(orjson.dumps(out, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(f"database:       {redact(url)}\n")
        sys.stdout.write(f"schema version: {status.current}\n")
        sys.stdout.write(f"latest known:   {status.latest}\n")
        if status.pending:
            sys.stdout.write(f"pending:        {len(status.pending)} migration(s)\n")
            for migration in status.pending:
                sys.stdout.write(f"  {migration.version:>4}  {migration.description}\n")
        else:
            sys.stdout.write("pending:        none\n")
    if status.too_new:
        raise SchemaTooNew(redact(url), status.current, status.latest)
    return 0
