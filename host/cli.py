"""``python -m host`` (also ``platform-host``): serve the project, build it, work on its data.

One rule places the folders, stated once in ``--help`` and the README: the project folder is the
PROJECT argument of ``dev``, ``serve`` and ``build``, else the current folder; the state lives
at ``--store LOCATION`` or ``--data DIR`` (one or the other), else ``$PLATFORM_STORE``, else
``$PLATFORM_DATA_DIR``, else ``PROJECT/data`` (``platform_shim.locations``: the command line
beats the environment). A LOCATION is a URL (``postgresql://…``, ``memory:``) or a folder.
Nothing is created by a typo: a missing project folder is an error, a missing data folder is an
error for every command except ``dev`` and ``serve`` (which create it) and the writes given
``--create``, and a LOCATION that looks like a URL but is no usable one is a usage error.
A URL's password is never printed: messages show it as ``***``.

Errors are one line on stderr after ``error: ``; exit codes mean the same everywhere: 0 done,
1 not found or failed, 2 a wrong command line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import textwrap
from collections.abc import Awaitable, Callable, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from host import commands, store_commands
from host.commands import USAGE, CliError
from host.config import DEFAULT_MAX_BODY, HostConfig

if TYPE_CHECKING:
    from platform_shim.platform import Platform

__all__ = ["main"]

FOLDER_RULE = (
    "Folders: the project folder is the PROJECT argument of dev, serve and build, else the"
    " current folder; the data folder is --data DIR, else $PLATFORM_DATA_DIR, else PROJECT/data."
    " dev and serve create the data folder; the other commands need it to exist (the writes"
    " start, send-event and kv put create it with --create)."
)
STORE_RULE = (
    "Stores: --store LOCATION puts the state elsewhere: a PostgreSQL database"
    " (postgresql://USER:PASSWORD@HOST:PORT/DATABASE, for several hosts on one app), memory:"
    " (in the host's memory, gone when it stops; not for the data commands) or a folder."
    " Give --store or --data, not both; either beats the environment, where $PLATFORM_STORE"
    " beats $PLATFORM_DATA_DIR."
)
EXIT_CODES = "Exit codes: 0 done, 1 not found or failed, 2 a wrong command line."


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's one error prefix."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(USAGE, f"error: {message}\n")


def _fail(message: str, code: int = 1) -> int:
    sys.stderr.write(f"error: {message}\n")
    return code


def _project(args: argparse.Namespace) -> Path:
    project = Path(getattr(args, "project", ".")).absolute()
    if not project.is_dir():
        what = "is not a folder" if project.exists() else "does not exist"
        raise CliError(f"project folder {project} {what}")
    return project


def _location(args: argparse.Namespace, project: Path) -> str | Path:
    """Where the state lives (the module docstring's rule); a bad URL is a usage error."""
    from platform_shim.locations import resolve_location
    from platform_shim.store.postgres import BadStoreUrl

    try:
        return resolve_location(store=args.store, data=args.data or None, default=project / "data")
    except BadStoreUrl as exc:
        raise CliError(str(exc), USAGE) from None


def _existing_location(args: argparse.Namespace) -> str | Path:
    """The data commands' location: a URL, or a folder that exists (or ``--create``)."""
    from platform_shim.store import MEMORY_SCHEME

    location = _location(args, Path.cwd())
    if isinstance(location, str):
        if location.startswith(MEMORY_SCHEME):
            raise CliError(
                f"{location!r} lives in the memory of the process that opens it: this command"
                " would see an empty store (give a URL or a folder)",
                USAGE,
            )
        return location
    if location.is_dir() or getattr(args, "create", False):
        return location
    if location.exists():
        raise CliError(f"the data folder {location} is not a folder")
    hint = " (or pass --create)" if hasattr(args, "create") else ""
    raise CliError(
        f"no data folder at {location}: run this inside a project whose host has run, or point"
        f" --data or --store (or $PLATFORM_DATA_DIR, $PLATFORM_STORE) at one{hint}"
    )


# ------------------------------------------------------------------------------- commands


def cmd_serve(args: argparse.Namespace, dev: bool) -> int:
    from host.loader import LoadError
    from host.project_config import ProjectConfigError
    from host.server import StartupError, run_server
    from platform_shim.errors import DataDirLocked, DefinitionError, PlatformError
    from platform_shim.locations import scrub
    from platform_shim.store.postgres import BadStoreUrl

    project = _project(args)
    location = _location(args, project)

    def fail(message: str, code: int = 1) -> int:
        # The store's own errors may quote its URL whole: never its password.
        return _fail(scrub(message, location), code)

    config = HostConfig(
        project_dir=project,
        data_dir=location if isinstance(location, Path) else None,
        store=location if isinstance(location, str) else None,
        host=args.host,
        port=args.port,
        dev=dev,
        quiet=args.quiet,
        max_body=args.max_body,
        durability=args.durability,
        standby=args.standby,
    )
    try:
        config.check()
    except SystemExit as exc:  # another address without a token: refused, one line
        return fail(str(exc.code))
    try:
        asyncio.run(run_server(config))
    except DataDirLocked as exc:
        # Named, so that a person or a script can tell "another host has it" from other errors.
        return fail(f"DataDirLocked: {exc}")
    except (StartupError, LoadError, DefinitionError, ProjectConfigError) as exc:
        return fail(str(exc))
    except BadStoreUrl as exc:  # the URL passed our check but not the store's
        return fail(str(exc), USAGE)
    except PlatformError as exc:  # the store refused to open: unreachable, a newer schema
        return fail(str(exc))
    except KeyboardInterrupt:
        return 0
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from host.build import write_manifest
    from host.loader import LoadError
    from platform_shim.errors import DefinitionError

    try:
        path, manifest = write_manifest(_project(args))
    except (LoadError, DefinitionError) as exc:
        return _fail(f"build failed: {exc}")
    count = len(manifest["workflows"])
    sys.stdout.write(f"✅ Workflows build completed: {count} workflow(s)\n")
    sys.stdout.write(f"   {len(manifest['events'])} event handler(s); manifest: {path}\n")
    return 0


DataCommand = Callable[["Platform", argparse.Namespace], Awaitable[None]]


async def _on_client(command: DataCommand, location: str | Path, args: argparse.Namespace) -> None:
    from platform_shim.platform import open_client

    platform = open_client(store=location)
    try:
        await command(platform, args)
    finally:
        platform.close()


def _run_data_command(args: argparse.Namespace) -> int:
    from platform_shim.errors import PlatformError
    from platform_shim.locations import scrub

    try:
        location = _existing_location(args)
    except CliError as exc:
        return _fail(str(exc), exc.code)

    def fail(message: str, code: int = 1) -> int:
        # The store's own errors may quote its URL whole: never its password.
        return _fail(scrub(message, location), code)

    try:
        if args.command == "compact":
            asyncio.run(commands.compact(location, args))
        else:
            handler: DataCommand = {
                "runs": commands.runs,
                "start": commands.start,
                "send-event": commands.send_event,
                "kv": commands.kv,
                "schedules": commands.schedules,
            }[args.command]
            asyncio.run(_on_client(handler, location, args))
    except CliError as exc:
        return fail(str(exc), exc.code)
    except (LookupError, PlatformError, OSError) as exc:
        # Not found (an unknown workflow or run) or failed (a locked or unwritable folder, an
        # unreachable database).
        return fail(str(exc))
    except (ValueError, TypeError) as exc:
        # A value the command line gave that the platform refuses (a bad key, a bad duration).
        return fail(str(exc), USAGE)
    return 0


# --------------------------------------------------------------------------------- parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _version() -> str:
    try:
        return version("platform-shim")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _data_option(p: argparse.ArgumentParser, *, top: bool = False) -> None:
    # On the top parser and on every subcommand: --data and --store go before or after the
    # subcommand. A subcommand's default is "not given", so it never hides one given before it
    # (main refuses --data and --store given on either side of the subcommand).
    given = p.add_mutually_exclusive_group()
    given.add_argument(
        "--data",
        metavar="DIR",
        default=None if top else argparse.SUPPRESS,
        help="the data folder (default: $PLATFORM_STORE, else $PLATFORM_DATA_DIR, else"
        " PROJECT/data; see --help)",
    )
    given.add_argument(
        "--store",
        metavar="LOCATION",
        default=None if top else argparse.SUPPRESS,
        help="where the state lives instead: postgresql://USER:PASSWORD@HOST:PORT/DATABASE,"
        " memory: or a folder (default: $PLATFORM_STORE; see --help)",
    )


def _create_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--create", action="store_true", help="create the data folder if it does not exist"
    )


