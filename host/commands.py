"""The CLI's data commands: runs, start, send-event, kv, schedules, compact.

Each opens the store (a data folder, or a URL such as ``postgresql://…``) as a client
(``open_client``), so it works with or without a host on it; a running host applies what it
writes within a second. A URL is only ever shown without its password (``describe``). A
command prints its result on stdout and raises ``CliError`` for anything the user should read
on stderr; ``host.cli`` maps that to the exit code (1: not found or failed, 2: usage).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from host.progress import Progress
from platform_shim.locations import describe, is_folder

if TYPE_CHECKING:
    from platform_shim.platform import Platform
    from platform_shim.workflows.records import WorkflowRun
    from platform_shim.workflows.service import WorkflowsService

__all__ = ["USAGE", "CliError", "compact", "kv", "runs", "schedules", "send_event", "start"]

USAGE = 2
"""Exit code of a command line that is wrong (argparse's own, and a bad JSON argument)."""


class CliError(Exception):
    """What the user reads on stderr after ``error: ``; ``code`` is the exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CliError(f"{what} is not valid JSON: {exc}", USAGE) from None


def when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def print_json(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def advert(platform: Platform) -> dict[str, Any]:
    """What the running host says about itself (workflows, handlers, schedules), or ``{}``."""
    return platform.store.read_advert() or {}


def _no_worker_note(platform: Platform, what: str) -> None:
    if platform.store.worker_pid() is None:
        where = platform.store.location
        kind = "folder" if is_folder(where) else "store"
        sys.stderr.write(
            f"note: no host is running on {describe(where)}: {what} when one opens the {kind}\n"
        )


# ---------------------------------------------------------------------------------- runs

_LIST_CHUNK = 5000


async def _list_runs(workflows: WorkflowsService, args: argparse.Namespace) -> list[WorkflowRun]:
    """Up to ``--limit`` runs from ``--before`` on, a page at a time (a bar shows progress)."""
    if args.before is not None and await workflows.handle(args.before).status() is None:
        raise CliError(f"--before names no run: {args.before!r}")
    counts = await workflows.counts()
    expected = counts.get(args.status, 0) if args.status else sum(counts.values())
    found: list[WorkflowRun] = []
    before = args.before
    with Progress("listing runs", min(args.limit, expected)) as bar:
        while len(found) < args.limit:
            chunk = min(_LIST_CHUNK, args.limit - len(found))
            page = await workflows.list(
                workflow_id=args.workflow, status=args.status, limit=chunk, before=before
            )
            found += page
            bar.advance(len(page))
            if len(page) < chunk:
                break
            before = page[-1].run_id
    return found


async def _known_workflows(platform: Platform) -> list[str]:
    """Workflow ids the running host serves, and those with recorded runs."""
    known = set(advert(platform).get("workflows", []))
    known.update(run.workflow_id for run in await platform.workflows.list(limit=10_000))
    return sorted(known)


async def _runs_list(platform: Platform, args: argparse.Namespace) -> None:
    workflows = platform.workflows
    found = await _list_runs(workflows, args)
    if not found and args.workflow is not None:
        known = await _known_workflows(platform)
        if args.workflow not in known:
            listing = ", ".join(known) if known else "none recorded on this folder"
            raise CliError(f"no runs of workflow {args.workflow!r}; known workflows: {listing}")
    if found and len(found) == args.limit:
        more = await workflows.list(
            workflow_id=args.workflow, status=args.status, limit=1, before=found[-1].run_id
        )
        if more:
            sys.stderr.write(f"more: --before {found[-1].run_id}\n")
    if args.json:
        print_json([r.to_dict() for r in found])
        return
    rows = [
        [
            r.run_id,
            r.workflow_id,
            r.status.value,
            str(r.attempt),
            when(r.created_at),
            when(r.updated_at),
        ]
        for r in found
    ]
    headers = ["RUN", "WORKFLOW", "STATUS", "ATTEMPT", "CREATED (UTC)", "UPDATED (UTC)"]
    sys.stdout.write(table(rows, headers) + "\n")


async def _runs_show(platform: Platform, run: WorkflowRun, args: argparse.Namespace) -> None:
    history = await platform.workflows.handle(run.run_id).history()
    if args.json:
        print_json({"run": run.to_dict(), "history": [s.to_dict() for s in history]})
        return
    out = sys.stdout
    out.write(f"run       {run.run_id}\nworkflow  {run.workflow_id}\n")
    out.write(f"status    {run.status.value} (attempt {run.attempt})\n")
    out.write(f"created   {when(run.created_at)}   updated {when(run.updated_at)}\n")
    out.write(f"input     {orjson.dumps(run.input).decode()}\n")
    if run.output is not None:
        out.write(f"output    {orjson.dumps(run.output).decode()}\n")
    if run.error is not None:
        out.write(f"error     {orjson.dumps(run.error).decode()}\n")
    rows = []
    for step in history:
        took = f"{step.completed_at - step.started_at} ms" if step.completed_at is not None else "-"
        detail = ""
        if step.wake_at is not None:
            detail = f"wakes {when(step.wake_at)}"
        elif step.event_type is not None:
            match = orjson.dumps(step.match).decode() if step.match else ""
            detail = f"waits {step.event_type} {match}".rstrip()
        elif step.child_run_id is not None:
            detail = f"child {step.child_run_id}"
        rows.append(
            [step.name, step.kind.value, step.status.value, when(step.started_at), took, detail]
        )
    out.write("\n" + table(rows, ["STEP", "KIND", "STATUS", "STARTED (UTC)", "TOOK", ""]) + "\n")


async def runs(platform: Platform, args: argparse.Namespace) -> None:
    with Progress("reading the run ledger"):
        workflows = platform.workflows
        await workflows.counts()
    if args.runs_command == "list":
        await _runs_list(platform, args)
        return
    run = await workflows.handle(args.run_id).status()
    if run is None:
        raise CliError(f"unknown run {args.run_id!r}")
    if args.runs_command == "rerun":
        rerun = await workflows.rerun(args.run_id, args.from_step)
        sys.stdout.write(rerun.run_id + "\n")
        _no_worker_note(platform, "the new run is queued and runs")
    elif args.runs_command == "cancel":
        changed = await workflows.handle(args.run_id).cancel()
        sys.stdout.write(
            ("cancel requested for " if changed else "already ended: ") + args.run_id + "\n"
        )
    else:
        await _runs_show(platform, run, args)


# ---------------------------------------------------------------------- writes and reads


async def start(platform: Platform, args: argparse.Namespace) -> None:
    handle = await platform.workflows.start(
        args.workflow_id, json_arg(args.input, "input"), run_id=args.run_id
    )
    sys.stdout.write(handle.run_id + "\n")
    _no_worker_note(platform, "the run is queued and runs")


async def send_event(platform: Platform, args: argparse.Namespace) -> None:
    payload = json_arg(args.payload, "payload")
    count = await platform.workflows.send_event(args.type, payload)
    sys.stdout.write(f"{count} parked run(s) resumed\n")
    _no_worker_note(platform, "the event is kept, and waiting runs take it")


async def kv(platform: Platform, args: argparse.Namespace) -> None:
    if args.kv_command == "get":
        # The raw text tells a stored JSON null from a missing key.
        raw = await platform.kv.get_raw(args.ns, args.key)
        if raw is None:
            raise CliError(f"no key {args.key!r} in namespace {args.ns!r}")
        print_json(orjson.loads(raw))
    elif args.kv_command == "put":
        await platform.kv.put(args.ns, args.key, json_arg(args.value, "value"), args.ttl)
    else:
        listing = await platform.kv.list(args.ns, args.prefix, args.limit, args.cursor)
        for key in listing["keys"]:
            sys.stdout.write(key["name"] + "\n")
        if listing["cursor"]:
            sys.stderr.write(f"more: --cursor {listing['cursor']}\n")


async def schedules(platform: Platform, args: argparse.Namespace) -> None:
    """Cron triggers as the running host advertises them, with their last and next ticks."""
    from platform_shim.workflows.cron import CronSchedule

    ticks = await platform.workflows.ticks()
    advertised = advert(platform)
    now = platform.clock.now_ms()  # the folder's clock: a dev host's skipped time counts
    rows = []
    cron_ids = set()
    for entry in advertised.get("schedules", []):
        workflow_id, cron = entry["workflowId"], entry["cron"]
        cron_ids.add(workflow_id)
        last = ticks.get(workflow_id)
        after = max(now, last or 0)
        rows.append(
            [workflow_id, cron, when(last), when(CronSchedule.parse(cron).next_after(after))]
        )
    for workflow_id, at in sorted(ticks.items()):
        if workflow_id not in cron_ids:
            rows.append([workflow_id, "?", when(at), "-"])
    sys.stdout.write(table(rows, ["WORKFLOW", "CRON", "LAST TICK (UTC)", "NEXT TICK (UTC)"]) + "\n")
    if not advertised:
        kind = "folder" if is_folder(platform.store.location) else "store"
        sys.stdout.write(
            f"(no host is running on this {kind}: its cron triggers are not known here)\n"
        )


async def compact(location: str | Path, args: argparse.Namespace) -> None:
    """Compact the store here, or ask the host that owns it to."""
    from platform_shim.errors import DataDirLocked
    from platform_shim.platform import open_client
    from platform_shim.runtime import Worker

    where = describe(location)
    worker = Worker(location)
    try:
        with Progress(
            "opening the store" if isinstance(location, str) else "opening the data folder"
        ):
            worker.open()
    except DataDirLocked:
        client = open_client(store=location)
        try:
            pid = client.store.worker_pid()
            await client.workflows.request_compaction()
        finally:
            client.close()
        if args.json:
            print_json({"askedHost": pid})
        else:
            sys.stdout.write(
                f"A host (process {pid}) has {where} open: asked it to compact"
                " (it does so within a second; its log says how much it saved).\n"
            )
        return
    try:
        with Progress("compacting"):
            report = await worker.compact()
    finally:
        await worker.stop()
    if args.json:
        print_json(report)
        return
    events, ledger = report["events"], report["runs"]
    sys.stdout.write(
        f"Compacted {where}: the event stream from {_size(events['before'])} to"
        f" {_size(events['after'])} ({events['kept']} event(s) kept), the run ledger from"
        f" {_size(ledger['before'])} to {_size(ledger['after'])}"
        f" ({ledger['pruned']} finished run(s) past retention pruned).\n"
    )


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"
