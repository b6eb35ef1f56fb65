"""``python -m host``: serve the project, build it, and work on its data folder.

The data commands (``runs``, ``start``, ``send-event``, ``kv``, ``schedules``, ``compact``) open
the data folder as a client, so they work whether or not a host is running on it: a running
host picks their writes up within a second.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from host.config import DEFAULT_MAX_BODY, HostConfig
from host.progress import Progress

if TYPE_CHECKING:
    from platform_shim.workflows.records import WorkflowRun
    from platform_shim.workflows.service import WorkflowsService

__all__ = ["main"]


def _data_dir(args: argparse.Namespace) -> Path:
    if args.data:
        return Path(args.data)
    return Path(os.environ.get("PLATFORM_DATA_DIR", "data"))


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise SystemExit(f"{what} is not valid JSON: {exc}") from None


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


# ------------------------------------------------------------------------------- commands


def cmd_serve(args: argparse.Namespace, dev: bool) -> int:
    from host.loader import LoadError
    from host.server import run_server
    from platform_shim.errors import DataDirLocked, DefinitionError

    config = HostConfig(
        project_dir=Path(args.project),
        data_dir=Path(args.data) if args.data else None,
        host=args.host,
        port=args.port,
        dev=dev,
        max_body=args.max_body,
        durability=args.durability,
    )
    try:
        asyncio.run(run_server(config))
    except DataDirLocked as exc:
        # Named, so that a person or a script can tell "another host has it" from other errors.
        logging.getLogger("host").error("DataDirLocked: %s", exc)
        return 1
    except (LoadError, DefinitionError) as exc:
        logging.getLogger("host").error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from host.build import write_manifest
    from host.loader import LoadError
    from platform_shim.errors import DefinitionError

    try:
        path, manifest = write_manifest(Path(args.project).resolve())
    except (LoadError, DefinitionError) as exc:
        sys.stderr.write(f"❌ build failed: {exc}\n")
        return 1
    count = len(manifest["workflows"])
    sys.stdout.write(f"✅ Workflows build completed: {count} workflow(s)\n")
    sys.stdout.write(f"   {len(manifest['events'])} event handler(s); manifest: {path}\n")
    return 0


_LIST_CHUNK = 5000


async def _list_runs(workflows: WorkflowsService, args: argparse.Namespace) -> list[WorkflowRun]:
    """Up to ``--limit`` runs from ``--before`` on, a page at a time (a bar shows progress)."""
    if args.before is not None and await workflows.handle(args.before).status() is None:
        raise LookupError(f"--before names no run: {args.before!r}")
    counts = await workflows.counts()
    expected = counts.get(args.status, 0) if args.status else sum(counts.values())
    runs: list[WorkflowRun] = []
    before = args.before
    with Progress("listing runs", min(args.limit, expected)) as bar:
        while len(runs) < args.limit:
            chunk = min(_LIST_CHUNK, args.limit - len(runs))
            page = await workflows.list(
                workflow_id=args.workflow, status=args.status, limit=chunk, before=before
            )
            runs += page
            bar.advance(len(page))
            if len(page) < chunk:
                break
            before = page[-1].run_id
    return runs


async def _runs(args: argparse.Namespace) -> int:
    from platform_shim.platform import open_client

    platform = open_client(_data_dir(args))
    try:
        with Progress("reading the run ledger"):
            workflows = platform.workflows
            await workflows.counts()
        if args.runs_command == "list":
            runs = await _list_runs(workflows, args)
            if runs and len(runs) == args.limit:
                more = await workflows.list(
                    workflow_id=args.workflow, status=args.status, limit=1, before=runs[-1].run_id
                )
                if more:
                    sys.stderr.write(f"more: --before {runs[-1].run_id}\n")
            if args.json:
                _print_json([r.to_dict() for r in runs])
                return 0
            rows = [
                [
                    r.run_id,
                    r.workflow_id,
                    r.status.value,
                    str(r.attempt),
                    _when(r.created_at),
                    _when(r.updated_at),
                ]
                for r in runs
            ]
            sys.stdout.write(
                _table(
                    rows, ["RUN", "WORKFLOW", "STATUS", "ATTEMPT", "CREATED (UTC)", "UPDATED (UTC)"]
                )
                + "\n"
            )
            return 0
        handle = workflows.handle(args.run_id)
        run = await handle.status()
        if run is None:
            sys.stderr.write(f"unknown run {args.run_id!r}\n")
            return 1
        if args.runs_command == "rerun":
            rerun = await workflows.rerun(args.run_id, args.from_step)
            sys.stdout.write(rerun.run_id + "\n")
            return 0
        if args.runs_command == "cancel":
            changed = await handle.cancel()
            sys.stdout.write(
                ("cancel requested for " if changed else "already ended: ") + args.run_id + "\n"
            )
            return 0
        history = await handle.history()
        if args.json:
            _print_json({"run": run.to_dict(), "history": [s.to_dict() for s in history]})
            return 0
        sys.stdout.write(
            f"run       {run.run_id}\nworkflow  {run.workflow_id}\nstatus    {run.status.value} (attempt {run.attempt})\n"
        )
        sys.stdout.write(f"created   {_when(run.created_at)}   updated {_when(run.updated_at)}\n")
        sys.stdout.write(f"input     {orjson.dumps(run.input).decode()}\n")
        if run.output is not None:
            sys.stdout.write(f"output    {orjson.dumps(run.output).decode()}\n")
        if run.error is not None:
            sys.stdout.write(f"error     {orjson.dumps(run.error).decode()}\n")
        rows = []
        for step in history:
            duration = (
                f"{step.completed_at - step.started_at} ms"
                if step.completed_at is not None
                else "-"
            )
            detail = ""
            if step.wake_at is not None:
                detail = f"wakes {_when(step.wake_at)}"
            elif step.event_type is not None:
                detail = f"waits {step.event_type} {orjson.dumps(step.match).decode() if step.match else ''}".rstrip()
            elif step.child_run_id is not None:
                detail = f"child {step.child_run_id}"
            rows.append(
                [
                    step.name,
                    step.kind.value,
                    step.status.value,
                    _when(step.started_at),
                    duration,
                    detail,
                ]
            )
        sys.stdout.write(
            "\n" + _table(rows, ["STEP", "KIND", "STATUS", "STARTED (UTC)", "TOOK", ""]) + "\n"
        )
        return 0
    finally:
        platform.close()


async def _start(args: argparse.Namespace) -> int:
    from platform_shim.platform import open_client

    platform = open_client(_data_dir(args))
    try:
        handle = await platform.workflows.start(
            args.workflow_id, _json_arg(args.input, "input"), run_id=args.run_id
        )
        sys.stdout.write(handle.run_id + "\n")
        return 0
    finally:
        platform.close()


async def _send_event(args: argparse.Namespace) -> int:
    from platform_shim.platform import open_client

    platform = open_client(_data_dir(args))
    try:
        count = await platform.workflows.send_event(args.type, _json_arg(args.payload, "payload"))
        sys.stdout.write(f"{count} parked run(s) resumed\n")
        return 0
    finally:
        platform.close()


async def _kv(args: argparse.Namespace) -> int:
    from platform_shim.platform import open_client

    platform = open_client(_data_dir(args))
    try:
        if args.kv_command == "get":
            value = await platform.kv.get(args.ns, args.key)
            _print_json(value)
            return 0 if value is not None else 1
        if args.kv_command == "put":
            await platform.kv.put(args.ns, args.key, _json_arg(args.value, "value"), args.ttl)
            return 0
        listing = await platform.kv.list(args.ns, args.prefix, args.limit, args.cursor)
        for key in listing["keys"]:
            sys.stdout.write(key["name"] + "\n")
        if listing["cursor"]:
            sys.stderr.write(f"more: --cursor {listing['cursor']}\n")
        return 0
    finally:
        platform.close()


async def _schedules(args: argparse.Namespace) -> int:
    """Cron triggers as the running host advertises them, with their last and next ticks."""
    import time

    from platform_shim.platform import open_client
    from platform_shim.workflows.cron import CronSchedule

    platform = open_client(_data_dir(args))
    try:
        await platform.workflows.list(limit=1)  # loads the ledger (the fired ticks)
        ticks = platform.workflows.state.ticks  # type: ignore[attr-defined]
        advert: dict[str, Any] = {}
        if platform.store.worker_pid() is not None:
            try:
                advert = orjson.loads((_data_dir(args) / ".locks" / "worker.json").read_bytes())
            except (FileNotFoundError, orjson.JSONDecodeError):
                advert = {}
        now = int(time.time() * 1000)
        rows = []
        for entry in advert.get("schedules", []):
            workflow_id, cron = entry["workflowId"], entry["cron"]
            last = ticks.get(workflow_id, (None, 0))[0]
            rows.append(
                [workflow_id, cron, _when(last), _when(CronSchedule.parse(cron).next_after(now))]
            )
        for workflow_id, (at, _) in sorted(ticks.items()):
            if workflow_id not in {entry["workflowId"] for entry in advert.get("schedules", [])}:
                rows.append([workflow_id, "?", _when(at), "-"])
        sys.stdout.write(
            _table(rows, ["WORKFLOW", "CRON", "LAST TICK (UTC)", "NEXT TICK (UTC)"]) + "\n"
        )
        if not advert:
            sys.stdout.write(
                "(no host is running on this folder: its cron triggers are not known here)\n"
            )
        return 0
    finally:
        platform.close()


def cmd_compact(args: argparse.Namespace) -> int:
    from platform_shim.errors import DataDirLocked
    from platform_shim.runtime import Worker

    async def run() -> int:
        worker = Worker(_data_dir(args))
        try:
            with Progress("opening the data folder"):
                worker.open()
        except DataDirLocked as exc:
            # A host owns the folder: ask it to compact (it reads the request within a second).
            from platform_shim.platform import open_client

            client = open_client(_data_dir(args))
            try:
                log_ = client.workflows.log  # type: ignore[attr-defined]
                state = client.workflows.state  # type: ignore[attr-defined]
                await log_.submit(
                    lambda: (orjson.dumps({"rec": "compact", "seq": state.last_seq + 1}), None)
                )
            finally:
                client.close()
            sys.stdout.write(f"{exc}; asked it to compact\n")
            return 0
        try:
            with Progress("compacting"):
                report = await worker.compact()
        finally:
            await worker.stop()
        _print_json(report)
        return 0

    return asyncio.run(run())


# --------------------------------------------------------------------------------- parser


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m host", description="A local serverless-style function host."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def data_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data", help="data folder (default: $PLATFORM_DATA_DIR or ./data)")

    for name, help_text in (
        ("dev", "serve with hot reload of workflows/, events/, routes/"),
        ("serve", "serve (no reload)"),
    ):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("project", nargs="?", default=".", help="project folder (default: .)")
        p.add_argument(
            "--host",
            default="127.0.0.1",
            help="address to bind (default: 127.0.0.1; others need PLATFORM_TOKEN)",
        )
        p.add_argument("--port", type=int, default=3001, help="port (default: 3001)")
        data_opt(p)
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

    p = sub.add_parser(
        "build",
        help="validate and write build/manifest.json",
        description="validate and write build/manifest.json",
    )
    p.add_argument("project", nargs="?", default=".", help="project folder (default: .)")

    p = sub.add_parser(
        "runs",
        help="list, show, cancel or rerun runs",
        description="list, show, cancel or rerun runs",
    )
    runs = p.add_subparsers(dest="runs_command", required=True)
    q = runs.add_parser("list", help="runs, newest first")
    q.add_argument("--workflow", help="only this workflow id")
    q.add_argument("--status", help="only this status")
    q.add_argument("--limit", type=_positive, default=50, help="at most this many (default: 50)")
    q.add_argument(
        "--before", metavar="RUN_ID", help="only runs older than this one (the next page)"
    )
    q.add_argument("--json", action="store_true", help="print JSON instead of a table")
    data_opt(q)
    q = runs.add_parser("show", help="a run and its step timeline")
    q.add_argument("run_id")
    q.add_argument("--json", action="store_true")
    data_opt(q)
    q = runs.add_parser("cancel", help="cancel a run")
    q.add_argument("run_id")
    data_opt(q)
    q = runs.add_parser(
        "rerun",
        help="a new run that replays the steps before STEP and runs STEP and the rest again",
        description="Start a new run of RUN_ID's workflow with the same input. The steps RUN_ID"
        " completed before STEP are not run again: their recorded results are replayed. Prints"
        " the new run's id.",
    )
    q.add_argument("run_id")
    q.add_argument(
        "--from",
        dest="from_step",
        required=True,
        metavar="STEP",
        help="the first step to run again",
    )
    data_opt(q)

    p = sub.add_parser(
        "start", help="start a workflow run", description="start a workflow run; prints its run id"
    )
    p.add_argument("workflow_id")
    p.add_argument("input", nargs="?", help="input as JSON")
    p.add_argument("--run-id", help="a run id of your choosing (makes the start idempotent)")
    data_opt(p)

    p = sub.add_parser(
        "send-event",
        help="send an event to waiting runs",
        description="send an event to waiting runs",
    )
    p.add_argument("type")
    p.add_argument("payload", nargs="?", help="payload as JSON")
    data_opt(p)

    p = sub.add_parser("kv", help="read and write KV", description="read and write KV")
    kv = p.add_subparsers(dest="kv_command", required=True)
    q = kv.add_parser("get", help="print a value")
    q.add_argument("ns")
    q.add_argument("key")
    data_opt(q)
    q = kv.add_parser("put", help="store a JSON value")
    q.add_argument("ns")
    q.add_argument("key")
    q.add_argument("value", help="the value as JSON")
    q.add_argument("--ttl", type=float, help="seconds until it expires")
    data_opt(q)
    q = kv.add_parser("list", help="list keys")
    q.add_argument("ns")
    q.add_argument("--prefix")
    q.add_argument("--limit", type=int, default=1000)
    q.add_argument("--cursor")
    data_opt(q)

    p = sub.add_parser(
        "schedules",
        help="cron triggers and their last ticks",
        description="cron triggers and their last ticks",
    )
    data_opt(p)
    p = sub.add_parser(
        "compact",
        help="compact the data folder now",
        description="compact the data folder now (asks a running host to do it)",
    )
    data_opt(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    command = args.command
    if command in ("dev", "serve"):
        return cmd_serve(args, dev=command == "dev")
    if command == "build":
        return cmd_build(args)
    if command == "compact":
        return cmd_compact(args)
    runner = {
        "runs": _runs,
        "start": _start,
        "send-event": _send_event,
        "kv": _kv,
        "schedules": _schedules,
    }[command]
    try:
        return asyncio.run(runner(args))
    except (ValueError, TypeError, LookupError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