def _parser(prog: str = "python -m host") -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description="A local serverless-style function host for Python with durable workflows.",
        epilog=f"{textwrap.fill(FOLDER_RULE, 79)}\n\n{textwrap.fill(STORE_RULE, 79)}\n\n"
        f"{EXIT_CODES}\nEvery command has --help.",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the epilog is wrapped by hand
    )
    parser.add_argument("--version", action="version", version=f"{prog} {_version()}")
    _data_option(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")

    for name, help_text in (
        ("dev", "serve with hot reload of workflows/, events/, routes/"),
        ("serve", "serve (no reload)"),
    ):
        p = sub.add_parser(
            name, help=help_text, description=f"{help_text}. {FOLDER_RULE} {STORE_RULE}"
        )
        p.add_argument("project", nargs="?", default=".", help="project folder (default: .)")
        p.add_argument(
            "--host",
            default="127.0.0.1",
            help="address to bind (default: 127.0.0.1; others need PLATFORM_TOKEN)",
        )
        p.add_argument("--port", type=int, default=3001, help="port (default: 3001; 0: any free)")
        _data_option(p)
        p.add_argument("--quiet", action="store_true", help="no log line per HTTP request")
        p.add_argument(
            "--max-body",
            type=int,
            default=DEFAULT_MAX_BODY,
            help=f"largest request body in bytes (default: {DEFAULT_MAX_BODY})",
        )
        p.add_argument(
            "--durability",
            choices=("fsync", "flush"),
            default="fsync",
            help="fsync before acknowledging (default) or flush to the OS only",
        )
        p.add_argument(
            "--standby",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="when another host is the data folder's worker: serve as its standby and take"
            " over when it dies, or (--no-standby) fail (default: serve stands by, dev fails)",
        )

    p = sub.add_parser(
        "build",
        help="validate and write build/manifest.json",
        description="validate and write PROJECT/build/manifest.json",
    )
    p.add_argument("project", nargs="?", default=".", help="project folder (default: .)")

    p = sub.add_parser(
        "runs",
        help="list, show, cancel or rerun runs",
        description="list, show, cancel or rerun runs",
    )
    runs = p.add_subparsers(dest="runs_command", required=True, metavar="SUBCOMMAND")
    q = runs.add_parser("list", help="runs, newest first", description="runs, newest first")
    q.add_argument("--workflow", help="only this workflow id")
    q.add_argument("--status", help="only this status")
    q.add_argument("--limit", type=_positive, default=50, help="at most this many (default: 50)")
    q.add_argument(
        "--before", metavar="RUN_ID", help="only runs older than this one (the next page)"
    )
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _data_option(q)
    q = runs.add_parser("show", help="a run and its step timeline")
    q.add_argument("run_id", help="the run's id")
    q.add_argument("--json", action="store_true", help="print JSON")
    _data_option(q)
    q = runs.add_parser("cancel", help="cancel a run")
    q.add_argument("run_id", help="the run's id")
    _data_option(q)
    q = runs.add_parser(
        "rerun",
        help="a new run that replays the steps before STEP and runs STEP and the rest again",
        description="Start a new run of RUN_ID's workflow with the same input. The steps RUN_ID"
        " completed before STEP are not run again: their recorded results are replayed. Prints"
        " the new run's id.",
    )
    q.add_argument("run_id", help="the run to start again")
    q.add_argument(
        "--from",
        dest="from_step",
        required=True,
        metavar="STEP",
        help="the first step to run again",
    )
    _data_option(q)

    p = sub.add_parser(
        "start", help="start a workflow run", description="start a workflow run; prints its run id"
    )
    p.add_argument("workflow_id", help="the workflow's id")
    p.add_argument("input", nargs="?", help="input as JSON")
    p.add_argument("--run-id", help="a run id of your choosing (makes the start idempotent)")
    _data_option(p)
    _create_option(p)

    p = sub.add_parser(
        "send-event",
        help="send an event to waiting runs",
        description="send an event to waiting runs",
    )
    p.add_argument("type", help="the event type runs wait for")
    p.add_argument("payload", nargs="?", help="payload as JSON")
    _data_option(p)
    _create_option(p)

    p = sub.add_parser("kv", help="read and write KV", description="read and write KV")
    kv = p.add_subparsers(dest="kv_command", required=True, metavar="SUBCOMMAND")
    q = kv.add_parser("get", help="print a value (exit 1 if the key is missing)")
    q.add_argument("ns", help="the namespace")
    q.add_argument("key", help="the key")
    _data_option(q)
    q = kv.add_parser("put", help="store a JSON value")
    q.add_argument("ns", help="the namespace")
    q.add_argument("key", help="the key")
    q.add_argument("value", help="the value as JSON")
    q.add_argument("--ttl", type=float, help="seconds until it expires")
    _data_option(q)
    _create_option(q)
    q = kv.add_parser("list", help="list keys")
    q.add_argument("ns", help="the namespace")
    q.add_argument("--prefix", help="only keys starting with this")
    q.add_argument(
        "--limit", type=_positive, default=1000, help="at most this many (default: 1000)"
    )
    q.add_argument("--cursor", help="where the last page ended")
    _data_option(q)

    p = sub.add_parser(
        "schedules",
        help="cron triggers and their last ticks",
        description="cron triggers and their last ticks",
    )
    _data_option(p)
    p = sub.add_parser(
        "compact",
        help="compact the data folder now",
        description="compact the data folder now (asks a running host to do it)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _data_option(p)
    store_commands.add_parser(sub, _data_option)
    return parser


def _prog() -> str:
    name = Path(sys.argv[0]).name
    return name if name.startswith("platform-host") else "python -m host"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser(_prog())
    args = parser.parse_args(argv)
    if args.data is not None and args.store is not None:
        # One on each side of the subcommand (one parser refuses both on its own side).
        parser.error("argument --store: not allowed with argument --data")
    if args.command is None:
        parser.print_help()
        return 0
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    try:
        if args.command in ("dev", "serve"):
            return cmd_serve(args, dev=args.command == "dev")
        if args.command == "build":
            return cmd_build(args)
        if args.command == "store":
            return store_commands.run(args)
    except CliError as exc:
        return _fail(str(exc), exc.code)
    return _run_data_command(args)
